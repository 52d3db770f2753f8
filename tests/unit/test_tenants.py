import pytest

from cnid.core import DomainRegistry, TryAgainLater
from cnid.daemon import parse_config


def test_namespaces_go_to_their_bound_domain_or_the_default() -> None:
    registry = DomainRegistry(parse_config("").default.domain())
    assert registry.for_namespace("anything").name == "vrf-42"
    registry.bind("test02", "vrf-42")
    assert registry.for_namespace("test02").name == "vrf-42"


def test_a_binding_to_a_missing_domain_never_lands_in_another_tenant() -> None:
    registry = DomainRegistry(parse_config("").default.domain())
    registry.bind("test03", "vrf-200")
    with pytest.raises(TryAgainLater, match="bound to VRFDomain vrf-200"):
        registry.for_namespace("test03")
    assert registry.get("vrf-200") is None


def test_without_the_default_domain_unbound_namespaces_wait() -> None:
    default = parse_config("").default.domain()
    registry = DomainRegistry(default, static=False)
    with pytest.raises(TryAgainLater, match="default domain vrf-42"):
        registry.for_namespace("web")
    registry.set_domains([default])
    assert registry.for_namespace("web") == default
