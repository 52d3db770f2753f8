"""ExaBGP with cnid's extension: ``python -m cnid.bgp._exabgp [--env-file F] CONFIG``.

The daemon runs this as its supervised child instead of the ``exabgp``
script: it loads :mod:`cnid.bgp._extension` (the EVPN announce command, the
Router's MAC community, IPv6 EVPN next-hops), then hands over to ExaBGP's
own entry point.
"""

from __future__ import annotations

import sys


def main() -> None:
    from exabgp.application.main import main as exabgp_main

    from . import _extension  # noqa: F401  (registers the command)

    sys.argv = ["exabgp", *sys.argv[1:]]
    exabgp_main()


if __name__ == "__main__":
    main()
