"""What every button or picker press in a ticket must establish before it acts: that it came
from one of the inbox channels, and who pressed it. One place, so a new control cannot forget the
channel check (a ticket forwarded or shared elsewhere keeps its buttons)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

OUTSIDE = "These buttons work only in the support inbox channels."

Names = Callable[[str | None, str | None], Awaitable[str]]


def channel_of(body: dict[str, Any]) -> str | None:
    """Block actions name their channel in `channel`, or only in `container` (message attachments)."""
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")


async def refused_outside(
    allowed: Callable[[str | None], bool], body: dict[str, Any], respond: Any
) -> bool:
    """True, after telling the presser alone, when the press came from outside the inbox."""
    if allowed(channel_of(body)):
        return False
    await respond(text=OUTSIDE, response_type="ephemeral", replace_original=False)
    return True


async def presser(names: Names, body: dict[str, Any]) -> str:
    """The presser's display name (the payload's handle until the lookup answers)."""
    user = body.get("user") or {}
    return await names(user.get("id"), user.get("name") or user.get("username"))
