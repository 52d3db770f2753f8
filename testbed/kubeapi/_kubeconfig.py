"""Kubeconfig files, loadable by ``kubernetes.config.load_kube_config``."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def write_kubeconfig(path: Path, *, server: str, ca_file: Path, user: str, token: str) -> Path:
    """The CA is embedded (certificate-authority-data) so the file works
    wherever it is copied, a pod's filesystem or another network namespace."""
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubeapi",
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": f"{user}@kubeapi", "context": {"cluster": "kubeapi", "user": user}}],
        "current-context": f"{user}@kubeapi",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
