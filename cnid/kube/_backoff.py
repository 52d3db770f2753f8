"""The backoff of the client's retries and the reflector's reconnects is the
project's one backoff (``cnid.core._reconcile``)."""

from ..core._reconcile import Backoff

__all__ = ["Backoff"]
