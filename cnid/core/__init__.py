"""The lowest layer: the domain model and the state and infrastructure every
other layer shares.

The model: a VRF domain and its attachments (``_domains``), the domains on
this node (``_tenants``), a pod's records (``_pods``) and the journal of
attached pods (``_journal``); one error hierarchy (``_errors``).
Shared machinery: the change signal (``_notify``), the reconcile toolkit
(``_reconcile``), readiness and start-up milestones (``_readiness``,
``_startup``), metrics (``_metrics``), the plugin's and cnictl's framed
protocol (``_protocol``) and the UNIX-socket servers that carry it
(``_sockets``).

Imports nothing from cnid's other packages (the layer contract in
pyproject.toml, checked by ``./just lint``).
"""

from ._domains import DomainLinks, VniAttachment, VrfDomain
from ._errors import (
    AddressExhausted,
    CniCode,
    CnidError,
    ConfigError,
    DecodeFailure,
    IncompatibleVersion,
    InvalidEnvironment,
    InvalidNetconf,
    KernelError,
    NotAvailable,
    ProtocolError,
    StoreConflict,
    StoreUnavailable,
    TryAgainLater,
    UnknownContainer,
)
from ._journal import Journal, PodRecord
from ._metrics import Metrics
from ._notify import ChangeSignal, Notifier, snapshot, wait_any
from ._pods import AllocationRecord, Attachment, PodResult, ResultInterface, ResultIP, ResultRoute
from ._protocol import (
    CTL_PROTOCOL_VERSION,
    CTL_VERSIONS,
    HEADER,
    MAX_CTL_REQUEST,
    MAX_FRAME,
    MAX_STDIN,
    PROTOCOL_VERSION,
    CniRequest,
    CniResponse,
    CtlAnswer,
    CtlRequest,
    CtlResponse,
    ctl_answer_frames,
    decode_cni_request,
    decode_cni_response,
    decode_ctl_request,
    decode_ctl_response,
    frame,
    payload_length,
    printable,
)
from ._readiness import Readiness
from ._reconcile import Backoff, Pending, reconcile_forever, retry
from ._sockets import (
    READ_TIMEOUT,
    Admission,
    Guarded,
    accept_resiliently,
    claim_path,
    raise_nofile_limit,
    read_frame,
    send_all,
    serve_unix,
    waiting_for_peer,
)
from ._startup import MILESTONES, Startup, boot_clock, process_start
from ._tenants import DomainRegistry

__all__ = [
    "CTL_PROTOCOL_VERSION",
    "CTL_VERSIONS",
    "HEADER",
    "MAX_CTL_REQUEST",
    "MAX_FRAME",
    "MAX_STDIN",
    "MILESTONES",
    "PROTOCOL_VERSION",
    "READ_TIMEOUT",
    "AddressExhausted",
    "Admission",
    "AllocationRecord",
    "Attachment",
    "Backoff",
    "ChangeSignal",
    "CniCode",
    "CniRequest",
    "CniResponse",
    "CnidError",
    "ConfigError",
    "CtlAnswer",
    "CtlRequest",
    "CtlResponse",
    "DecodeFailure",
    "DomainLinks",
    "DomainRegistry",
    "Guarded",
    "IncompatibleVersion",
    "InvalidEnvironment",
    "InvalidNetconf",
    "Journal",
    "KernelError",
    "Metrics",
    "NotAvailable",
    "Notifier",
    "Pending",
    "PodRecord",
    "PodResult",
    "ProtocolError",
    "Readiness",
    "ResultIP",
    "ResultInterface",
    "ResultRoute",
    "Startup",
    "StoreConflict",
    "StoreUnavailable",
    "TryAgainLater",
    "UnknownContainer",
    "VniAttachment",
    "VrfDomain",
    "accept_resiliently",
    "boot_clock",
    "claim_path",
    "ctl_answer_frames",
    "decode_cni_request",
    "decode_cni_response",
    "decode_ctl_request",
    "decode_ctl_response",
    "frame",
    "payload_length",
    "printable",
    "process_start",
    "raise_nofile_limit",
    "read_frame",
    "reconcile_forever",
    "retry",
    "send_all",
    "serve_unix",
    "snapshot",
    "wait_any",
    "waiting_for_peer",
]
