"""cnid's API client and reflectors against the API server emulation over
real HTTPS: the watch semantics the controllers rely on (a dropped
connection, a 410 after compaction), retries, TLS, and the IPBlock store
under concurrent writers."""

from __future__ import annotations

import ipaddress
import json
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from cnid.cluster import KubeStore
from cnid.core import StoreConflict
from cnid.daemon import parse_config
from cnid.ipam import AddressPool, Owner
from cnid.kube import (
    NAMESPACES,
    VRF_DOMAINS,
    ApiUnavailable,
    AttachmentSpec,
    KubeClient,
    KubeConfig,
    Namespace,
    ObjectMeta,
    Reflector,
    VRFDomain,
    VRFDomainSpec,
    WatchEvent,
    load_config,
)
from testbed.kubeapi import KubeApi, open_kubeapi

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "kube" / "crds"
RBAC = REPO / "kube" / "deploy" / "rbac.yaml"


@pytest.fixture
async def api() -> AsyncIterator[KubeApi]:
    async with open_kubeapi([CRDS], RBAC, bookmark_interval=0.2) as server:
        yield server


def sa_config(api: KubeApi) -> KubeConfig:
    """What the daemon uses: the service account's kubeconfig (RBAC applies)."""
    assert api.sa_kubeconfig_path is not None
    return load_config(str(api.sa_kubeconfig_path))


def domain(name: str, vrf: int) -> VRFDomain:
    return VRFDomain(
        metadata=ObjectMeta(name=name),
        spec=VRFDomainSpec(
            vrf=vrf,
            table=vrf,
            prefix="10.9.0.0",
            prefixlen=16,
            ipblocklen=26,
            attachments=[AttachmentSpec(type="l3vni", vni=vrf)],
        ),
    )


async def wait_until(what: str, probe: object, timeout: float = 10.0) -> None:
    assert callable(probe)
    with trio.move_on_after(timeout):
        while not probe():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out: {what}")


