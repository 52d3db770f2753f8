"""The domain reconciler: the VRF domains wanted on this node programmed in
the kernel, fed by server.ini's static domains standalone and by the
VRFDomain controller (``cluster``) with the Kubernetes API."""

from ._reconciler import DomainKernel, DomainReconciler, StaticDomains, failures

__all__ = [
    "DomainKernel",
    "DomainReconciler",
    "StaticDomains",
    "failures",
]
