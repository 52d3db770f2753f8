"""cnictl: the operator's view of a node (what vtysh showed for pyroute2-cni)."""

from ._main import ctl_request, main, query, run
from ._tables import render

__all__ = [
    "ctl_request",
    "main",
    "query",
    "render",
    "run",
]
