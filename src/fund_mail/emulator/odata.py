"""The slice of OData that Graph's message list honours, with Graph's own restrictions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from fund_mail.emulator.mailbox import Message


class ODataError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


CLAUSE = re.compile(r"^\(?\s*(\w+)\s+(eq|ne|ge|gt|le|lt)\s+(.+?)\s*\)?$", re.IGNORECASE)
COMPARE: dict[str, Callable] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b, "le": lambda a, b: a <= b, "lt": lambda a, b: a < b,
}  # fmt: skip


def _literal(prop: str, raw: str):
    if prop == "receivedDateTime" or prop == "sentDateTime":
        try:
            return datetime.fromisoformat(raw.strip("'"))
        except ValueError as e:
            raise ODataError(400, "BadRequest", f"Invalid DateTimeOffset literal '{raw}'.") from e
    if prop == "isDraft":
        if raw.lower() not in ("true", "false"):
            raise ODataError(400, "BadRequest", f"Invalid Boolean literal '{raw}'.")
        return raw.lower() == "true"
    raise ODataError(400, "BadRequest", f"Could not find a property named '{prop}' to filter on.")


def _value(message: Message, prop: str):
    if prop == "receivedDateTime":
        return message.received
    if prop == "sentDateTime":
        return message.sent or message.received
    return message.is_draft


def parse_filter(expression: str) -> tuple[Callable[[Message], bool], list[str]]:
    """A predicate for `a and b or c` (and binds tighter), and the properties in order."""
    properties: list[str] = []
    groups = []
    for group_text in re.split(r"\s+or\s+", expression.strip(), flags=re.IGNORECASE):
        clauses = []
        for clause_text in re.split(r"\s+and\s+", group_text, flags=re.IGNORECASE):
            match = CLAUSE.match(clause_text.strip())
            if not match:
                raise ODataError(400, "BadRequest", f"Invalid filter clause: {clause_text}")
            prop, op, raw = match.group(1), match.group(2).lower(), match.group(3)
            literal = _literal(prop, raw)
            properties.append(prop)
            clauses.append((prop, COMPARE[op], literal))
        groups.append(clauses)

    def predicate(message: Message) -> bool:
        return any(all(cmp(_value(message, p), lit) for p, cmp, lit in g) for g in groups)

    return predicate, properties


def parse_orderby(expression: str) -> list[tuple[str, bool]]:
    """[(property, descending)]."""
    order = []
    for part in expression.split(","):
        words = part.split()
        if not words or words[0] not in ("receivedDateTime", "sentDateTime"):
            raise ODataError(400, "BadRequest", f"Unsupported $orderby: {expression}")
        order.append((words[0], len(words) > 1 and words[1].lower() == "desc"))
    return order


def check_efficient(order: list[tuple[str, bool]], filter_properties: list[str]) -> None:
    """Graph: every $orderby property must lead $filter, in the same order."""
    if not filter_properties:
        return
    wanted = [p for p, _ in order]
    if filter_properties[: len(wanted)] != wanted:
        raise ODataError(
            400,
            "InefficientFilter",
            "The restriction or sort order is too complex for this operation.",
        )


def parse_select(expression: str | None, allowed: set[str], type_name: str) -> set[str] | None:
    if not expression:
        return None
    chosen = {p.strip() for p in expression.split(",") if p.strip()}
    unknown = chosen - allowed
    if unknown:
        raise ODataError(
            400,
            "RequestBroker--ParseUri",
            f"Could not find a property named '{sorted(unknown)[0]}' on type "
            f"'microsoft.graph.{type_name}'.",
        )
    return chosen


def parse_expand(expression: str | None, allowed: set[str]) -> set[str] | None:
    """attachments or attachments($select=...): None when not expanded, set() for all fields."""
    if not expression:
        return None
    match = re.fullmatch(r"attachments(?:\(\$select=([^)]*)\))?", expression.strip())
    if not match:
        raise ODataError(400, "BadRequest", f"Unsupported $expand: {expression}")
    if not match.group(1):
        return set()
    chosen = {p.strip() for p in match.group(1).split(",")}
    unknown = chosen - allowed
    if unknown:
        raise ODataError(
            400,
            "BadRequest",
            f"Could not find a property named '{sorted(unknown)[0]}' on type "
            "'microsoft.graph.attachment'.",
        )
    return chosen
