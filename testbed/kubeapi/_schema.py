"""Structural schemas of CustomResourceDefinitions: defaulting, pruning,
validation and CEL rules, in the order and with the messages of
k8s.io/apiextensions-apiserver (1.31).

A schema is compiled once per CRD version into a tree of ``Node``; compiling
is also where a CRD with a CEL rule that does not parse is refused.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from celpy import celtypes

from . import _cel
from ._errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
    type_invalid,
)
from ._meta import prune_meta

_MISSING = object()
_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


class SchemaError(Exception):
    """The schema itself cannot be used (a CEL rule does not compile...)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class Rule:
    rule: str
    program: Any
    message: str = ""
    message_expression: Any = None
    reason: str = "FieldValueInvalid"
    field_path: str = ""
    uses_old_self: bool = False


@dataclass
class Node:
    raw: dict[str, Any]
    type: str = ""
    properties: dict[str, Node] = field(default_factory=dict)
    items: Node | None = None
    additional: Node | None = None
    additional_allowed: bool = False
    preserve_unknown: bool = False
    embedded: bool = False
    int_or_string: bool = False
    nullable: bool = False
    rules: list[Rule] = field(default_factory=list)
    all_of: list[Node] = field(default_factory=list)
    any_of: list[Node] = field(default_factory=list)
    one_of: list[Node] = field(default_factory=list)
    not_: Node | None = None

    @property
    def has_default(self) -> bool:
        return "default" in self.raw


def compile_schema(raw: dict[str, Any], path: str = "openAPIV3Schema") -> Node:
    """A Node tree for an ``openAPIV3Schema``; raises SchemaError."""
    errors: list[FieldError] = []
    node = _compile(raw, path, errors)
    if errors:
        raise SchemaError(errors)
    return node


def _compile(raw: Any, path: str, errors: list[FieldError]) -> Node:
    if not isinstance(raw, dict):
        errors.append(invalid(path, raw, "must be an object"))
        return Node(raw={})
    node = Node(
        raw=raw,
        type=str(raw.get("type", "")),
        preserve_unknown=bool(raw.get("x-kubernetes-preserve-unknown-fields")),
        embedded=bool(raw.get("x-kubernetes-embedded-resource")),
        int_or_string=bool(raw.get("x-kubernetes-int-or-string")),
        nullable=bool(raw.get("nullable")),
    )
    for name, sub in (raw.get("properties") or {}).items():
        node.properties[name] = _compile(sub, f"{path}.properties[{name}]", errors)
    if isinstance(raw.get("items"), dict):
        node.items = _compile(raw["items"], f"{path}.items", errors)
    additional = raw.get("additionalProperties")
    if isinstance(additional, dict):
        node.additional = _compile(additional, f"{path}.additionalProperties", errors)
    elif additional is True:
        node.additional_allowed = True
    for key, target in (("allOf", node.all_of), ("anyOf", node.any_of), ("oneOf", node.one_of)):
        for index, sub in enumerate(raw.get(key) or []):
            target.append(_compile(sub, f"{path}.{key}[{index}]", errors))
    if isinstance(raw.get("not"), dict):
        node.not_ = _compile(raw["not"], f"{path}.not", errors)
    for index, rule in enumerate(raw.get("x-kubernetes-validations") or []):
        rule_path = f"{path}.x-kubernetes-validations[{index}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str):
            errors.append(required(f"{rule_path}.rule"))
            continue
        try:
            program = _cel.compile_rule(rule["rule"])
        except _cel.CelCompileError as error:
            errors.append(
                invalid(f"{rule_path}.rule", rule["rule"], f"compilation failed: {error}")
            )
            continue
        expression = None
        if rule.get("messageExpression"):
            try:
                expression = _cel.compile_rule(rule["messageExpression"])
            except _cel.CelCompileError as error:
                errors.append(
                    invalid(
                        f"{rule_path}.messageExpression",
                        rule["messageExpression"],
                        f"messageExpression compilation failed: {error}",
                    )
                )
                continue
        node.rules.append(
            Rule(
                rule=rule["rule"],
                program=program,
                message=str(rule.get("message") or ""),
                message_expression=expression,
                reason=str(rule.get("reason") or "FieldValueInvalid"),
                field_path=str(rule.get("fieldPath") or ""),
                uses_old_self=bool(re.search(r"\boldSelf\b", rule["rule"])),
            )
        )
    return node


