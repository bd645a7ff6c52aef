"""Running `handoff ...` the way a person does, from a test whose service is still running: in a
thread (the CLI runs its own event loop), its standard output captured."""

from __future__ import annotations

import asyncio
import contextlib
import io

from bot.cli import main


async def run_cli(*argv: str) -> tuple[int, str]:
    """(exit code, what it printed). The database is the environment's DATABASE_URL."""

    def go() -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(list(argv))
        return code, out.getvalue()

    return await asyncio.to_thread(go)
