"""A throwaway CA and a server certificate for the emulated API server."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def server_context(
    directory: Path, hosts: list[str], ca: trustme.CA | None = None
) -> tuple[ssl.SSLContext, Path, trustme.CA]:
    """A TLS server context whose certificate names ``hosts`` (IPs or DNS
    names), the path of the CA file (``directory/ca.crt``) clients trust,
    and the CA: a new one unless ``ca`` is given (a restart keeps the CA
    that clients already trust)."""
    ca = ca or trustme.CA(organization_name="testbed kubeapi")
    unique = list(dict.fromkeys(hosts))
    cert = ca.issue_cert(*unique, common_name="kube-apiserver")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    ca_file = directory / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file, ca
