"""BFD (RFC 5880) under trio: single hop (RFC 5881) and multihop (RFC 5883)
over IPv4, asynchronous mode, no authentication. The speaker process runs
it (``cnid.bgp``'s ``BfdHost``), so the sessions outlive the daemon.

* ``_packet``: control packets, the encoder and the strict decoder;
* ``_session``: one session's state machine, pure (the time passed in);
* ``_runner``: a session under trio (transmission, jitter, detection timer);
* ``_transport``: the UDP sockets (TTL 255, GTSM, the destination address);
* ``_service``: ``BfdService``: sessions by key, demultiplexing, state-change
  subscriptions, counters and the peers' view.

Imports only ``cnid.core`` (an adapter: pyproject.toml's layer contract).
"""

from ._packet import (
    MANDATORY_LENGTH,
    BadPacket,
    BfdError,
    ControlPacket,
    Diag,
    Discard,
    State,
    decode,
    encode,
)
from ._runner import Runner
from ._service import BfdService, Counters, PeerKey, PeerStatus, StateChange
from ._session import SLOW_TX_US, PeerConfig, Session, Transition
from ._transport import MULTIHOP_PORT, SINGLE_HOP_PORT, SocketFactory, udp_socket

__all__ = [
    "MANDATORY_LENGTH",
    "MULTIHOP_PORT",
    "SINGLE_HOP_PORT",
    "SLOW_TX_US",
    "BadPacket",
    "BfdError",
    "BfdService",
    "ControlPacket",
    "Counters",
    "Diag",
    "Discard",
    "PeerConfig",
    "PeerKey",
    "PeerStatus",
    "Runner",
    "Session",
    "SocketFactory",
    "State",
    "StateChange",
    "Transition",
    "decode",
    "encode",
    "udp_socket",
]
