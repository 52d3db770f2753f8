"""ExaBGP with cnid's extension: ``python -m cnid.bgp._exabgp [--env-file F] CONFIG``.

The speaker process (``_supervisor.py``) runs this instead of the ``exabgp``
script: it loads :mod:`cnid.bgp._extension` (the EVPN announce command, the
Router's MAC community, IPv6 EVPN next-hops), then hands over to ExaBGP's
own entry point.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def die_with_the_speaker(interval: float = 1.0) -> None:
    """SIGTERM to ourselves when the speaker process that started us ends,
    however it ends (SIGKILL included): a new speaker never finds an orphan
    ExaBGP holding the BGP port and the API socket. ``CNID_SPEAKER_PID``:
    the speaker's pid. A thread watching our parent, not PR_SET_PDEATHSIG:
    that one fires when the parent's *thread* that forked us ends, and trio
    starts processes from worker threads that come and go."""
    expected = os.environ.get("CNID_SPEAKER_PID", "")
    if not expected.isdigit():
        return
    if os.getppid() != int(expected):
        sys.exit("cnid: the speaker that started ExaBGP is gone")

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="cnid-parent-watch", daemon=True).start()


def main() -> None:
    from exabgp.application.main import main as exabgp_main

    die_with_the_speaker()

    from . import _exabgp_fast, _extension  # noqa: F401  (registers the command)

    sys.argv = ["exabgp", *sys.argv[1:]]
    exabgp_main()


if __name__ == "__main__":
    main()
