"""cnictl: the operator's view of a node (what vtysh showed for pyroute2-cni)."""
