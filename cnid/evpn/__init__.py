"""Local state to EVPN routes, received routes to kernel intents (the work
zebra does in FRR). Built by the EVPN control-plane issue."""
