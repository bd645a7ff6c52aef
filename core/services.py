"""What the app factory builds once and hands to every bridge: the core, the worker, the live
hub, the store's config. It lives here, below the bridges and the composition root, so a bridge
can take it without importing the app factory that imports the bridge (a loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from core.delivery import DeliveryWorker
from core.lifecycle import Core
from core.live import LiveHub
from domain.ports import Agent, Inbox, ShopperChannel
from domain.settings import Settings
from domain.storeconfig import StoreConfig


class ConfigurationError(Exception):
    """The service must not start like this (a missing secret in production mode, say)."""


@dataclass
class Services:
    settings: Settings
    config: StoreConfig
    core: Core
    worker: DeliveryWorker
    live: LiveHub
    agent: Agent
    channels: dict[str, ShopperChannel] = field(default_factory=dict)
    inboxes: dict[str, Inbox] = field(default_factory=dict)
    inbox_token: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


SERVICES = web.AppKey("services", Services)
BRIDGE_SETUP = web.AppKey("bridge_setup", list)
BRIDGE_TEARDOWN = web.AppKey("bridge_teardown", list)


def display_name_factory(config: StoreConfig) -> Any:
    """How staff appear to shoppers (first name, full name or the team), per the store's YAML."""

    def display(author: str) -> str:
        mode = config.store.human_names
        if mode == "team" or not author:
            return config.store.team_name
        return author.split()[0] if mode == "first_name" else author

    return display
