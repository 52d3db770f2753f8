"""One CNI invocation, parsed and validated from what the plugin forwarded.

Pure: no I/O. Every problem becomes the CnidError subclass whose code the
CNI spec prescribes for it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from ..core._errors import (
    DecodeFailure,
    IncompatibleVersion,
    InvalidEnvironment,
    InvalidNetconf,
)
from ..core._pods import Attachment
from ._versions import LATEST, SUPPORTED_VERSIONS

Command = Literal["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"]
COMMANDS: tuple[str, ...] = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
# The spec's minimum version for each verb.
_MIN_VERSION = {"CHECK": (0, 4, 0), "STATUS": (1, 1, 0), "GC": (1, 1, 0)}
# CNI_IFNAME: what the kernel accepts as an interface name.
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")
# CNI_CONTAINERID: the spec's "alphanumeric plus underscore, dot and dash".
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: The deepest nesting of arrays and objects a network configuration may
#: have (real ones nest a handful of levels: prevResult, plugins, ipam).
MAX_DEPTH = 64


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        raise IncompatibleVersion(f"malformed cniVersion {version[:64]!r}") from None


class Invocation(msgspec.Struct, frozen=True):
    command: str
    cni_version: str
    container_id: str
    ifname: str
    netns: str
    network_name: str
    netconf: dict[str, Any]
    args: dict[str, str]
    has_netns_fd: bool

    @property
    def attachment(self) -> Attachment:
        return Attachment(self.container_id, self.ifname)

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    @property
    def pod_uid(self) -> str:
        return self.args.get("K8S_POD_UID", "")

    @property
    def prev_result(self) -> dict[str, Any] | None:
        prev = self.netconf.get("prevResult")
        return prev if isinstance(prev, dict) else None

    def valid_attachments(self) -> set[Attachment]:
        """GC: the attachments the runtime still knows (cni.dev/valid-attachments)."""
        raw = self.netconf.get("cni.dev/valid-attachments", [])
        if not isinstance(raw, list):
            raise InvalidNetconf("cni.dev/valid-attachments must be a list")
        out: set[Attachment] = set()
        for item in raw:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("containerID"), str)
                or not isinstance(item.get("ifname"), str)
            ):
                raise InvalidNetconf(
                    "cni.dev/valid-attachments entries need string containerID and ifname",
                    details=repr(item)[:200],
                )
            out.add(Attachment(item["containerID"], item["ifname"]))
        return out


def parse_cni_args(raw: str) -> dict[str, str]:
    """CNI_ARGS: ``K=V;K=V``. A pair without ``=`` is an invalid environment."""
    out: dict[str, str] = {}
    for part in raw.split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise InvalidEnvironment(f"CNI_ARGS: {part!r} is not KEY=VALUE")
        out[key] = value
    return out


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and dicts deeper than ``limit`` (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_netconf(stdin: bytes) -> Any:
    """The network configuration's JSON; DecodeFailure (code 6) when it is
    not JSON or nests deeper than MAX_DEPTH."""
    try:
        netconf = msgspec.json.decode(stdin)
    except RecursionError:
        raise DecodeFailure(f"network configuration nests deeper than {MAX_DEPTH} levels") from None
    except msgspec.DecodeError as exc:
        raise DecodeFailure(f"network configuration is not valid JSON: {exc}") from None
    if too_deep(netconf):
        raise DecodeFailure(f"network configuration nests deeper than {MAX_DEPTH} levels")
    return netconf


def peek_version(stdin: bytes) -> str:
    """The cniVersion of a configuration, for error results, never raising."""
    try:
        conf = msgspec.json.decode(stdin)
    except (msgspec.DecodeError, RecursionError):
        return LATEST
    version = conf.get("cniVersion") if isinstance(conf, dict) else None
    return version if isinstance(version, str) and version in SUPPORTED_VERSIONS else LATEST


def parse_invocation(env: dict[str, str], stdin: bytes, has_netns_fd: bool) -> Invocation:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise InvalidEnvironment("CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise InvalidEnvironment(f"unknown CNI_COMMAND {command!r}")
    netconf = decode_netconf(stdin)
    if not isinstance(netconf, dict):
        raise DecodeFailure("network configuration must be a JSON object")
    version = netconf.get("cniVersion")
    if not isinstance(version, str):
        raise InvalidNetconf("cniVersion missing from the network configuration")
    if version not in SUPPORTED_VERSIONS:
        raise IncompatibleVersion(
            f"incompatible CNI version {version[:64]!r}",
            details="supported: " + ", ".join(SUPPORTED_VERSIONS),
        )
    minimum = _MIN_VERSION.get(command)
    if minimum and version_tuple(version) < minimum:
        raise IncompatibleVersion(
            f"{command} needs cniVersion {'.'.join(map(str, minimum))} or later, got {version}"
        )
    name = netconf.get("name", "")
    if command not in ("VERSION",) and (not isinstance(name, str) or not name):
        raise InvalidNetconf("the network configuration has no name")

    container_id = env.get("CNI_CONTAINERID", "")
    ifname = env.get("CNI_IFNAME", "")
    netns = env.get("CNI_NETNS", "")
    if command in ("ADD", "DEL", "CHECK"):
        if not container_id:
            raise InvalidEnvironment("CNI_CONTAINERID is not set")
        if not _CONTAINER_ID.match(container_id):
            raise InvalidEnvironment(f"CNI_CONTAINERID {container_id!r} has invalid characters")
        if not ifname:
            raise InvalidEnvironment("CNI_IFNAME is not set")
        if not _IFNAME.match(ifname):
            raise InvalidEnvironment(f"CNI_IFNAME {ifname!r} is not a valid interface name")
    if command in ("ADD", "CHECK") and not netns:
        raise InvalidEnvironment(f"CNI_NETNS is required for {command}")
    return Invocation(
        command=command,
        cni_version=version,
        container_id=container_id,
        ifname=ifname,
        netns=netns,
        network_name=name if isinstance(name, str) else "",
        netconf=netconf,
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        has_netns_fd=has_netns_fd,
    )
