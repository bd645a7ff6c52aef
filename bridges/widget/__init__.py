"""The web widget: the chat on the store's pages (HTTP + WebSocket API, the script, the demo)."""

from __future__ import annotations

from core.bridge import Bridge, BridgeSetup


def build(setup: BridgeSetup) -> Bridge:
    """Always on: every store has its web pages."""
    from bridges.widget.bridge import WidgetBridge

    return WidgetBridge(setup)
