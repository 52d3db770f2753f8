"""ExaBGP as the node's BGP speaker: supervision, configuration, the API pipe
and the EVPN announce extension. Built by the EVPN control-plane issue."""
