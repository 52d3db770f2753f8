"""The CNI verbs' semantics, over a fake dataplane that keeps the kernel's
rules (a link exists or not; ours are listed by tag) and a MemoryStore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.cni import CniService, parse_invocation
from cnid.core import (
    Attachment,
    CniCode,
    CnidError,
    Domain,
    DomainLinks,
    DomainRegistry,
    Journal,
    KernelError,
    Metrics,
    PodRecord,
    Readiness,
)
from cnid.daemon import parse_config
from cnid.dataplane import NetnsFd, PodLink, PodSpec, PodWiring, host_ifname
from cnid.ipam import AddressPool, MemoryStore, Owner

NETNS_FD = 1000


class FakeDataplane:
    def __init__(self) -> None:
        self.links: dict[str, tuple[str, str, str]] = {}
        self.fail_next_wire: Exception | None = None
        self.wire_delay = 0.0
        self.wired: list[PodSpec] = []
        self.checked: list[PodSpec] = []

    def is_netns_fd(self, fd: int) -> bool:
        return fd == NETNS_FD

    async def wire_pod(self, netns: NetnsFd, spec: PodSpec) -> PodWiring:
        assert netns == NETNS_FD
        self.wired.append(spec)
        name = spec.host_ifname
        if name in self.links:
            raise KernelError(f"{name} exists", errno=17)
        self.links[name] = (spec.container_id, spec.ifname, spec.address)
        await trio.sleep(self.wire_delay)
        if self.fail_next_wire is not None:
            exc, self.fail_next_wire = self.fail_next_wire, None
            # like the real one: roll back what this call created, then raise
            del self.links[name]
            raise exc
        return PodWiring(
            host_ifname=name,
            host_mac="02:00:00:00:00:01",
            pod_ifname=spec.ifname,
            pod_mac="02:00:00:00:00:02",
            mtu=spec.mtu,
        )

    async def unwire_pod(
        self, *, container_id: str, ifname: str, address: str | None, domain: Domain | None
    ) -> None:
        self.links.pop(host_ifname(container_id, ifname), None)

    async def check_pod(self, netns: NetnsFd, spec: PodSpec) -> None:
        assert netns == NETNS_FD
        self.checked.append(spec)
        if spec.host_ifname not in self.links:
            raise KernelError("host link missing", errno=19)

    async def list_pod_links(self) -> list[PodLink]:
        return [
            PodLink(host_ifname=n, container_id=c, ifname=i, master="vrf-42")
            for n, (c, i, _) in self.links.items()
        ]


class Env:
    def __init__(self, tmp: Path, store: MemoryStore | None = None, config_text: str = "") -> None:
        config = parse_config(config_text)
        self.domain = config.default.domain()
        self.domains = DomainRegistry(self.domain)
        self.domains.set_links(
            self.domain.name,
            DomainLinks(
                vrf="vrf-42",
                table=42,
                bridge="br-42",
                vxlan="vx-42",
                router_mac="02:00:00:00:00:42",
            ),
        )
        self.readiness = Readiness()
        self.readiness.set_ready("all")
        self.store = store or MemoryStore()
        self.pool = AddressPool(self.store, "node1")
        self.journal = Journal(tmp)
        self.journal.load()
        self.dp = FakeDataplane()
        self.metrics = Metrics()
        self.service = CniService(
            pool=self.pool,
            journal=self.journal,
            dataplane=self.dp,
            domains=self.domains,
            readiness=self.readiness,
            metrics=self.metrics,
            mtu=1450,
        )

    async def call(
        self,
        command: str,
        cid: str = "c1",
        ifname: str = "eth0",
        fd: int | None = NETNS_FD,
        version: str = "1.1.0",
        **conf: Any,
    ) -> Any:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": ifname,
            "CNI_NETNS": "/run/netns/p" if fd is not None else "",
            "CNI_ARGS": f"K8S_POD_NAMESPACE=ns;K8S_POD_NAME={cid}",
        }
        stdin = json.dumps({"cniVersion": version, "name": "cnid", **conf}).encode()
        inv = parse_invocation(env, stdin, fd is not None)
        return await self.service.handle(inv, fd)

    async def pod_addresses(self) -> set[str]:
        return {lease.address for lease in await self.pool.leases()}


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


async def test_add_wires_records_and_answers_the_requested_version(env: Env) -> None:
    out = await env.call("ADD", version="0.4.0")
    assert out["cniVersion"] == "0.4.0"
    ip = out["ips"][0]
    assert ip["address"].startswith("10.244.") and ip["address"].endswith("/32")
    assert ip["gateway"] == "10.244.0.1" and ip["version"] == "4"
    assert out["interfaces"][1]["sandbox"] == "/run/netns/p"
    rec = env.journal.get(Attachment("c1", "eth0"))
    assert rec is not None and rec.state == "ready"
    assert env.metrics.pods_attached.labels(vrf="42")._value.get() == 1


async def test_repeated_add_returns_the_same_result(env: Env) -> None:
    first = await env.call("ADD")
    again = await env.call("ADD")
    assert first == again
    assert len(env.dp.links) == 1
    assert len(await env.pool.leases()) == 1


async def test_pods_get_distinct_addresses_concurrently(env: Env) -> None:
    env.dp.wire_delay = 0.01
    results: dict[str, Any] = {}

    async def add(cid: str) -> None:
        results[cid] = await env.call("ADD", cid=cid)

    async with trio.open_nursery() as nursery:
        for i in range(80):
            nursery.start_soon(add, f"pod{i}")
    addresses = {r["ips"][0]["address"] for r in results.values()}
    assert len(addresses) == 80
    assert len(env.dp.links) == 80


async def test_del_is_idempotent_and_frees_the_address(env: Env) -> None:
    out = await env.call("ADD")
    address = out["ips"][0]["address"].split("/")[0]
    assert await env.call("DEL") is None
    assert await env.call("DEL") is None
    assert await env.call("DEL", fd=None) is None  # containerd's second DEL: empty CNI_NETNS
    assert await env.call("DEL", cid="never-seen") is None
    assert env.dp.links == {}
    assert address not in await env.pod_addresses()
    assert env.journal.all() == []
    assert env.metrics.pods_attached.labels(vrf="42")._value.get() == 0


async def test_failed_wiring_leaves_nothing(env: Env) -> None:
    env.dp.fail_next_wire = KernelError("veth create failed", errno=1)
    with pytest.raises(KernelError):
        await env.call("ADD")
    assert env.dp.links == {}
    assert await env.pod_addresses() == set()
    assert env.journal.all() == []
    # and the next ADD works
    assert (await env.call("ADD"))["ips"]


async def test_cancelled_add_finishes_its_wiring_and_records_it(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    # A caller that goes away mid-ADD (the runtime killed the plugin) cancels
    # the ADD while the pod is being wired. The wiring is shielded: it runs to
    # its end and the ADD is recorded whole, so the runtime's retry gets the
    # same answer at once and its DEL finds everything to remove.
    env.dp.wire_delay = 10
    with trio.move_on_after(0.05):
        await env.call("ADD")
    assert trio.current_time() >= 10  # the cancel did not cut the wiring short
    rec = env.journal.get(Attachment("c1", "eth0"))
    assert rec is not None and rec.state == "ready" and rec.result is not None
    assert list(env.dp.links) == [host_ifname("c1", "eth0")]
    assert await env.pod_addresses() == {rec.address}
    again = await env.call("ADD")
    assert again["ips"][0]["address"].split("/")[0] == rec.address
    assert len(env.dp.links) == 1
    assert await env.call("DEL") is None
    assert env.dp.links == {} and await env.pod_addresses() == set()
    assert env.journal.all() == []


async def test_not_ready_node_says_try_again_and_status_50(env: Env) -> None:
    env.readiness.set_not_ready("domains", "no VRF device")
    with pytest.raises(CnidError) as info:
        await env.call("ADD")
    assert info.value.code == CniCode.TRY_AGAIN_LATER
    assert "no VRF device" in info.value.details
    with pytest.raises(CnidError) as info:
        await env.call("STATUS", fd=None)
    assert info.value.code == CniCode.NOT_AVAILABLE
    env.readiness.set_ready("domains")
    assert await env.call("STATUS", fd=None) is None


async def test_add_without_a_netns_fd_is_unknown_container(env: Env) -> None:
    with pytest.raises(CnidError) as info:
        await env.service.handle(
            parse_invocation(
                {
                    "CNI_COMMAND": "ADD",
                    "CNI_CONTAINERID": "x",
                    "CNI_IFNAME": "eth0",
                    "CNI_NETNS": "/nope",
                },
                b'{"cniVersion":"1.1.0","name":"cnid"}',
                False,
            ),
            None,
        )
    assert info.value.code == CniCode.UNKNOWN_CONTAINER
    assert await env.pod_addresses() == set()


async def test_check(env: Env) -> None:
    with pytest.raises(CnidError) as info:
        await env.call("CHECK")
    assert info.value.code == CniCode.UNKNOWN_CONTAINER
    out = await env.call("ADD")
    assert await env.call("CHECK", prevResult=out) is None
    wrong = {**out, "ips": [{"address": "10.9.9.9/32"}]}
    with pytest.raises(CnidError, match="prevResult"):
        await env.call("CHECK", prevResult=wrong)
    env.dp.links.clear()
    with pytest.raises(KernelError):
        await env.call("CHECK", prevResult=out)


@pytest.mark.parametrize(
    ("kind", "plen", "gateway"), [("l3vni", 32, None), ("l2vni", 16, "10.244.0.1")]
)
async def test_check_is_given_the_spec_add_planned(
    tmp_path: Path, kind: str, plen: int, gateway: str | None
) -> None:
    env = Env(tmp_path, config_text=f"[default]\nsystem_vrf_type = {kind}\n")
    out = await env.call("ADD")
    assert await env.call("CHECK", prevResult=out) is None
    [wired] = env.dp.wired
    assert env.dp.checked == [wired]
    assert (wired.routed, wired.prefixlen, wired.mtu) == (kind == "l3vni", plen, 1450)
    lease = (await env.pool.leases())[0]
    assert wired.gateway == (gateway or lease.gateway)
    # the result and the record say what was planned
    assert out["ips"][0] == {
        "address": f"{wired.address}/{plen}",
        "gateway": wired.gateway,
        "interface": 1,
    }
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": wired.gateway}]
    rec = env.journal.get(Attachment("c1", "eth0"))
    assert rec is not None
    assert (rec.address, rec.prefixlen, rec.gateway, rec.host_ifname) == (
        wired.address,
        wired.prefixlen,
        wired.gateway,
        wired.host_ifname,
    )


async def test_gc_releases_all_but_the_valid_attachments(env: Env) -> None:
    for cid in ("keep", "drop1", "drop2"):
        await env.call("ADD", cid=cid)
    # an orphan link of ours without a record, and an orphan lease
    env.dp.links[host_ifname("orphan", "eth0")] = ("orphan", "eth0", "")
    await env.pool.allocate(env.domain, Owner(container_id="leaked", ifname="eth0"))
    await env.call(
        "GC", fd=None, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    )
    assert [r.container_id for r in env.journal.all()] == ["keep"]
    assert set(env.dp.links) == {host_ifname("keep", "eth0")}
    assert [lease.owner.container_id for lease in await env.pool.leases()] == ["keep"]


async def test_recovery_after_a_crash(tmp_path: Path) -> None:
    store = MemoryStore()
    env = Env(tmp_path, store)
    await env.call("ADD", cid="alive")
    await env.call("ADD", cid="gone")
    # a crash in the middle of an ADD: address allocated, record pending, link half made
    lease = await env.pool.allocate(env.domain, Owner(container_id="half", ifname="eth0"))
    env.journal.put(
        PodRecord(
            container_id="half",
            ifname="eth0",
            state="pending",
            network_name="cnid",
            netns="/run/netns/h",
            domain="vrf-42",
            vrf=42,
            host_ifname=host_ifname("half", "eth0"),
            address=lease.address,
        )
    )
    links = dict(env.dp.links)
    links[host_ifname("half", "eth0")] = ("half", "eth0", lease.address)
    del links[host_ifname("gone", "eth0")]  # that pod's netns vanished while we were down

    restarted = Env(tmp_path, store)
    restarted.dp.links = links
    await restarted.service.recover()
    assert [r.container_id for r in restarted.journal.all()] == ["alive"]
    assert set(restarted.dp.links) == {host_ifname("alive", "eth0")}
    assert [lease.owner.container_id for lease in await restarted.pool.leases()] == ["alive"]
    assert restarted.metrics.pods_attached.labels(vrf="42")._value.get() == 1
    # DEL after the restart works from the record
    assert await restarted.call("DEL", cid="alive") is None
    assert restarted.dp.links == {}
