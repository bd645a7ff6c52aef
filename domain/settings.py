"""Process settings from the environment (and `.env`), read once by the CLI, never at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Secrets and endpoints. The store's behaviour lives in the YAML config, not here."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./handoff.db"
    handoff_config: Path | None = None
    knowledge_dir: Path | None = None
    demo: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    log_level: str = "INFO"

    # A bootstrap login for the web inbox (as the account "admin", who can add staff there);
    # refused unless it carries at least 128 bits. Day to day, people sign in as themselves.
    inbox_token: SecretStr | None = None
    # Bearer token a Prometheus scraper sends for /metrics; without it /metrics is open in demo
    # mode only (it tells how busy the store is and how many chats wait).
    metrics_token: SecretStr | None = None
    shop_api_url: str = "http://127.0.0.1:8081"

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_inbox_channel: str | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_post_rate: float = 1.0  # chat.postMessage per second per channel (Slack's documented pace)
    # chat.update is Tier 3 (50+ a minute per workspace): ticket edits are paced apart from posts.
    slack_update_rate: float = Field(default=45 / 60, gt=0)

    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_mode: str = "webhook"
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_poll_timeout: int = 25
    # Polling is one instance's job at a time: it holds a lease in the database for this long,
    # renewed every third of it; another instance takes over once a holder has stopped renewing.
    telegram_poll_lease_seconds: float = Field(default=30.0, gt=0)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = 20.0

    max_message_chars: int = Field(default=4000, ge=1)
    delivery_poll_seconds: float = 0.5
    delivery_lease_seconds: float = 60.0
    # How long a message keeps being retried through a platform outage before it is marked
    # failed (and shown as such); a refusal about the message itself fails at once.
    delivery_give_up_seconds: float = Field(default=86_400.0, gt=0)
    processing_lease_seconds: float = 120.0
    sweep_seconds: float = 5.0
    # How often handoffs whose wait slipped are looked for (their one follow-up: core/waiting.py).
    wait_check_seconds: float = Field(default=15.0, gt=0)

    # The web inbox's staff sessions: how long one lasts unused (it renews while in use), how
    # long a one-time login link stays good, and failed sign-ins allowed per client address.
    inbox_session_days: float = Field(default=14.0, gt=0)
    staff_link_hours: float = Field(default=72.0, gt=0)
    inbox_login_limit: str = "10/15minutes"
    # The widget on the store's own site. Origins (scheme://host[:port], comma-separated) whose
    # pages may embed it; the service's own origin (and PUBLIC_URL's) always may; `*` (any site)
    # only in demo mode.
    widget_origins: str = ""
    # Signs a logged-in shopper's email (data-user-hash = hex HMAC-SHA256 of data-email): only a
    # signed email counts as the shopper's; an unsigned one is shown as a claim.
    widget_identity_secret: SecretStr | None = None
    # Rates like 30/minute, 5/10s, 1000/hour (0/minute turns one off). Conversations are
    # counted per client address, messages per conversation, both per instance.
    widget_create_limit: str = "30/minute"
    widget_message_limit: str = "30/minute"
    widget_socket_limit: int = Field(default=5, ge=0)  # open sockets per conversation (tabs)
    widget_history_page: int = Field(default=100, ge=1, le=1000)  # messages per history page
    # Proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For (and, for the
    # inbox, X-Forwarded-Proto) are believed.
    trusted_proxies: str = ""

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and self.slack_inbox_channel)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token)

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)