async def test_a_reflector_survives_a_dropped_connection_and_a_410(api: KubeApi) -> None:
    admin = load_config(str(api.kubeconfig_path))
    path = "/apis/cni.pyroute2.org/v1alpha1/vrfdomains"
    async with (
        KubeClient(sa_config(api)) as client,
        KubeClient(admin) as writer,
        httpx.AsyncClient(
            base_url=api.url,
            headers={"Authorization": f"Bearer {api.token}"},
            verify=ssl.create_default_context(cafile=str(api.ca_file)),
        ) as raw,
    ):
        reflector: Reflector[VRFDomain] = Reflector(client, VRF_DOMAINS, name="vrfdomains")
        events: list[WatchEvent[VRFDomain]] = []
        reflector.add_listener(events.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(reflector.run)
            await writer.create(VRF_DOMAINS, domain("a", 1))
            await reflector.synced.wait()
            await wait_until("a", lambda: "a" in reflector.items)

            # A dropped connection: what changes meanwhile still arrives.
            api.drop_watches()
            await writer.create(VRF_DOMAINS, domain("b", 2))
            await wait_until("b after a drop", lambda: "b" in reflector.items)

            # Compaction, then a drop: the resumed watch gets 410 and the
            # reflector relists quietly; a deletion in the gap is seen as one.
            api.compact()
            (await raw.delete(f"{path}/a")).raise_for_status()  # cnid never deletes domains
            await writer.create(VRF_DOMAINS, domain("c", 3))
            api.compact()
            api.drop_watches()
            # The live watch may deliver the deletion before the drop: wait
            # for the reconnection as well, not only for the cache.
            await wait_until(
                "the relist",
                lambda: set(reflector.items) == {"b", "c"} and reflector.connected,
            )
            assert reflector.synced.is_set()
            kinds = [(e.type, e.object.metadata.name) for e in events if e.object is not None]
            assert ("DELETED", "a") in kinds
            # each object announced once as ADDED: the relist did not replay b
            assert [k for k in kinds if k == ("ADDED", "b")] == [("ADDED", "b")]
            nursery.cancel_scope.cancel()


async def test_requests_are_retried_through_server_errors_and_rate_limits(api: KubeApi) -> None:
    async with KubeClient(sa_config(api), retry_deadline=10.0) as client:
        api.fail_next(2, status=503, retry_after=0)
        api.fail_next(1, status=429, retry_after=0)
        found = await client.list(NAMESPACES)
    # the emulation's namespaces, as a real server starts with them
    names = {n.metadata.name for n in found.items if isinstance(n, Namespace)}
    assert names == {"default", "kube-system", "kube-public", "kube-node-lease"}
    codes = [r.code for r in api.requests if r.resource == "namespaces" and r.verb == "list"]
    assert codes == [503, 503, 429, 200]


async def test_the_client_verifies_the_api_servers_certificate(
    api: KubeApi, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.crt"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(other))
    bad = KubeConfig(server=api.url, ca_file=str(other), token=api.token)
    async with KubeClient(bad, retry_deadline=0.5) as client:
        with pytest.raises(ApiUnavailable):
            await client.list(NAMESPACES)


async def test_three_pools_on_ipblock_crs_never_double_book(api: KubeApi) -> None:
    """Three nodes' pools over the real API path, concurrently: every
    address once, every block's status true."""
    default = parse_config("[default]\nprefix = 10.30.0.0\nprefixlen = 22\n").default.domain()
    async with KubeClient(sa_config(api)) as client:
        pools = [AddressPool(KubeStore(client), f"n{i}") for i in range(3)]
        got: list[tuple[str, str]] = []

        async def worker(pool: AddressPool, n: int) -> None:
            lease = await pool.allocate(
                default, Owner(container_id=f"{pool.node}-{n}", ifname="eth0")
            )
            got.append((pool.node, lease.address))

        async with trio.open_nursery() as nursery:
            for pool in pools:
                for n in range(40):
                    nursery.start_soon(worker, pool, n)
        addresses = [a for _, a in got]
        assert len(addresses) == len(set(addresses)) == 120
        blocks = await pools[0].blocks()
        assert sum(b.allocated for b in blocks) == 120 + len(blocks)  # + a gateway each
        for b in blocks:
            mine = [
                a for node, a in got if node == b.node and a.startswith(b.cidr.rsplit(".", 1)[0])
            ]
            assert mine, b
        # a write based on a stale read is refused
        store = pools[0].store
        rec = (await store.list_blocks(node="n0"))[0]
        pod = next(a for a, h in rec.allocations.items() if h.kind == "pod")
        fewer = {a: h for a, h in rec.allocations.items() if a != pod}
        await store.update_block(msgspec.structs.replace(rec, allocations=fewer))
        with pytest.raises(StoreConflict):
            await store.update_block(rec)


async def test_three_agent_processes_race_300_allocations_each(api: KubeApi) -> None:
    """Three processes (three nodes' pools, as the daemon runs them), 300
    concurrent allocations each, one VRF, one API server over HTTPS: no
    address twice, every block's status true to its allocations."""
    assert api.sa_kubeconfig_path is not None
    got: dict[str, str] = {}

    async def agent(node: str) -> None:
        cmd = [
            sys.executable, "-m", "testbed.ipam_agent",
            "--kubeconfig", str(api.sa_kubeconfig_path), "--node", node, "--count", "300",
        ]  # fmt: skip
        proc = await trio.run_process(cmd, capture_stdout=True, cwd=REPO)
        got.update(json.loads(proc.stdout))

    async with trio.open_nursery() as nursery:
        for node in ("n1", "n2", "n3"):
            nursery.start_soon(agent, node)
    assert len(got) == 900
    assert len(set(got.values())) == 900
    async with KubeClient(sa_config(api)) as client:
        blocks = await KubeStore(client).list_blocks()
    held: dict[str, str] = {}
    for rec in blocks:
        net = ipaddress.ip_network(rec.cidr)
        for addr, alloc in rec.allocations.items():
            assert ipaddress.ip_address(addr) in net
            if alloc.kind == "pod":
                assert alloc.container_id.startswith(rec.node + "-")  # a node's own block
                held[alloc.container_id] = addr
    assert held == got
    raw = [o for o in api.objects("ipam.pyroute2.org", "ipblocks")]
    for obj in raw:
        status = obj["status"]
        assert status["allocated"] == len(status["allocations"]) and status["capacity"] == 62
