"""ExaBGP as the node's BGP speaker.

* ``_routes``: EVPN routes and paths as typed values;
* ``_wire``: the messages between the daemon and the ExaBGP extension;
* ``_extension``: the extension itself (runs inside ExaBGP: ``_exabgp``);
* ``_relay``: ExaBGP's API helper, connecting its pipes to the daemon;
* ``_events``: ExaBGP's JSON output decoded into typed events;
* ``_decode``: the EVPN UPDATEs the extension hands over as their bytes,
  decoded into the same events;
* ``_unicast``: its ipv4 unicast updates (the routed underlay);
* ``_api``: the daemon's end of the API connection;
* ``_config``: server.ini's [bgp] section, neighbours, ExaBGP's config;
* ``_aspath``: AS_PATH loop detection (ExaBGP has none);
* ``_supervisor``: the speaker process (``cnid speaker``): ExaBGP kept running;
* ``_bfd``: BFD in the speaker process (``BfdHost``) and the daemon's link to
  it (``BfdLink``): the BFD sessions outlive the daemon too;
* ``_speaker``: the daemon's side: attach, resync, announcement sync.
"""

from typing import TYPE_CHECKING

from ._aspath import AS_LOOP, SKIP_REASONS, as_path_numbers, drop_loops, loops
from ._config import (
    BFD_INTERVAL_MS,
    BFD_MULTIPLIER,
    BgpOptions,
    Neighbor,
    NeighborOptions,
    SpeakerConfig,
    check_neighbor,
    environment,
    mesh_neighbors,
    password_problem,
    reflector_neighbors,
    render,
    static_neighbors,
    with_underlay,
)
from ._decode import RAW_PREFIX, decode_update_bytes, raw_line
from ._events import (
    AckEvent,
    BgpEvent,
    NotificationEvent,
    StateEvent,
    Undecodable,
    UpdateEvent,
    decode_line,
)
from ._routes import (
    ESI_ZERO,
    EvpnPath,
    EvpnRoute,
    ImetRoute,
    MacIpRoute,
    PrefixRoute,
    ReceivedPath,
    check_path,
    route_type,
)
from ._unicast import UnicastPath, UnicastUpdate
from ._wire import Ack, Command, SpeakerState, ack_line, decode_command, encode_command

if TYPE_CHECKING:
    from ._bfd import BFD_HOLD, CEASE_BFD_DOWN, BfdChanged, BfdHost, BfdLink, BfdSnapshot
    from ._speaker import (
        PeerStatus,
        Speaker,
        SpeakerDown,
        SpeakerEvent,
        SpeakerResync,
        SpeakerUp,
        write_private,
    )
    from ._supervisor import Supervisor, read_wanted, running_pid
    from ._supervisor import main as speaker_main

#: Imported when first asked for: ExaBGP's own process imports this package
#: for the extension's routes and wire format and needs none of the speaker
#: (trio, the supervision), which is most of the package's import time.
_SPEAKER_NAMES = frozenset(
    {
        "PeerStatus",
        "Speaker",
        "SpeakerDown",
        "SpeakerEvent",
        "SpeakerResync",
        "SpeakerUp",
        "write_private",
    }
)
_SUPERVISOR_NAMES = frozenset({"Supervisor", "read_wanted", "running_pid", "speaker_main"})
_BFD_NAMES = frozenset(
    {"BFD_HOLD", "CEASE_BFD_DOWN", "BfdChanged", "BfdHost", "BfdLink", "BfdSnapshot"}
)


def __getattr__(name: str) -> object:
    if name in _SPEAKER_NAMES:
        from . import _speaker

        return getattr(_speaker, name)
    if name in _BFD_NAMES:
        from . import _bfd

        return getattr(_bfd, name)
    if name in _SUPERVISOR_NAMES:
        from . import _supervisor

        return getattr(_supervisor, "main" if name == "speaker_main" else name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AS_LOOP",
    "BFD_HOLD",
    "BFD_INTERVAL_MS",
    "BFD_MULTIPLIER",
    "CEASE_BFD_DOWN",
    "ESI_ZERO",
    "RAW_PREFIX",
    "SKIP_REASONS",
    "Ack",
    "AckEvent",
    "BfdChanged",
    "BfdHost",
    "BfdLink",
    "BfdSnapshot",
    "BgpEvent",
    "BgpOptions",
    "Command",
    "EvpnPath",
    "EvpnRoute",
    "ImetRoute",
    "MacIpRoute",
    "Neighbor",
    "NeighborOptions",
    "NotificationEvent",
    "PeerStatus",
    "PrefixRoute",
    "ReceivedPath",
    "Speaker",
    "SpeakerConfig",
    "SpeakerDown",
    "SpeakerEvent",
    "SpeakerResync",
    "SpeakerState",
    "SpeakerUp",
    "StateEvent",
    "Supervisor",
    "Undecodable",
    "UnicastPath",
    "UnicastUpdate",
    "UpdateEvent",
    "ack_line",
    "as_path_numbers",
    "check_neighbor",
    "check_path",
    "decode_command",
    "decode_line",
    "decode_update_bytes",
    "drop_loops",
    "encode_command",
    "environment",
    "loops",
    "mesh_neighbors",
    "password_problem",
    "raw_line",
    "read_wanted",
    "reflector_neighbors",
    "render",
    "route_type",
    "running_pid",
    "speaker_main",
    "static_neighbors",
    "with_underlay",
    "write_private",
]
