"""The one error hierarchy of cnid.

Every lower-level failure (a netlink error ACK, OSError, msgspec's
DecodeError, ...) is translated once, at the boundary where it happens, into
the most specific class here. Each class carries the CNI spec error code that
the CNI boundary reports for it, so the translation to the spec's error JSON
is a lookup, not a decision.
"""

from __future__ import annotations

import enum


class CniCode(enum.IntEnum):
    """Error codes of the CNI specification (1.1.0, "Error" section)."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_NETCONF = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # Plugin-specific codes start at 100.
    INTERNAL = 100
    EXHAUSTED = 101


class CnidError(Exception):
    """Base class. ``code`` is the CNI code reported for it, ``details``
    goes into the error JSON's ``details`` field."""

    code: CniCode = CniCode.INTERNAL

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ProtocolError(CnidError):
    """A frame or message on one of our sockets is malformed or too big."""

    code = CniCode.DECODE_FAILURE


class IncompatibleVersion(CnidError):
    code = CniCode.INCOMPATIBLE_VERSION


class InvalidEnvironment(CnidError):
    code = CniCode.INVALID_ENVIRONMENT


class InvalidNetconf(CnidError):
    code = CniCode.INVALID_NETCONF


class DecodeFailure(CnidError):
    code = CniCode.DECODE_FAILURE


class UnknownContainer(CnidError):
    """The container's network namespace is gone or is not a netns."""

    code = CniCode.UNKNOWN_CONTAINER


class TryAgainLater(CnidError):
    """The node cannot serve the request now (not ready, shutting down)."""

    code = CniCode.TRY_AGAIN_LATER


class NotAvailable(CnidError):
    """STATUS: the node cannot take pods."""

    code = CniCode.NOT_AVAILABLE


class AddressExhausted(CnidError):
    """IPAM: no free address and no free block left in the domain."""

    code = CniCode.EXHAUSTED


class ConfigError(CnidError):
    """server.ini or a domain definition is invalid."""

    code = CniCode.INVALID_NETCONF


class StoreConflict(CnidError):
    """Optimistic concurrency: the record changed since it was read, or a
    record created under a name that exists already (HTTP 409 in the
    Kubernetes store)."""

    code = CniCode.TRY_AGAIN_LATER


class StoreUnavailable(CnidError):
    """The address store cannot be reached (API server down)."""

    code = CniCode.TRY_AGAIN_LATER


class KernelError(CnidError):
    """A netlink or sysctl operation failed. ``errno`` is the kernel's."""

    code = CniCode.IO_FAILURE

    def __init__(self, msg: str, errno: int = 0, details: str = "") -> None:
        super().__init__(msg, details)
        self.errno = errno
