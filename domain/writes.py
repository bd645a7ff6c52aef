"""A write to the store's API (cancel an order, refund an amount) as the core sees it: what it
asks of whoever makes the HTTP call, and the three outcomes that decide what happens next.

The core runs approved writes from the outbox and needs to know only whether to stop (done, or
refused for good) or try again; the agent's action runner makes the call. This module is the
seam between them, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from domain.storeconfig import Action


class WriteStatus(StrEnum):
    DONE = "done"  # 2xx: the store did it (or had done it before under the same key)
    REFUSED = "refused"  # 4xx: the store will not do it as asked; sending it again cannot help
    RETRY = "retry"  # 5xx, a timeout, no connection: the store may do it if asked again


@dataclass(frozen=True)
class WriteOutcome:
    status: WriteStatus
    http_status: int | None = None
    error: str | None = None  # the store API's own words, for the thread
    captured: dict[str, Any] = field(default_factory=dict)  # the action's `capture` of the answer
    ms: int = 0


class StoreWriter(Protocol):
    async def write(
        self, action: str, params: dict[str, Any], idempotency_key: str
    ) -> WriteOutcome:
        """Send one write with its idempotency key; never raises for what the store answers."""
        ...


# ------------------------------------------------------------------------------ params


@dataclass
class CheckedParams:
    """A write's params as typed values, what is wrong with them, and what was adjusted."""

    values: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. an amount lowered to its cap

    @property
    def ok(self) -> bool:
        return not self.problems


def _number(value: Any, integer: bool) -> float | int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    if integer:
        return int(number) if number == int(number) else None
    return round(number, 6)


def check_params(action: Action, raw: dict[str, Any]) -> CheckedParams:
    """Type and bound each param as the store's YAML declares it (`type`, `min`, `max`,
    `above_max`). Checked when a rule prepares the action and again just before it runs, so a
    value changed in between (by hand, in the database) cannot pass its cap."""
    out = CheckedParams(values={})
    for name, spec in action.params.items():
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                out.problems.append(f"{name} is missing")
            continue
        if spec.type == "string":
            out.values[name] = str(value).strip()
            continue
        number = _number(value, spec.type == "integer")
        if number is None:
            out.problems.append(f"{name} {value!r} is not a{'n integer' if spec.type == 'integer' else ' number'}")
            continue
        if spec.min is not None and number < spec.min:
            out.problems.append(f"{name} {number:g} is below the minimum {spec.min:g}")
            continue
        if spec.max is not None and number > spec.max:
            if spec.above_max == "cap":
                out.notes.append(f"{name} {number:g} capped at {spec.max:g}")
                number = int(spec.max) if spec.type == "integer" else spec.max
            else:
                out.problems.append(f"{name} {number:g} is over the maximum {spec.max:g}")
                continue
        out.values[name] = number
    extra = sorted(set(raw) - set(action.params))
    if extra:
        out.problems.append(f"unknown param(s) {', '.join(extra)}")
    return out
