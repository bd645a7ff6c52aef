"""What a person typed in Slack, as the shopper should read it.

Slack's message `text` is escaped (`&amp;`, `&lt;`, `&gt;`) and wraps mentions and links in
angle brackets: `<@U123>`, `<#C123|general>`, `<!here>`, `<!subteam^S1|@support>`,
`<https://example.com|our page>`, `<mailto:a@b.c|a@b.c>`, `<!date^1700000000^{date}|Nov 14>`.
A shopper sees names, labels and addresses instead; user ids become the person's name."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

_TOKEN = re.compile(r"<([^<>\n]+)>")


async def to_plain(text: str, name_of: Callable[[str], Awaitable[str]]) -> str:
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text or ""):
        out.append(_unescape(text[pos : m.start()]))
        out.append(await _token(m.group(1), name_of))
        pos = m.end()
    out.append(_unescape((text or "")[pos:]))
    return "".join(out)


async def _token(body: str, name_of: Callable[[str], Awaitable[str]]) -> str:
    target, _, label = body.partition("|")
    label = _unescape(label)
    if target.startswith("@"):
        return "@" + (label or await name_of(target[1:]))
    if target.startswith("#"):
        return "#" + (label or "channel")
    if target.startswith("!"):
        word = target[1:]
        if word.startswith("subteam^"):
            return label or "@team"
        if word.startswith("date^"):
            return label or word
        return label or f"@{word}"
    url = _unescape(target)
    if url.startswith("mailto:"):
        return label or url.removeprefix("mailto:")
    if label and label != url:
        return f"{label} ({url})"
    return url


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
