from cnid._config import parse_config
from cnid._tenants import DomainRegistry


def test_namespaces_go_to_their_bound_domain_or_the_default() -> None:
    registry = DomainRegistry(parse_config("").default.domain())
    assert registry.for_namespace("anything").name == "vrf-42"
    registry.bind("test02", "vrf-42")
    assert registry.for_namespace("test02").name == "vrf-42"
    # a binding to a domain that does not exist (yet) falls back, never fails
    registry.bind("test03", "vrf-200")
    assert registry.for_namespace("test03").name == "vrf-42"
    assert registry.get("vrf-200") is None
