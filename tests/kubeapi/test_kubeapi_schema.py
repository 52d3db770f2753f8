"""Structural schema validation, defaulting and pruning of custom
resources, through the server and through ``validate``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from testbed.kubeapi import validate
from tests.kubeapi._helpers import WIDGETS, WIDGETS_CRD, widget

Create = Callable[..., Any]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with open(WIDGETS_CRD) as file:
        docs = list(yaml.safe_load_all(file))
    found: dict[str, Any] = next(d for d in docs if d["kind"] == "CustomResourceDefinition")
    return found


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            {"size": "3"},
            'spec.size: Invalid value: "3": spec.size in body must be of type integer: "string"',
        ),
        (
            {"size": 101},
            "spec.size: Invalid value: 101: spec.size in body should be less than or equal to 100",
        ),
        (
            {"size": 0},
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            {"weight": 0},
            "spec.weight: Invalid value: 0: spec.weight in body should be greater than 0",
        ),
        (
            {"color": "pink"},
            'spec.color: Unsupported value: "pink": supported values: "red", "green", "blue"',
        ),
        (
            {"name": "a"},
            'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long',
        ),
        ({"name": "abcdefghijk"}, "spec.name: Too long: may not be longer than 10"),
        (
            {"name": "9ab"},
            "spec.name: Invalid value: \"9ab\": spec.name in body should match '^[a-z][a-z0-9-]*$'",
        ),
        (
            {"mac": "zz"},
            'spec.mac: Invalid value: "zz": spec.mac in body must be of type mac: "zz"',
        ),
        (
            {"host": "-x"},
            'spec.host: Invalid value: "-x": spec.host in body must be of type hostname: "-x"',
        ),
        (
            {"address": "1.2.3"},
            'spec.address: Invalid value: "1.2.3": spec.address in body must be of type ipv4:'
            ' "1.2.3"',
        ),
        (
            {"address6": "1.2.3.4"},
            'spec.address6: Invalid value: "1.2.3.4": spec.address6 in body must be of type ipv6:'
            ' "1.2.3.4"',
        ),
        (
            {"network": "10.0.0.0"},
            'spec.network: Invalid value: "10.0.0.0": spec.network in body must be of type cidr:'
            ' "10.0.0.0"',
        ),
        (
            {"port": 1.5},
            "spec.port: Invalid value: 1.5: spec.port in body must be of type integer,string:"
            ' "number"',
        ),
        (
            {"tags": []},
            "spec.tags: Invalid value: []: spec.tags in body should have at least 1 items",
        ),
        ({"tags": ["a", "b", "c", "d"]}, "spec.tags: Too many: 4: must have at most 3 items"),
        ({"tags": ["a", "a"]}, 'spec.tags[1]: Duplicate value: "a"'),
        ({"labels": {"k": "toolong"}}, "spec.labels[k]: Too long: may not be longer than 5"),
        (
            {"labels": {"k": 1}},
            "spec.labels[k]: Invalid value: 1: spec.labels[k] in body must be of type string:"
            ' "integer"',
        ),
        ({"ports": [{"name": "a"}, {"name": "a"}]}, 'spec.ports[1]: Duplicate value: {"name":"a"}'),
        ({"ports": [{"number": 1}]}, "spec.ports[0].name: Required value"),
        (
            {"size": None},
            "spec.size: Required value",
        ),  # a null the schema does not allow is dropped
    ],
)
def test_schema_keywords(crd: dict[str, Any], spec: dict[str, Any], problem: str) -> None:
    assert validate(crd, widget("w", **spec)) == [problem]


@pytest.mark.parametrize(
    "spec",
    [
        {"port": 8080},
        {"port": "http"},
        {"note": None},
        {"mac": "aa:bb:cc:dd:ee:ff"},
        {"host": "node-1.example.org"},
        {"address": "192.168.124.2", "address6": "fd00::1", "network": "10.0.0.0/8"},
        {"weight": 0.5},
        {"extra": {"anything": {"goes": [1, "two"]}}},
    ],
)
def test_valid_values(crd: dict[str, Any], spec: dict[str, Any]) -> None:
    assert validate(crd, widget("w", **spec)) == []


def test_required_and_several_problems(crd: dict[str, Any]) -> None:
    obj = widget("w", size=0, color="pink")
    del obj["spec"]["prefixlen"]
    problems = validate(crd, obj)
    assert "spec.prefixlen: Required value" in problems
    assert len(problems) >= 3


def test_validate_checks_kind_metadata_and_unknown_fields(crd: dict[str, Any]) -> None:
    assert validate(crd, dict(widget("w"), kind="Gadget")) == ["kind 'Gadget' is not 'Widget'"]
    bad_name = validate(crd, widget("Bad_Name"))
    assert bad_name and bad_name[0].startswith('metadata.name: Invalid value: "Bad_Name"')
    typo = widget("w", colour="red")
    assert validate(crd, typo) == []  # the server silently prunes it
    assert validate(crd, typo, strict=True) == ['unknown field "spec.colour"']


async def test_defaults_are_applied(client: httpx.AsyncClient, create: Create) -> None:
    obj = await create(widget("w1", ports=[{"name": "http"}]))
    assert obj["spec"]["color"] == "green"
    assert obj["spec"]["blocklen"] == 26
    assert obj["spec"]["ports"] == [{"name": "http", "number": 80}]
    explicit = await create(widget("w2", color="red"))
    assert explicit["spec"]["color"] == "red"


async def test_unknown_fields_are_pruned_with_a_warning(
    client: httpx.AsyncClient, create: Create
) -> None:
    obj = widget("w1", bogus=1, extra={"kept": True})
    obj["toplevel"] = "x"
    obj["metadata"]["notMeta"] = "x"
    response = await client.post(WIDGETS, json=obj)
    assert response.status_code == 201
    body = response.json()
    assert "bogus" not in body["spec"] and "toplevel" not in body
    assert "notMeta" not in body["metadata"]
    assert body["spec"]["extra"] == {"kept": True}
    warnings = response.headers.get_list("warning")
    assert '299 - "unknown field \\"spec.bogus\\""' in warnings
    assert '299 - "unknown field \\"toplevel\\""' in warnings


async def test_invalid_object_is_422_with_causes(client: httpx.AsyncClient) -> None:
    response = await client.post(WIDGETS, json=widget("w1", size=0, color="pink"))
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "Invalid"
    assert body["message"].startswith('Widget.test.example.org "w1" is invalid: [spec.size:')
    assert body["details"]["name"] == "w1"
    assert body["details"]["group"] == "test.example.org"
    assert body["details"]["kind"] == "Widget"
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: spec.size in body should be greater than or equal to 1",
            "field": "spec.size",
        },
        {
            "reason": "FieldValueNotSupported",
            "message": 'Unsupported value: "pink": supported values: "red", "green", "blue"',
            "field": "spec.color",
        },
    ]
