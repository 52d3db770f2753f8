"""Label and field selectors, parsed with the grammar of apimachinery's
``labels.Parse`` and ``fields.ParseSelector``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import StatusError, bad_request
from ._meta import label_value_problems, qualified_name_problems

_SPECIAL = "=!(),<>"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if not present:
            return False
        try:
            number = int(str(value))
        except ValueError:
            return False
        limit = int(self.values[0])
        return number > limit if self.op == "gt" else number < limit


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif text.startswith(("!=", "=="), i):
            tokens.append(text[i : i + 2])
            i += 2
        elif char in _SPECIAL:
            tokens.append(char)
            i += 1
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(text[start:i])
    return tokens


def _is_word(token: str | None) -> bool:
    return token is not None and token[0] not in _SPECIAL


def parse_label_selector(text: str) -> LabelSelector:
    """Raises a 400 BadRequest StatusError, as the server does."""
    tokens = _tokens(text)
    position = 0
    requirements: list[Requirement] = []

    def fail(detail: str) -> StatusError:
        return bad_request(f"unable to parse requirement: {detail}")

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str | None:
        nonlocal position
        token = peek()
        position += 1
        return token

    def check_key(key: str) -> None:
        problems = qualified_name_problems(key)
        if problems:
            raise fail(f'values[0][key]: Invalid value: "{key}": {problems[0]}')

    def check_value(value: str) -> str:
        problems = label_value_problems(value)
        if problems:
            raise fail(f'values[0][value]: Invalid value: "{value}": {problems[0]}')
        return value

    while position < len(tokens):
        token = take()
        if token == "!":
            key = take()
            if not _is_word(key):
                raise fail(f"found '{key}', expected: identifier")
            assert key is not None
            check_key(key)
            requirements.append(Requirement(key, "!"))
        elif _is_word(token):
            assert token is not None
            key = token
            check_key(key)
            op = peek()
            if op is None or op == ",":
                requirements.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                take()
                value = peek()
                if _is_word(value) and value not in ("in", "notin"):
                    take()
                    assert value is not None
                    requirements.append(
                        Requirement(key, "!=" if op == "!=" else "=", (check_value(value),))
                    )
                else:
                    requirements.append(Requirement(key, "!=" if op == "!=" else "=", ("",)))
            elif op in ("in", "notin"):
                take()
                if take() != "(":
                    raise fail("found '', expected: '('")
                values: list[str] = []
                while True:
                    item = take()
                    if item == ")":
                        break
                    if item == ",":
                        continue
                    if not _is_word(item):
                        raise fail(f"found '{item}', expected: ',', ')' or identifier")
                    assert item is not None
                    values.append(check_value(item))
                if op == "in" and not values:
                    raise fail("for 'in', 'notin' operators, values set can't be empty")
                requirements.append(Requirement(key, op, tuple(values)))
            elif op in (">", "<"):
                take()
                value = take()
                if value is None or not value.lstrip("-").isdigit():
                    raise fail(f"for 'Gt', 'Lt' operators, the value must be an integer: {value}")
                requirements.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
            else:
                raise fail(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        else:
            raise fail(f"found '{token}', expected: !, identifier, or 'end of string'")
        following = take()
        if following is not None and following != ",":
            raise fail(f"found '{following}', expected: ',' or 'end of string'")
    return LabelSelector(tuple(requirements))


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negated: bool


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[FieldTerm, ...] = ()

    def matches(self, obj: dict[str, Any], fns: dict[str, Callable[[dict[str, Any]], str]]) -> bool:
        for term in self.terms:
            equal = fns[term.field](obj) == term.value
            if equal == term.negated:
                return False
        return True

    def exact(self, name: str) -> str | None:
        """RequiresExactMatch: the value a ``field=value`` term pins, if any."""
        for term in self.terms:
            if term.field == name and not term.negated:
                return term.value
        return None


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    if escaped:
        current += "\\"
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    out, escaped = "", False
    for char in text:
        if escaped:
            if char not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{char}")
            out += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise bad_request(f"invalid field selector: unescaped {char} in value")
        else:
            out += char
    if escaped:
        raise bad_request("invalid field selector: unterminated escape sequence")
    return out


def parse_field_selector(text: str, supported: set[str], custom: bool) -> FieldSelector:
    terms: list[FieldTerm] = []
    for part in _split_unescaped(text, ","):
        if not part:
            continue
        for op in ("!=", "==", "="):
            index = part.find(op)
            if index >= 0:
                key, raw = part[:index], part[index + len(op) :]
                terms.append(FieldTerm(key, _unescape(raw), op == "!="))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
    for term in terms:
        if term.field not in supported:
            if custom:
                known = ", ".join(f'"{f}"' for f in sorted(supported))
                raise bad_request(f'"{term.field}" is not a known field selector: only {known}')
            raise bad_request(f"field label not supported: {term.field}")
    return FieldSelector(tuple(terms))
