"""Slack as the team's inbox: a thread per handed-off conversation. Nothing here loads the
Slack SDK until Slack is configured."""

from __future__ import annotations

from core.bridge import Bridge, BridgeSetup


def build(setup: BridgeSetup) -> Bridge | None:
    """The Slack inbox, when a bot token and an inbox channel are set."""
    if not setup.settings.slack_enabled:
        return None
    from bridges.slack.setup import SlackBridge

    return SlackBridge(setup)
