"""The web inbox: the team's queue, history, replies and commands in a browser page."""

from __future__ import annotations

from core.bridge import Bridge, BridgeSetup


def build(setup: BridgeSetup) -> Bridge:
    """Always on: the inbox for stores without Slack, and beside Slack for everyone else."""
    from bridges.webinbox.bridge import WebInboxBridge

    return WebInboxBridge(setup)
