"""ExaBGP with cnid's extension: ``python -m cnid.bgp._exabgp [--env-file F] CONFIG``.

The daemon runs this as its supervised child instead of the ``exabgp``
script: it loads :mod:`cnid.bgp._extension` (the EVPN announce command, the
Router's MAC community, IPv6 EVPN next-hops), then hands over to ExaBGP's
own entry point.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_the_speaker() -> None:
    """SIGTERM when the speaker process that started us ends, however it
    ends (SIGKILL included): a new speaker never finds an orphan ExaBGP
    holding the BGP port and the API socket. ``CNID_SPEAKER_PID``: the
    speaker's pid (it may have ended before this ran)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    expected = os.environ.get("CNID_SPEAKER_PID", "")
    if expected.isdigit() and os.getppid() != int(expected):
        sys.exit("cnid: the speaker that started ExaBGP is gone")


def main() -> None:
    from exabgp.application.main import main as exabgp_main

    die_with_the_speaker()

    from . import _extension  # noqa: F401  (registers the command)

    sys.argv = ["exabgp", *sys.argv[1:]]
    exabgp_main()


if __name__ == "__main__":
    main()
