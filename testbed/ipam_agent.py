"""``python -m testbed.ipam_agent``: one node's address pool over IPBlock
CRs, as the daemon runs it (cnid.ipam.AddressPool + cnid.cluster.KubeStore
+ cnid.kube.KubeClient), allocating for COUNT owners at once and printing
what it got as JSON. Several of these against one API server are several
nodes racing for blocks and addresses, without the kernel side."""

from __future__ import annotations

import argparse
import json
import sys

import trio

from cnid.cluster import KubeStore
from cnid.daemon import parse_config
from cnid.ipam import AddressPool, Owner
from cnid.kube import KubeClient, load_config


async def main(args: argparse.Namespace) -> None:
    domain = parse_config(args.ini).default.domain()
    got: dict[str, str] = {}
    async with KubeClient(load_config(args.kubeconfig)) as client:
        pool = AddressPool(KubeStore(client), args.node)

        async def one(n: int) -> None:
            owner = Owner(container_id=f"{args.node}-{n}", ifname="eth0")
            got[owner.container_id] = (await pool.allocate(domain, owner)).address

        async with trio.open_nursery() as nursery:
            for n in range(args.count):
                nursery.start_soon(one, n)
    json.dump(got, sys.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--ini", default="", help="server.ini text for the domain")
    trio.run(main, parser.parse_args())
