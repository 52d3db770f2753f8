"""The application, the top layer: the ``cnid`` command (``_cli``), its
configuration (server.ini, ``_config``), the composition root that starts
every service in order (``_daemon``), the control server cnictl talks to
(``_control``) with its typed views of the controllers' state (``_views``),
and the health and metrics endpoint (``_health``).
"""

from ._cli import PrintableFormatter, main
from ._config import DefaultDomainConfig, load_config, parse_config
from ._control import ControlServer
from ._health import HealthServer
from ._views import bgp_summary, evpn_duplicates, evpn_routes

__all__ = [
    "ControlServer",
    "DefaultDomainConfig",
    "HealthServer",
    "PrintableFormatter",
    "bgp_summary",
    "evpn_duplicates",
    "evpn_routes",
    "load_config",
    "main",
    "parse_config",
]
