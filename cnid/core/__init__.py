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

Names are imported when first asked for: the ExaBGP extension and cnictl
import the errors and the protocol and need none of trio or prometheus.

Imports nothing from cnid's other packages (the layer contract in
pyproject.toml, checked by ``./just lint``).
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._domains import Domain, DomainLinks, VniAttachment
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
    from ._pods import (
        AllocationRecord,
        Attachment,
        PodResult,
        ResultInterface,
        ResultIP,
        ResultRoute,
    )
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

#: Each public name and the module it lives in.
_HOMES = {
    "DomainLinks": "_domains",
    "VniAttachment": "_domains",
    "Domain": "_domains",
    "AddressExhausted": "_errors",
    "CniCode": "_errors",
    "CnidError": "_errors",
    "ConfigError": "_errors",
    "DecodeFailure": "_errors",
    "IncompatibleVersion": "_errors",
    "InvalidEnvironment": "_errors",
    "InvalidNetconf": "_errors",
    "KernelError": "_errors",
    "NotAvailable": "_errors",
    "ProtocolError": "_errors",
    "StoreConflict": "_errors",
    "StoreUnavailable": "_errors",
    "TryAgainLater": "_errors",
    "UnknownContainer": "_errors",
    "Journal": "_journal",
    "PodRecord": "_journal",
    "Metrics": "_metrics",
    "ChangeSignal": "_notify",
    "Notifier": "_notify",
    "snapshot": "_notify",
    "wait_any": "_notify",
    "AllocationRecord": "_pods",
    "Attachment": "_pods",
    "PodResult": "_pods",
    "ResultIP": "_pods",
    "ResultInterface": "_pods",
    "ResultRoute": "_pods",
    "CTL_PROTOCOL_VERSION": "_protocol",
    "CTL_VERSIONS": "_protocol",
    "CniRequest": "_protocol",
    "CniResponse": "_protocol",
    "CtlAnswer": "_protocol",
    "CtlRequest": "_protocol",
    "CtlResponse": "_protocol",
    "HEADER": "_protocol",
    "MAX_CTL_REQUEST": "_protocol",
    "MAX_FRAME": "_protocol",
    "MAX_STDIN": "_protocol",
    "PROTOCOL_VERSION": "_protocol",
    "ctl_answer_frames": "_protocol",
    "decode_cni_request": "_protocol",
    "decode_cni_response": "_protocol",
    "decode_ctl_request": "_protocol",
    "decode_ctl_response": "_protocol",
    "frame": "_protocol",
    "payload_length": "_protocol",
    "printable": "_protocol",
    "Readiness": "_readiness",
    "Backoff": "_reconcile",
    "Pending": "_reconcile",
    "reconcile_forever": "_reconcile",
    "retry": "_reconcile",
    "Admission": "_sockets",
    "Guarded": "_sockets",
    "READ_TIMEOUT": "_sockets",
    "accept_resiliently": "_sockets",
    "claim_path": "_sockets",
    "raise_nofile_limit": "_sockets",
    "read_frame": "_sockets",
    "send_all": "_sockets",
    "serve_unix": "_sockets",
    "waiting_for_peer": "_sockets",
    "MILESTONES": "_startup",
    "Startup": "_startup",
    "boot_clock": "_startup",
    "process_start": "_startup",
    "DomainRegistry": "_tenants",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{home}", __name__), name)


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
    "Domain",
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
