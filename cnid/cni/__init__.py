from ._invocation import MAX_DEPTH, parse_cni_args, parse_invocation, peek_version
from ._results import render_error, render_result
from ._server import CniServer
from ._service import CniService
from ._versions import LATEST, SUPPORTED_VERSIONS

__all__ = [
    "LATEST",
    "MAX_DEPTH",
    "SUPPORTED_VERSIONS",
    "CniServer",
    "CniService",
    "parse_cni_args",
    "parse_invocation",
    "peek_version",
    "render_error",
    "render_result",
]
