"""cnid: a Kubernetes CNI for EVPN-VXLAN fabrics.

One trio daemon per node answers CNI requests forwarded by the static
``cnid-plugin``, allocates pod addresses, and drives the kernel with its
own rtnetlink encoder (``cnid.dataplane``, docs/dataplane.md says why not
pyroute2); ExaBGP is its BGP speaker (``cnid.bgp``, ``cnid.evpn``).
"""

__version__ = "0.1.0"
