"""ObjectMeta: the fields every object has, and the checks apimachinery's
``ValidateObjectMeta`` makes on them (names, labels, finalizers)."""

from __future__ import annotations

import datetime
import re
from typing import Any

from ._errors import FieldError, forbidden, invalid, required

# metav1.ObjectMeta's JSON fields: anything else under metadata is dropped,
# as decoding into the Go struct drops it.
META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex"
    f" used for validation is '{_DNS1123_SUBDOMAIN}')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and"
    " must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex"
    f" used for validation is '{_DNS1123_LABEL}')"
)
_QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end"
    " with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used"
    f" for validation is '{_QUALIFIED_NAME}')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or"
    f" 'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)


def now() -> str:
    """metav1.Time as the server writes it: RFC 3339, seconds, UTC."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dns_subdomain_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        problems.append(_SUBDOMAIN_MSG)
    return problems


def dns_label_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        problems.append(_LABEL_MSG)
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """IsQualifiedName: ``[prefix/]name``, prefix a DNS subdomain."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        prefix = None
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must"
            " start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or"
            f" '123-abc', regex used for validation is '{_QUALIFIED_NAME}') with an optional DNS"
            " subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    problems = []
    if prefix is not None:
        problems += [f"prefix part {p}" for p in dns_subdomain_problems(prefix)]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if name and not re.fullmatch(_QUALIFIED_NAME, name):
        problems.append(_QUALIFIED_MSG)
    return problems


def label_value_problems(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not re.fullmatch(_LABEL_VALUE, value):
        problems.append(_LABEL_VALUE_MSG)
    return problems


def prune_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k in META_FIELDS}


def validate_meta(
    meta: dict[str, Any],
    *,
    namespaced: bool,
    name_is_label: bool = False,
    old: dict[str, Any] | None = None,
) -> list[FieldError]:
    """ValidateObjectMeta (+ ValidateObjectMetaUpdate when ``old`` is given)."""
    errors: list[FieldError] = []
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            errors.append(required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        errors.append(invalid("metadata.name", name, "must be a string"))
    else:
        check = dns_label_problems if name_is_label else dns_subdomain_problems
        errors += [invalid("metadata.name", name, p) for p in check(name)]
    if not namespaced and meta.get("namespace"):
        errors.append(forbidden("metadata.namespace", "not allowed on this type"))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        errors.append(invalid("metadata.labels", labels, "must be a map of strings"))
        labels = {}
    for key, value in labels.items():
        errors += [invalid("metadata.labels", key, p) for p in qualified_name_problems(key)]
        if not isinstance(value, str):
            errors.append(invalid(f"metadata.labels[{key}]", value, "must be a string"))
        else:
            errors += [invalid("metadata.labels", value, p) for p in label_value_problems(value)]
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        errors.append(invalid("metadata.annotations", annotations, "must be a map of strings"))
    else:
        for key in annotations:
            errors += [
                invalid("metadata.annotations", key, p) for p in qualified_name_problems(key)
            ]
    finalizers = meta.get("finalizers") or []
    if not isinstance(finalizers, list):
        errors.append(invalid("metadata.finalizers", finalizers, "must be a list of strings"))
        finalizers = []
    for index, finalizer in enumerate(finalizers):
        path = f"metadata.finalizers[{index}]"
        if not isinstance(finalizer, str):
            errors.append(invalid(path, finalizer, "must be a string"))
            continue
        errors += [invalid(path, finalizer, p) for p in qualified_name_problems(finalizer)]
    if old is not None and old.get("deletionTimestamp"):
        added = [f for f in finalizers if f not in (old.get("finalizers") or [])]
        if added:
            listed = ", ".join(f'"{f}"' for f in added)
            errors.append(
                forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted, found new"
                    f" finalizers []string{{{listed}}}",
                )
            )
    return errors