# -- defaulting ---------------------------------------------------------------


def apply_defaults(node: Node, value: Any) -> Any:
    """Defaults for absent fields, after dropping nulls that the schema does
    not allow (structuraldefaulting: PruneNonNullableNullsWithoutDefaults,
    then Default). Returns the new value; the argument is not changed."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = node.properties.get(key) or node.additional
            if item is None and sub is not None and not sub.nullable:
                if sub.has_default:
                    out[key] = copy.deepcopy(sub.raw["default"])
                elif key in node.properties:
                    continue  # pruned
                else:
                    out[key] = item
                continue
            out[key] = apply_defaults(sub, item) if sub is not None else item
        for key, sub in node.properties.items():
            if key not in out and sub.has_default:
                out[key] = apply_defaults(sub, copy.deepcopy(sub.raw["default"]))
        return out
    if isinstance(value, list) and node.items is not None:
        return [apply_defaults(node.items, item) for item in value]
    return value


# -- pruning ------------------------------------------------------------------


def prune(node: Node, value: Any, path: str, unknown: list[str], *, root: bool = False) -> Any:
    """Drop what the schema does not declare (unless it preserves unknown
    fields); the dropped paths go to ``unknown`` for the warnings."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if (root or node.embedded) and key in ("apiVersion", "kind"):
                out[key] = item
            elif (root or node.embedded) and key == "metadata":
                out[key] = prune_meta(item) if root else item
            elif key in node.properties:
                out[key] = prune(node.properties[key], item, child, unknown)
            elif node.additional is not None:
                out[key] = prune(node.additional, item, f"{path}[{key}]", unknown)
            elif node.preserve_unknown or node.additional_allowed:
                out[key] = item
            else:
                unknown.append(child)
        return out
    if isinstance(value, list) and node.items is not None:
        return [prune(node.items, item, f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    return value


# -- validation ---------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


_HOSTNAME = re.compile(
    r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$"
)
_MAC = re.compile(
    r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"
    r"|^([0-9A-Fa-f]{2}[:-]){7}[0-9A-Fa-f]{2}$"
    r"|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "cidr":
            if "/" not in value:
                return False
            ipaddress.ip_interface(value)
        elif fmt == "mac":
            return bool(_MAC.match(value))
        elif fmt == "hostname":
            return len(value) <= 255 and bool(_HOSTNAME.match(value))
        elif fmt in ("uuid", "uuid3", "uuid4", "uuid5"):
            uuid.UUID(value)
            return len(value) == 36
        elif fmt == "byte":
            base64.b64decode(value, validate=True)
        elif fmt == "date":
            datetime.date.fromisoformat(value)
        elif fmt == "date-time":
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif fmt == "email":
            return bool(_EMAIL.match(value))
    except ValueError:
        return False
    return True


def validate_value(
    node: Node, value: Any, old: Any, path: str, *, root: bool = False
) -> list[FieldError]:
    errors: list[FieldError] = []
    _validate(node, value, old, path, errors, root=root)
    return errors


def _validate(
    node: Node, value: Any, old: Any, path: str, errors: list[FieldError], *, root: bool = False
) -> None:
    raw = node.raw
    if value is None:
        if not node.nullable and (node.type or node.int_or_string):
            shown = node.type or "integer,string"
            errors.append(
                type_invalid(path, None, f'{path} in body must be of type {shown}: "null"')
            )
        return
    if node.int_or_string:
        if not (isinstance(value, str) or _type_ok("integer", value)):
            errors.append(
                type_invalid(
                    path,
                    value,
                    f'{path} in body must be of type integer,string: "{_type_name(value)}"',
                )
            )
            return
    elif node.type and not _type_ok(node.type, value):
        errors.append(
            type_invalid(
                path, value, f'{path} in body must be of type {node.type}: "{_type_name(value)}"'
            )
        )
        return
    if "enum" in raw and value not in raw["enum"]:
        errors.append(not_supported(path, value, list(raw["enum"])))
    if isinstance(value, str):
        _validate_string(raw, value, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(raw, value, path, errors)
    elif isinstance(value, list):
        _validate_array(node, value, old, path, errors)
    elif isinstance(value, dict):
        _validate_object(node, value, old, path, errors, root=root)
    for sub in node.all_of:
        _validate(sub, value, old, path, errors)
    if node.any_of and not any(not validate_value(s, value, old, path) for s in node.any_of):
        errors.append(
            invalid(path, value, f"{path} in body must match at least one schema in anyOf")
        )
    if node.one_of:
        matching = sum(1 for s in node.one_of if not validate_value(s, value, old, path))
        if matching != 1:
            errors.append(
                invalid(
                    path, value, f"{path} in body must validate one and only one schema (oneOf)"
                )
            )
    if node.not_ is not None and not validate_value(node.not_, value, old, path):
        errors.append(invalid(path, value, f"{path} in body must not validate the schema (not)"))
    if node.rules:
        _run_rules(node, value, old, path, errors)


def _validate_string(raw: dict[str, Any], value: str, path: str, errors: list[FieldError]) -> None:
    if "maxLength" in raw and len(value) > raw["maxLength"]:
        errors.append(too_long(path, raw["maxLength"]))
    if "minLength" in raw and len(value) < raw["minLength"]:
        errors.append(
            invalid(path, value, f"{path} in body should be at least {raw['minLength']} chars long")
        )
    if "pattern" in raw and not re.search(raw["pattern"], value):
        errors.append(invalid(path, value, f"{path} in body should match '{raw['pattern']}'"))
    fmt = raw.get("format")
    if fmt and not _format_ok(str(fmt), value):
        errors.append(type_invalid(path, value, f'{path} in body must be of type {fmt}: "{value}"'))


def _validate_number(
    raw: dict[str, Any], value: float, path: str, errors: list[FieldError]
) -> None:
    if "minimum" in raw:
        limit = raw["minimum"]
        if raw.get("exclusiveMinimum") and value <= limit:
            errors.append(invalid(path, value, f"{path} in body should be greater than {limit}"))
        elif value < limit:
            errors.append(
                invalid(path, value, f"{path} in body should be greater than or equal to {limit}")
            )
    if "maximum" in raw:
        limit = raw["maximum"]
        if raw.get("exclusiveMaximum") and value >= limit:
            errors.append(invalid(path, value, f"{path} in body should be less than {limit}"))
        elif value > limit:
            errors.append(
                invalid(path, value, f"{path} in body should be less than or equal to {limit}")
            )
    if raw.get("multipleOf"):
        quotient = value / raw["multipleOf"]
        if quotient != int(quotient):
            errors.append(
                invalid(path, value, f"{path} in body should be a multiple of {raw['multipleOf']}")
            )


def _validate_array(
    node: Node, value: list[Any], old: Any, path: str, errors: list[FieldError]
) -> None:
    raw = node.raw
    if "maxItems" in raw and len(value) > raw["maxItems"]:
        errors.append(too_many(path, len(value), raw["maxItems"]))
    if "minItems" in raw and len(value) < raw["minItems"]:
        errors.append(
            invalid(path, value, f"{path} in body should have at least {raw['minItems']} items")
        )
    list_type = raw.get("x-kubernetes-list-type")
    keys = list(raw.get("x-kubernetes-list-map-keys") or [])
    old_by_key: dict[str, Any] = {}
    if list_type == "map" and isinstance(old, list):
        for item in old:
            if isinstance(item, dict):
                old_by_key[repr([item.get(k) for k in keys])] = item
    seen: list[Any] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if list_type == "set":
            if item in seen:
                errors.append(duplicate(item_path, item))
            seen.append(item)
        elif list_type == "map" and isinstance(item, dict):
            key = {k: item.get(k) for k in keys}
            if key in seen:
                errors.append(duplicate(item_path, key))
            seen.append(key)
        if node.items is not None:
            old_item = (
                old_by_key.get(repr([item.get(k) for k in keys]))
                if (list_type == "map" and isinstance(item, dict))
                else None
            )
            _validate(node.items, item, old_item, item_path, errors)


def _validate_object(
    node: Node,
    value: dict[str, Any],
    old: Any,
    path: str,
    errors: list[FieldError],
    *,
    root: bool,
) -> None:
    raw = node.raw
    old_map = old if isinstance(old, dict) else {}
    if "maxProperties" in raw and len(value) > raw["maxProperties"]:
        errors.append(too_many(path, len(value), raw["maxProperties"]))
    if "minProperties" in raw and len(value) < raw["minProperties"]:
        errors.append(
            invalid(
                path,
                value,
                f"{path} in body should have at least {raw['minProperties']} properties",
            )
        )
    for name in raw.get("required") or []:
        if name not in value:
            errors.append(required(f"{path}.{name}" if path else name))
    for key, item in value.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        if key in node.properties:
            child = f"{path}.{key}" if path else key
            _validate(node.properties[key], item, old_map.get(key), child, errors)
        elif node.additional is not None:
            _validate(node.additional, item, old_map.get(key), f"{path}[{key}]", errors)


def _rule_self(node: Node, value: Any) -> Any:
    """The value as the CEL type the schema gives it (numbers stay doubles)."""
    if value is None:
        return None
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = node.properties.get(key) or node.additional
            out[celtypes.StringType(key)] = _rule_self(sub, item) if sub else _cel.to_cel(item)
        return celtypes.MapType(out)
    if isinstance(value, list):
        if node.items is None:
            return _cel.to_cel(value)
        return celtypes.ListType([_rule_self(node.items, item) for item in value])
    if node.type == "number" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.DoubleType(value)
    return _cel.to_cel(value)


def _run_rules(node: Node, value: Any, old: Any, path: str, errors: list[FieldError]) -> None:
    self_value = _rule_self(node, value)
    old_value = _rule_self(node, old) if old is not None else None
    shown_type = node.type
    for rule in node.rules:
        if rule.uses_old_self and old is None:
            continue  # a transition rule: only on updates that had a value here
        variables: dict[str, Any] = {"self": self_value}
        if rule.uses_old_self:
            variables["oldSelf"] = old_value
        where = path + rule.field_path if rule.field_path else path
        try:
            result = _cel.evaluate(rule.program, variables)
        except _cel.CelRuntimeError as error:
            shown = rule.message.strip() or rule.rule.strip()
            errors.append(invalid(where, shown_type, f"{error} evaluating rule: {shown}"))
            continue
        if result is True or (isinstance(result, celtypes.BoolType) and bool(result)):
            continue
        message = rule.message.strip() or f"failed rule: {rule.rule.strip()}"
        if rule.message_expression is not None:
            try:
                text = _cel.from_cel(_cel.evaluate(rule.message_expression, variables))
                if isinstance(text, str) and text.strip():
                    message = text.strip()
            except _cel.CelRuntimeError:
                pass
        if rule.reason == "FieldValueForbidden":
            errors.append(forbidden(where, message))
        elif rule.reason == "FieldValueRequired":
            errors.append(required(where, message))
        elif rule.reason == "FieldValueDuplicate":
            errors.append(FieldError("FieldValueDuplicate", where, shown_type, message))
        else:
            errors.append(invalid(where, shown_type, message))


# -- a whole custom resource ---------------------------------------------------


def root_self(obj: dict[str, Any]) -> dict[str, Any]:
    """What a rule on the root schema sees: metadata only has name and generateName."""
    meta = obj.get("metadata") or {}
    out = dict(obj)
    out["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
    return out
