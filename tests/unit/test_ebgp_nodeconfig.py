"""A node's AS and eBGP neighbours from its VRFNodeConfig, on trio's virtual
clock against the emulated API server in-process (tests/unit/clusterapi.py)
and a fake speaker: the schema's checks, the Accepted condition of a config
the node cannot use (the running neighbours stay, nothing half-applied),
live changes of the neighbours, and MD5 passwords from a Secret of the
daemon's namespace."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import trio
import trio.testing
import yaml

from cnid.bgp import BgpOptions, Neighbor, SpeakerConfig
from cnid.cluster import NodeConfigController, NodeSettings, Peering
from cnid.kube import (
    NAMESPACES,
    NODES,
    SECRETS,
    VRF_NODE_CONFIGS,
    Namespace,
    Node,
    ObjectMeta,
    Reflector,
    Secret,
    VRFNodeConfig,
)
from testbed.kubeapi import InProcessKubeApi
from tests.unit.clusterapi import CRDS, Admin, cluster, conditions, node, nodeconfig

ME, LOCAL = "k1", "192.168.0.1"
NAMESPACE = "pyroute2-cni"
LEAF1 = {"address": "10.1.1.0", "asn": 65101}
LEAF2 = {"address": "10.1.2.0", "asn": 65102, "multihop": 3, "bfd": True, "allowAsIn": 1}


class FakeSpeaker:
    def __init__(self) -> None:
        self.configs: list[SpeakerConfig] = []

    def configure(self, config: SpeakerConfig) -> None:
        self.configs.append(config)

    @property
    def neighbors(self) -> tuple[Neighbor, ...]:
        return self.configs[-1].neighbors


class Env:
    def __init__(
        self, api: InProcessKubeApi, admin: Admin, speaker: FakeSpeaker, nc: NodeConfigController
    ) -> None:
        self.api = api
        self.admin = admin
        self.speaker = speaker
        self.nodeconfig = nc

    def conditions(self, name: str = "k1-cfg") -> dict[str, tuple[str, str]]:
        return conditions(self.api, "vrfnodeconfigs", name)

    def message(self, type_: str, name: str = "k1-cfg") -> str:
        obj = self.api.get_object("cni.pyroute2.org", "vrfnodeconfigs", name)
        assert obj is not None
        [cond] = [c for c in obj["status"]["conditions"] if c["type"] == type_]
        return str(cond["message"])

    async def set_neighbors(self, *neighbors: dict[str, Any], **spec: Any) -> None:
        body = {"spec": {"neighbors": list(neighbors), **spec}}
        await self.admin.patch(VRF_NODE_CONFIGS, "k1-cfg", body)
        await trio.sleep(0.05)


def config(*neighbors: dict[str, Any], asn: int = 0) -> VRFNodeConfig:
    obj = nodeconfig("k1-cfg", ME)
    raw = msgspec.to_builtins(obj)
    raw["spec"]["neighbors"] = list(neighbors)
    if asn:
        raw["spec"]["asn"] = asn
    return msgspec.convert(raw, VRFNodeConfig)


def secret(**keys: str) -> Secret:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()}
    return Secret(metadata=ObjectMeta(name="cnid-bgp", namespace=NAMESPACE), data=data)


def relaxed_crd(tmp_path: Path) -> Path:
    """The CRD without its checks of the AS and the neighbours: what an older
    CRD, or one edited by hand, lets through to the node."""
    doc = yaml.safe_load((CRDS / "vrfnodeconfigs.yaml").read_text())
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["asn"] = {"type": "integer"}
    spec["properties"]["neighbors"]["items"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    path = tmp_path / "vrfnodeconfigs.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@asynccontextmanager
async def running(
    *objects: Any, crds: tuple[Path, ...] = (CRDS,), options: BgpOptions | None = None
) -> AsyncIterator[Env]:
    """Node k1's NodeConfigController and Peering, started as the daemon
    does (the Secrets read before the settings are taken)."""
    async with cluster(crd_paths=crds) as (api, client, admin):
        await admin.create(NAMESPACES, Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        for obj in objects:
            rt = NODES if isinstance(obj, Node) else SECRETS if isinstance(obj, Secret) else None
            await admin.create(rt or VRF_NODE_CONFIGS, obj)
        speaker = FakeSpeaker()
        async with trio.open_nursery() as nursery:
            nodes: Reflector[Node] = Reflector(client, NODES, name="nodes")
            configs: Reflector[VRFNodeConfig] = Reflector(
                client, VRF_NODE_CONFIGS, name="vrfnodeconfigs"
            )
            await nursery.start(nodes.run)
            await nursery.start(configs.run)
            await nodes.synced.wait()
            await configs.synced.wait()
            nc = NodeConfigController(client=client, node=ME, configs=configs, namespace=NAMESPACE)
            await nc.read_secrets()
            settings, problem = nc.current()
            if problem:
                settings = NodeSettings()  # server.ini's, as the daemon does
            nc.started_with(settings)
            await nursery.start(nc.run)
            peering = Peering(
                speaker=speaker,  # type: ignore[arg-type]
                node=ME,
                router_id=LOCAL,
                local=LOCAL,
                settings=settings,
                options=options or BgpOptions(asn=65001),
                nodes=nodes,
                configs=configs,
                nodeconfig=nc,
            )
            await nursery.start(peering.run)
            await trio.sleep(0.05)
            yield Env(api, admin, speaker, nc)
            nursery.cancel_scope.cancel()


NODES_UP = (node(ME, LOCAL), node("k2", "192.168.0.2"))


async def test_the_schema_refuses_what_no_node_could_use(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with cluster() as (api, _client, admin):
        bad = [
            ({"asn": 0}, "spec.asn"),
            ({"neighbors": [{**LEAF1, "address": "leaf1"}]}, "address must be an IPv4 or IPv6"),
            ({"neighbors": [{**LEAF1, "asn": 2**32}]}, "asn"),
            ({"neighbors": [{**LEAF1, "multihop": 1}]}, "multihop"),
            ({"neighbors": [{**LEAF1, "allowAsIn": 11}]}, "allowAsIn"),
            ({"neighbors": [{"address": "10.1.1.0"}]}, "asn"),
            ({"neighbors": [LEAF1, LEAF1]}, "Duplicate value"),
        ]
        for spec, why in bad:
            raw = msgspec.to_builtins(nodeconfig("k1-cfg", ME))
            raw["spec"].update(spec)
            response = await admin.http.post(VRF_NODE_CONFIGS.path(), json=raw)
            assert response.status_code == 422, (spec, response.text)
            assert why in response.text, (spec, response.text)
        raw = msgspec.to_builtins(config(LEAF1, LEAF2, asn=65001))
        response = await admin.http.post(VRF_NODE_CONFIGS.path(), json=raw)
        assert response.status_code == 201, response.text
        stored = api.get_object("cni.pyroute2.org", "vrfnodeconfigs", "k1-cfg")
        assert stored is not None and stored["spec"]["neighbors"][1]["allowAsIn"] == 1


async def test_neighbours_replace_the_mesh_and_follow_the_config_live(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(*NODES_UP, config(LEAF1, asn=65001)) as env:
        assert env.speaker.configs[-1].asn == 65001
        assert env.speaker.neighbors == (Neighbor("10.1.1.0", role="neighbor", asn=65101),)
        assert env.conditions() == {"Accepted": ("True", "Valid"), "Ready": ("True", "Applied")}
        await env.set_neighbors(LEAF1, LEAF2)
        assert [n.address for n in env.speaker.neighbors] == ["10.1.1.0", "10.1.2.0"]
        leaf2 = env.speaker.neighbors[1]
        assert (leaf2.asn, leaf2.multihop, leaf2.bfd, leaf2.allow_as_in) == (65102, 3, True, 1)
        assert env.conditions()["Ready"] == ("True", "Applied")
        # none left: back to the cluster's iBGP mesh
        await env.set_neighbors()
        assert [(n.address, n.role) for n in env.speaker.neighbors] == [("192.168.0.2", "mesh:k2")]


async def test_the_as_takes_a_restart(autojump_clock: trio.testing.MockClock) -> None:
    async with running(*NODES_UP, config(LEAF1, asn=65001)) as env:
        await env.set_neighbors(LEAF1, asn=65009)
        assert env.conditions()["Ready"] == ("False", "RestartRequired")
        assert {c.asn for c in env.speaker.configs} == {65001}


async def test_a_config_the_node_cannot_use_is_not_accepted_and_changes_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with running(*NODES_UP, config(LEAF1), crds=(relaxed_crd(tmp_path),)) as env:
        good = env.speaker.configs[-1]
        assert good.asn == 65001 and [n.address for n in good.neighbors] == ["10.1.1.0"]
        for neighbors, spec, why in [
            ((LEAF1, {**LEAF2, "multihop": 1}), {}, "neighbor 10.1.2.0: multihop 1 out of range"),
            ((LEAF1, {**LEAF2, "address": "leaf2"}), {}, "neighbor leaf2: 'leaf2' is not an IP"),
            ((LEAF1, {**LEAF2, "asn": 0}), {}, "neighbor 10.1.2.0: asn 0 out of range"),
            ((LEAF1, {**LEAF2, "allowAsIn": 11}), {}, "allowAsIn 11 out of range (0..10)"),
            ((LEAF2,), {"asn": 2**32}, "k1-cfg: asn 4294967296 out of range"),
        ]:
            await env.set_neighbors(*neighbors, **spec)
            assert env.conditions() == {
                "Accepted": ("False", "InvalidSpec"),
                "Ready": ("False", "InvalidSpec"),
            }, why
            assert why in env.message("Accepted")
            await trio.sleep(31)  # and the 30 s re-check changes nothing either
            # not half-applied: LEAF2 (valid on its own) did not come in either
            assert env.speaker.configs[-1] == good, why
        await env.set_neighbors(LEAF1, LEAF2, asn=None)
        assert env.conditions()["Accepted"] == ("True", "Valid")
        assert [n.address for n in env.speaker.neighbors] == ["10.1.1.0", "10.1.2.0"]


async def test_a_neighbours_password_comes_from_a_secret_and_follows_its_rotation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ref = {**LEAF1, "passwordSecretRef": {"name": "cnid-bgp", "key": "leaf1"}}
    async with running(*NODES_UP, config(ref), secret(leaf1="s3cret\n")) as env:
        assert env.speaker.neighbors[0].password == "s3cret"
        assert env.conditions()["Accepted"] == ("True", "Valid")
        # cnid's requests on secrets (the admin created it): get that one only
        mine = [r for r in env.api.requests if r.resource == "secrets" and r.verb != "create"]
        assert {(r.verb, r.namespace, r.name) for r in mine} == {("get", NAMESPACE, "cnid-bgp")}
        rotated = {"data": {"leaf1": base64.b64encode(b"n3w").decode()}}
        await env.admin.patch(SECRETS, "cnid-bgp", rotated, namespace=NAMESPACE)
        await trio.sleep(30)
        assert env.speaker.neighbors[0].password == "s3cret"
        await trio.sleep(32)  # read again every minute
        assert env.speaker.neighbors[0].password == "n3w"
        # a key gone: not accepted, the password in use stays
        await env.admin.patch(SECRETS, "cnid-bgp", {"data": {"leaf1": None}}, namespace=NAMESPACE)
        await trio.sleep(62)
        assert env.conditions()["Accepted"] == ("False", "SecretUnavailable")
        assert env.message("Accepted") == (
            "k1-cfg: neighbor 10.1.1.0: Secret pyroute2-cni/cnid-bgp has no key 'leaf1'"
        )
        assert env.speaker.neighbors[0].password == "n3w"


async def test_a_secret_that_is_not_there_yet_holds_the_neighbours_back_until_it_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ref = {**LEAF1, "passwordSecretRef": {"name": "cnid-bgp", "key": "leaf1"}}
    async with running(*NODES_UP, config(ref)) as env:
        assert env.conditions()["Accepted"] == ("False", "SecretUnavailable")
        assert "Secret pyroute2-cni/cnid-bgp not found" in env.message("Accepted")
        # the node started without its config: server.ini's mesh
        assert [n.address for n in env.speaker.neighbors] == ["192.168.0.2"]
        await env.admin.create(SECRETS, secret(leaf1='bad"quote'))
        await trio.sleep(7)  # retried every 5 s while it fails (checked every 2 s)
        assert "an MD5 password has 1-80 characters, no quotes" in env.message("Accepted")
        await env.admin.patch(
            SECRETS,
            "cnid-bgp",
            {"data": {"leaf1": base64.b64encode(b"s3cret").decode()}},
            namespace=NAMESPACE,
        )
        await trio.sleep(7)
        assert env.conditions()["Accepted"] == ("True", "Valid")
        assert [(n.address, n.password) for n in env.speaker.neighbors] == [("10.1.1.0", "s3cret")]


async def test_an_api_error_reading_the_secret_keeps_the_password_read_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ref = {**LEAF1, "passwordSecretRef": {"name": "cnid-bgp", "key": "leaf1"}}
    async with running(*NODES_UP, config(ref), secret(leaf1="s3cret")) as env:
        env.api.fail_next(1, status=500)  # the next request: the refresh a minute on
        await trio.sleep(61)
        assert env.conditions()["Accepted"] == ("True", "Valid")
        assert env.speaker.neighbors[0].password == "s3cret"
        assert any(r.resource == "secrets" and r.code == 500 for r in env.api.requests)


async def test_server_ini_neighbours_apply_without_a_config(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    from cnid.daemon import parse_config

    ini = parse_config("[bgp]\nasn = 65001\n[neighbor 10.1.9.0]\nasn = 65109\nallow_as_in = 1\n")
    async with running(*NODES_UP, options=ini.bgp) as env:
        assert env.speaker.neighbors == (
            Neighbor("10.1.9.0", role="neighbor", asn=65109, allow_as_in=1),
        )
        assert env.speaker.configs[-1].asn == 65001
