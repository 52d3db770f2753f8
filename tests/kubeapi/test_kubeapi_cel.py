"""x-kubernetes-validations: CEL rules, messages, transition rules, and the
Kubernetes IP/CIDR library."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from testbed.kubeapi import validate
from testbed.kubeapi._cel import CelRuntimeError, compile_rule, evaluate, to_cel
from tests.kubeapi._helpers import WIDGETS, WIDGETS_CRD, widget

Create = Callable[..., Any]
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.mark.parametrize(
    ("rule", "result"),
    [
        ("isIP('10.0.0.1') && isIP('fd00::1')", True),
        ("isIP('10.0.0.256') || isIP('::ffff:10.0.0.1') || isIP('fe80::1%eth0')", False),
        ("ip('10.0.0.1').family() == 4 && ip('fd00::1').family() == 6", True),
        ("ip('10.0.0.1') == ip('10.0.0.1') && ip('10.0.0.1') != ip('10.0.0.2')", True),
        ("string(ip('fd00:0::1')) == 'fd00::1'", True),
        ("ip('127.0.0.1').isLoopback() && ip('0.0.0.0').isUnspecified()", True),
        ("isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0') && !isCIDR('10.0.0.0/33')", True),
        ("cidr('10.1.2.3/16').prefixLength() == 16", True),
        ("cidr('10.1.2.3/16').masked() == cidr('10.1.0.0/16')", True),
        ("cidr('10.1.2.3/16') == cidr('10.1.0.0/16')", False),
        ("cidr('10.1.2.3/16').ip() == ip('10.1.2.3')", True),
        ("string(cidr('10.1.2.3/16').masked()) == '10.1.0.0/16'", True),
        (
            "cidr('10.0.0.0/8').containsIP('10.2.3.4')"
            " && !cidr('10.0.0.0/8').containsIP(ip('11.0.0.1'))",
            True,
        ),
        ("cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')", True),
        ("size('abc') == 3 && size([1, 2]) == 2", True),
        ("has(self.a) && !has(self.b)", True),
        ("string(5) == '5' && int('7') == 7", True),
        ("'abc'.matches('^a.c$')", True),
        ("[1, 2, 3].all(x, x > 0) && [1, 2, 3].exists(x, x == 2)", True),
        ("self.a.lowerAscii() == 'mixed'", True),
    ],
)
def test_cel_functions(rule: str, result: bool) -> None:
    value = evaluate(compile_rule(rule), {"self": to_cel({"a": "MiXeD"})})
    assert bool(value) is result


def test_cel_runtime_errors_say_what_failed() -> None:
    with pytest.raises(CelRuntimeError, match='IP Address "nope" parse error'):
        evaluate(compile_rule("ip('nope').family() == 4"), {})


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with open(WIDGETS_CRD) as file:
        docs = list(yaml.safe_load_all(file))
    found: dict[str, Any] = next(d for d in docs if d["kind"] == "CustomResourceDefinition")
    return found


def test_rule_with_message_and_field_path(crd: dict[str, Any]) -> None:
    assert validate(crd, widget("w", blocklen=10)) == [
        'spec.blocklen: Invalid value: "object": blocklen must be longer than prefixlen'
    ]


def test_rule_with_message_expression(crd: dict[str, Any]) -> None:
    assert validate(crd, widget("w", prefix="10.1.2.0")) == [
        'spec: Invalid value: "object": prefix 10.1.2.0 has host bits under /16'
    ]


def test_rule_on_a_string_field(crd: dict[str, Any]) -> None:
    problems = validate(crd, widget("w", prefix="not-an-ip"))
    assert 'spec.prefix: Invalid value: "string": must be an IP address' in problems
    assert any(
        'IP Address "not-an-ip" parse error' in p
        and p.endswith("evaluating rule: family does not match the prefix")
        for p in problems
    )


def test_rule_across_fields_with_defaults(crd: dict[str, Any]) -> None:
    assert validate(crd, widget("w", prefix="fd00::", prefixlen=64, blocklen=80)) == [
        'spec: Invalid value: "object": family does not match the prefix'
    ]
    assert validate(crd, widget("w", prefix="fd00::", prefixlen=64, blocklen=80, family=6)) == []


async def test_transition_rule_sees_old_self(client: httpx.AsyncClient, create: Create) -> None:
    await create(widget("w1", immutable="first"))
    same = await client.patch(f"{WIDGETS}/w1", json={"spec": {"size": 4}}, headers=MERGE)
    assert same.status_code == 200
    changed = await client.patch(
        f"{WIDGETS}/w1", json={"spec": {"immutable": "second"}}, headers=MERGE
    )
    assert changed.status_code == 422
    assert changed.json()["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "string": immutable is immutable',
            "field": "spec.immutable",
        }
    ]


async def test_crd_with_a_broken_rule_is_refused(
    client: httpx.AsyncClient, crd: dict[str, Any]
) -> None:
    broken = copy.deepcopy(crd)
    broken["metadata"]["name"] = "gadgets.test.example.org"
    broken["spec"]["names"] = {"kind": "Gadget", "plural": "gadgets"}
    spec_schema = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["x-kubernetes-validations"] = [{"rule": "self.size >"}]
    response = await client.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=broken
    )
    assert response.status_code == 422
    cause = response.json()["details"]["causes"][0]
    assert cause["field"] == (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    )
    assert "compilation failed" in cause["message"]
