"""The layout's rules that lint-imports does not check (README, "Layout"):
every package's public face is its ``__init__``'s ``__all__``, each name of
which exists; tests, the test bed and the benchmarks use those names, not
cnid's private modules, except the few allowed below, each with its reason."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import cnid

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted(m.name for m in pkgutil.walk_packages(cnid.__path__, "cnid.") if m.ispkg)

#: Private modules that tests and tools may reach into, and why. A test that
#: needs another private detail exports it from its package instead.
ALLOWED = {
    "cnid.dataplane._netlink": "the netlink codec itself: tested and benchmarked "
    "message by message (its constants and layouts are not the dataplane's API)",
    "cnid.dataplane._netns": "tests patch how a namespace is entered",
    "cnid.dataplane._pod": "a test spies on the netlink socket a pod's wiring opens",
    "cnid.dataplane._evpn": "EVPN's kernel encoding tested module by module",
    "cnid.dataplane._evpn_bridge": "EVPN's kernel encoding tested module by module",
    "cnid.dataplane._evpn_devices": "EVPN's kernel encoding tested module by module",
    "cnid.dataplane._evpn_plan": "EVPN's kernel encoding tested module by module",
    "cnid.dataplane._evpn_routes": "EVPN's kernel encoding tested module by module",
    "cnid.dataplane._evpn_values": "EVPN's kernel encoding tested module by module",
    "cnid.dataplane._evpn_apply": "EVPN's kernel encoding tested module by module",
    "cnid.bgp._extension": "runs inside ExaBGP, not in cnid: tested as that process loads it",
    "cnid.bgp._exabgp_fast": "runs inside ExaBGP, not in cnid: tested as that process loads it",
    "cnid.cni._versions": "its source file is what the plugin's header is generated from",
    "cnid.core._sockets": "tests patch the socket limits where they are looked up",
    "cnid.core._startup": "tests patch the process start time where it is looked up",
    "cnid.daemon._cli": "tests patch the daemon the command line starts",
    "cnid.kube._reflector": "tests patch the reflector's clock and jitter",
}

#: A private module named in code: an import, or a string (a script run in a
#: subprocess, or a monkeypatch target).
_PRIVATE = re.compile(r"\bcnid(?:\.[A-Za-z]\w*)*\._[A-Za-z]\w*")


def _private_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("cnid"):
                found.update(_PRIVATE.findall(node.module))
                found.update(
                    f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_PRIVATE.findall(alias.name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(_PRIVATE.findall(node.value))
    # A dotted string names a module and maybe an attribute: keep the module.
    return {m if importlib.util.find_spec(m) else m.rpartition(".")[0] for m in found}


def _sources() -> list[Path]:
    return sorted(
        p
        for d in ("tests", "testbed", "bench")
        for p in (REPO / d).rglob("*.py")
        if p != Path(__file__).resolve()
    )


def test_tests_and_tools_use_public_names() -> None:
    used: dict[str, list[str]] = {}
    for path in _sources():
        for module in _private_modules(path):
            used.setdefault(module, []).append(str(path.relative_to(REPO)))
    assert {m: f for m, f in used.items() if m not in ALLOWED} == {}
    # The allow-list stays short: an entry nothing needs goes.
    assert sorted(set(ALLOWED) - set(used)) == []


def test_the_check_sees_private_imports(tmp_path: Path) -> None:
    src = tmp_path / "t.py"
    src.write_text(
        "from cnid.core._errors import X\n"
        "from cnid.dataplane import _netlink\n"
        "import cnid.kube._reflector\n"
        "S = 'from cnid.daemon._cli import main'\n"
        "P = 'cnid.core._startup.process_start'\n"
        "from cnid.core import CnidError\n"
    )
    assert _private_modules(src) == {
        "cnid.core._errors",
        "cnid.dataplane._netlink",
        "cnid.kube._reflector",
        "cnid.daemon._cli",
        "cnid.core._startup",
    }


def test_packages_are_found() -> None:
    assert {"cnid.core", "cnid.daemon", "cnid.dataplane", "cnid.evpn"} <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_exports(name: str) -> None:
    """Like trio's test_exports: each package has an ``__all__``, without
    repeats, and every name in it exists."""
    package = importlib.import_module(name)
    exported = getattr(package, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported)
    missing = [n for n in exported if not hasattr(package, n)]
    assert missing == []


def test_names_used_through_a_package_exist() -> None:
    """``dataplane.X`` in a test or tool names something the package has (a
    name that moved between packages is found here, not in the VM tier)."""
    missing = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        packages: dict[str, object] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in PACKAGES:
                        packages[alias.asname or alias.name] = importlib.import_module(full)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in packages
                and not hasattr(packages[node.value.id], node.attr)
            ):
                missing.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert missing == []


def test_test_modules_have_unique_basenames() -> None:
    """The test folders have no ``__init__.py``: pytest imports each module
    by its basename, so two of one name stop the whole collection."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(REPO)} and {path.relative_to(REPO)}")
        seen.setdefault(path.name, path)
    assert not clashes, clashes
