"""An emulated Kubernetes API server (1.31 semantics) for tests and labs.

In-process: ``async with open_kubeapi(crd_paths=[...]) as api:``; out of
process: ``python -m testbed.kubeapi --listen HOST:PORT --dir DIR --crds PATH``.
README.md beside this file lists what is emulated and what differs.
"""

from ._errors import StatusError
from ._inprocess import InProcessKubeApi, open_inprocess_kubeapi
from ._kubeapi import DEFAULT_RBAC_USER, KubeApi, load_crd_documents, open_kubeapi
from ._manifests import validate
from ._requests import RequestRecord

__all__ = [
    "DEFAULT_RBAC_USER",
    "InProcessKubeApi",
    "KubeApi",
    "RequestRecord",
    "StatusError",
    "load_crd_documents",
    "open_inprocess_kubeapi",
    "open_kubeapi",
    "validate",
]
