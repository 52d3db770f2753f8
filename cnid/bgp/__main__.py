"""``python -m cnid.bgp [--run-dir DIR] [--detach]``: the speaker process
(``cnid.bgp._supervisor``; ``cnid speaker`` is the same). Started this way it
imports the BGP package alone, not the daemon's: it is up (and ExaBGP with
it) sooner, which is what a replaced pod's peers wait for."""

import sys

from ._supervisor import main

raise SystemExit(main(sys.argv[1:]))
