"""The store's behaviour as data: entities, custom actions, escalation rules, tags, messages.

Validated at start with pydantic; errors name the file, the line and the field (line numbers come
from PyYAML's node tree, so a store developer can jump straight to the mistake). Conditions and
templates are Jinja2 sandboxed expressions, compiled here so a typo fails at start, not mid-sale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
import yaml
from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain.templating import ENV
from domain.waiting import BUILTIN, LANGUAGES, WAIT_MESSAGES

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "flash-sale" / "handoff.yaml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(Exception):
    """A config problem, already worded for the person who wrote the file."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_expr(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ENV.compile_expression(value)
    except TemplateSyntaxError as exc:
        raise ValueError(f"invalid expression {value!r}: {exc.message}") from exc
    return value


def _check_template(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ENV.from_string(value)
    except TemplateSyntaxError as exc:
        raise ValueError(
            f"invalid template: {exc.message} (line {exc.lineno} of the template)"
        ) from exc
    return value


class Entity(Strict):
    """Something the agent picks out of what the shopper types (an order number, an email)."""

    pattern: str
    format: str = "{{ match }}"
    upper: bool = True
    prompt: str = ""
    description: str = ""
    # Order numbers as shoppers type them (spaces, '#', l/O for 1/0, digits only when the prefix
    # is known): see agent/entities.py. `prefixes` are the store's own, e.g. [KD].
    lenient: bool = False
    prefixes: list[str] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _fmt(cls, v: str) -> str | None:
        return _check_template(v)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return v


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class Request(Strict):
    # GET (or POST, for a store API that searches by POST) reads; a write action (one with
    # `approval: required`) uses POST, PUT, PATCH or DELETE.
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    timeout: float = Field(default=5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str | None:
        return _check_template(v)


class Verify(Strict):
    """Details are shown to the shopper only when `captured` equals what the shopper proved."""

    captured: str
    matches: Literal["email"] = "email"


class Approvers(Strict):
    """Who may approve (or deny) a prepared write: Slack user ids, Slack user-group ids (their
    members, read with usergroups.users.list) and web-inbox staff names. Nobody else."""

    slack_users: list[str] = Field(default_factory=list)
    slack_groups: list[str] = Field(default_factory=list)
    inbox_staff: list[str] = Field(default_factory=list)

    @field_validator("slack_users", "slack_groups")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if not re.fullmatch(r"[A-Z0-9]{2,32}", str(x))]
        if bad:
            raise ValueError(f"not Slack ids (U0123ABCD, S0123ABCD): {bad}")
        return [str(x) for x in v]

    def allows_staff(self, name: str) -> bool:
        """A web-inbox account, compared as the inbox compares names (case and spaces folded)."""
        key = " ".join(name.split()).casefold()
        return any(" ".join(n.split()).casefold() == key for n in self.inbox_staff)

    def allows_slack(self, user_id: str, groups: set[str] | frozenset[str] = frozenset()) -> bool:
        """A Slack user listed by id, or a member of a listed group (`groups`: the listed
        groups the caller found this user in)."""
        return user_id in self.slack_users or bool(groups & set(self.slack_groups))

    @property
    def anyone(self) -> bool:
        return bool(self.slack_users or self.slack_groups or self.inbox_staff)


class Param(Strict):
    """One input of a write action, checked when a rule prepares it and again before it runs."""

    type: Literal["string", "number", "integer"] = "string"
    required: bool = True
    description: str = ""
    min: float | None = None
    max: float | None = None
    # Over `max`: refuse to prepare the action, or prepare it at `max` (a refund "up to a cap").
    above_max: Literal["refuse", "cap"] = "refuse"


class ActionMessages(Strict):
    """What the shopper is told about a prepared write (templates over its inputs and, once it
    ran, `result`: what `capture` kept of the store's answer). Unset: nothing is said."""

    done: str | None = None
    denied: str | None = None
    failed: str | None = None

    @field_validator("done", "denied", "failed")
    @classmethod
    def _tmpl(cls, v: str | None) -> str | None:
        return _check_template(v)


class Action(Strict):
    description: str = ""
    inputs: dict[str, str] = Field(default_factory=dict, description="input name -> entity name")
    request: Request
    capture: dict[str, str] = Field(default_factory=dict)
    runs_on: list[str] = Field(
        default_factory=list, description="entities whose appearance runs it"
    )
    verify: Verify | None = None
    fact: str | None = Field(
        default=None, description="where a lookup's results go in the facts: orders | customer"
    )
    # A write: it changes the store (cancel, refund). It runs only when a rule prepared it and a
    # person approved it, once, through the outbox, with `idempotency_key` (a template over its
    # params) sent as the Idempotency-Key header on every attempt.
    approval: Literal["required"] | None = None
    params: dict[str, Param] = Field(default_factory=dict)
    idempotency_key: str | None = None
    summary: str = ""  # what the ticket says it will do (a template over the params)
    approvers: Approvers | None = None  # who may approve this one (else the top-level list)
    attempts: int = Field(default=5, ge=1, le=20)  # tries on a 5xx or timeout before it fails
    messages: ActionMessages = Field(default_factory=ActionMessages)

    @property
    def writes(self) -> bool:
        return self.approval == "required"

    @field_validator("idempotency_key", "summary")
    @classmethod
    def _templates(cls, v: str | None) -> str | None:
        return _check_template(v)

    @field_validator("capture")
    @classmethod
    def _jmes(cls, v: dict[str, str]) -> dict[str, str]:
        for name, expr in v.items():
            try:
                jmespath.compile(expr)
            except jmespath.exceptions.ParseError as exc:
                raise ValueError(f"capture {name!r}: invalid JMESPath {expr!r}: {exc}") from exc
        return v

    @field_validator("fact")
    @classmethod
    def _fact(cls, v: str | None) -> str | None:
        if v is not None and v not in ("orders", "customer"):
            raise ValueError("fact must be 'orders' or 'customer'")
        return v

    @model_validator(mode="after")
    def _kind(self) -> Action:
        method = self.request.method
        if not self.writes:
            if method not in ("GET", "POST"):
                raise ValueError(
                    f"{method} changes the store: add `approval: required` (handoff never "
                    "writes on its own), `params` and an `idempotency_key`"
                )
            if self.params or self.idempotency_key:
                raise ValueError(
                    "params and idempotency_key are for writes: add `approval: required`"
                )
            if self.fact is None:
                raise ValueError("fact is required: where the results go (orders | customer)")
            return self
        if method not in WRITE_METHODS:
            raise ValueError(f"a write action uses {', '.join(WRITE_METHODS)}, not {method}")
        if not self.idempotency_key:
            raise ValueError(
                "a write action needs an idempotency_key template (e.g. "
                "'cancel-{{ order_number }}'), sent as the Idempotency-Key header so the store "
                "applies it once however often it is sent"
            )
        if self.runs_on or self.inputs or self.fact or self.verify:
            raise ValueError(
                "a write action runs only when a rule prepares it and a person approves it: "
                "no runs_on, inputs, fact or verify (its inputs are `params`)"
            )
        return self


class Prepare(Strict):
    """A write action a rule prepares for a person to approve, with its params as templates over
    the facts (`order` too, in a rule `for_each: order`). `if`: prepare only when this holds."""

    action: str
    inputs: dict[str, str] = Field(default_factory=dict)
    if_: str = Field(default="true", alias="if")

    @field_validator("if_")
    @classmethod
    def _cond(cls, v: str) -> str | None:
        return _check_expr(v)

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, tmpl in v.items():
            try:
                _check_template(str(tmpl))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
        return {k: str(t) for k, t in v.items()}


class Rule(Strict):
    name: str
    if_: str = Field(alias="if")
    for_each: Literal["order"] | None = None
    tags: list[str] = Field(default_factory=list)
    reason: str = ""
    priority: int = 0
    ask_for: str | None = None
    expectation: str | None = None
    sla_minutes: int | None = None
    prepare: Prepare | None = None

    @field_validator("if_")
    @classmethod
    def _cond(cls, v: str) -> str | None:
        return _check_expr(v)

    @field_validator("reason", "expectation")
    @classmethod
    def _tmpl(cls, v: str | None) -> str | None:
        return _check_template(v)


class RuleSet(Strict):
    name: str
    applies_if: str = "true"
    rules: list[Rule]

    @field_validator("applies_if")
    @classmethod
    def _cond(cls, v: str) -> str | None:
        return _check_expr(v)


class Tag(Strict):
    description: str = ""
    emoji: str = ""
    color: str = "#888888"
    channel: str | None = None
    suggest: bool = True  # false: only the rules, from the store's data, may apply it (not an LLM)


class Hours(Strict):
    timezone: str = "UTC"
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    start: time = time(9, 0)
    end: time = time(18, 0)
    always_open: bool = False

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if d.lower()[:3] not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use mon..sun")
        return [d.lower()[:3] for d in v]

    def is_open(self, when: datetime) -> bool:
        if self.always_open:
            return True
        local = when.astimezone(ZoneInfo(self.timezone))
        return WEEKDAYS[local.weekday()] in self.days and self.start <= local.time() < self.end

    def next_open(self, when: datetime) -> datetime:
        local = when.astimezone(ZoneInfo(self.timezone))
        for i in range(0, 8):
            day = (local + timedelta(days=i)).date()
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            opening = datetime.combine(day, self.start, tzinfo=ZoneInfo(self.timezone))
            if opening > local or (i == 0 and self.is_open(when)):
                return opening if opening > local else local
        return local


class Messages(Strict):
    welcome: str = (
        "Hi! I'm the store's assistant. Ask me anything, or ask for a person at any time."
    )
    # `{{ queue }}` is the `queue` line below: the shopper's place in line and the wait.
    expectation: str = "I've passed this to our team. {{ queue }}"
    out_of_hours: str = (
        "I've passed this to our team. We're offline now; a person will reply here {{ opens }}."
    )
    dont_know: str = "I'm not sure about that one, so I've asked a person from our team to help."
    offer_human: str = (
        "I couldn't find that in our help pages. Shall I get someone from the team?"
    )
    declined_human: str = "No problem. Is there anything else I can help with?"
    retracted: str = "Okay, I'll leave it as it is. Is there anything else I can help with?"
    rephrase: str = "Sorry, I didn't quite get that. Could you tell me a little more?"
    ask_order: str = "Could you give me your order number?"
    ask_email: str = "To keep your order details private, what's the email address on the order?"
    # An order the shopper has not proved reads exactly like one the store does not know (see
    # agent/trust.py): these two answer both, so neither may say which it is.
    email_mismatch: str = (
        "I couldn't find order {{ number }} with that email address, so I can't share anything "
        "about it. Could you check the order number and the email on your confirmation?"
    )
    order_not_found: str = (
        "I couldn't find order {{ number }} under your account's email address. Could you check "
        "the number? If you ordered with another email address, tell me that one."
    )
    identity_check: str = (
        "I can't check that order against more email addresses here, so I've asked a person "
        "from our team to confirm it's yours."
    )
    too_many_orders: str = (
        "I can look up {{ limit }} orders per message, so I've started with "
        "{{ numbers | join(', ') }}. Send me the others once we're done with these."
    )
    lookup_limit: str = (
        "I can't look up more orders in this chat right now. If you need help with more orders, "
        "ask for a person."
    )
    lookup_failed: str = "I can't reach our order system right now, so I've passed this to a person who can check it for you."
    greeting: str = "Hi! How can I help?"
    thanks: str = "You're welcome! Anything else I can help with?"
    claimed: str = "{name} from our team has joined the chat."
    resolved: str = (
        "This conversation is marked as resolved. Write again any time if you need more help."
    )
    handback: str = "You're chatting with our assistant again."
    ai_unavailable: str = "Sorry, our assistant is having trouble right now. I've passed your message to our team and a person will reply here."
    order_status: str = (
        "Order {{ order.number }}: {{ order.status }}, payment {{ order.payment_status }}."
    )
    # The wait (domain/waiting.py): `position` (1 = next), `ahead`, `wait_minutes` (the recent
    # time to claim), `measured` (false: too few recent claims, so `sla_minutes` is what we have).
    queue: str = (
        "{% if ahead == 0 %}You're next in line; {% elif position %}You're {{ position_ordinal }} "
        "in line; {% endif %}{% if measured %}our team is answering in about {{ wait_minutes }} "
        "minutes.{% else %}a person will reply here within {{ sla_minutes }} minutes.{% endif %}"
    )
    # Once, when the wait slips well past the estimate; never after a person claimed the chat.
    queue_followup: str = (
        "Still on it{% if ahead %}: {{ ahead }} ahead of you{% else %}: you're next{% endif %}."
    )
    # The wait's messages for shoppers writing de, es, fr or nl (else built-in wording):
    # translations: {de: {expectation: "...", queue: "..."}}
    translations: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _templates(self) -> Messages:
        for name, value in self.__dict__.items():
            if name == "translations":
                continue
            try:
                _check_template(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
        for lang, texts in self.translations.items():
            if lang not in LANGUAGES[1:]:
                raise ValueError(f"translations: unknown language {lang!r}; use {LANGUAGES[1:]}")
            for name, value in texts.items():
                if name not in WAIT_MESSAGES:
                    raise ValueError(f"translations.{lang}: {name!r} is not one of {WAIT_MESSAGES}")
                try:
                    _check_template(value)
                except ValueError as exc:
                    raise ValueError(f"translations.{lang}.{name}: {exc}") from exc
        return self

    def wait_text(self, name: str, language: str) -> str:
        """A wait message in the shopper's language: the store's, else the built-in wording."""
        if language not in BUILTIN:
            return str(getattr(self, name))
        return self.translations.get(language, {}).get(name) or BUILTIN[language][name]


class Store(Strict):
    name: str = "Our store"
    team_name: str = "Support team"
    human_names: Literal["first_name", "full_name", "team"] = "first_name"
    sla_minutes: int = 15
    hours: Hours = Field(default_factory=Hours)
    reminder_minutes: int = 30
    reminder_mention: str | None = None


class Alerts(Strict):
    """Spike alerts per tag (see core/spikes.py for the test)."""

    enabled: bool = True
    window_minutes: int = Field(default=30, gt=0)
    baseline_windows: int = Field(default=48, gt=0)
    min_count: int = Field(default=5, ge=1)
    min_ratio: float = Field(default=2.0, ge=1)
    alpha: float = Field(default=0.001, gt=0, lt=1)
    cooldown_minutes: int = Field(default=120, ge=0)
    check_seconds: float = Field(default=60, gt=0)


class Knowledge(Strict):
    dir: str = "knowledge"
    min_confidence: float = Field(default=0.45, ge=0, le=1)
    # Unanswered questions in a row before the agent hands off by itself (tag `unanswered`); before
    # that it offers a person and hands off when the shopper accepts. 1: hand off at once.
    handoff_after_misses: int = Field(default=2, ge=1)


class Intent(Strict):
    """An intent the agent recognises from examples (agent/classifier.py). Under a shipped name
    (cancel, payment_problem, fraud, identity, price_override, human, order_status, none) the
    examples are added to the shipped ones; a new name is a new intent the rules can read
    (`'gift_card' in intents`)."""

    description: str = ""
    examples: list[str] = Field(default_factory=list)
    threshold: float | None = Field(default=None, ge=0, le=1)
    # The bar when the store's pages have no answer for the message (default 0.3).
    fallback_threshold: float | None = Field(default=None, ge=0, le=1)
    replace_examples: bool = False


class Limits(Strict):
    """What one conversation may ask of the store's API and of the agent (agent/trust.py), so a
    hostile shopper can neither amplify calls, nor guess an order's email, nor grow the memory."""

    email_attempts: int = Field(default=3, ge=1, le=20)  # per order per conversation
    identity_tag: str = "identity-check"  # the handoff after one more email than that
    lookups_per_message: int = Field(default=3, ge=1, le=20)  # shop API calls one message causes
    lookups_per_hour: int = Field(default=20, ge=1, le=1000)  # per conversation, rolling hour
    memory_items: int = Field(default=20, ge=5, le=200)  # orders, entity values, ... remembered


class StoreConfig(Strict):
    store: Store = Field(default_factory=Store)
    messages: Messages = Field(default_factory=Messages)
    knowledge: Knowledge = Field(default_factory=Knowledge)
    alerts: Alerts = Field(default_factory=Alerts)
    limits: Limits = Field(default_factory=Limits)
    entities: dict[str, Entity] = Field(default_factory=dict)
    actions: dict[str, Action] = Field(default_factory=dict)
    tags: dict[str, Tag] = Field(default_factory=dict)
    rule_sets: list[RuleSet] = Field(default_factory=list)
    intents: dict[str, Intent] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="env variables templates may read")
    approvers: Approvers = Field(default_factory=Approvers)
    mask_patterns: list[str] = Field(default_factory=list)
    note_prefix: str = ";"

    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> StoreConfig:
        for aname, action in self.actions.items():
            for inp, entity in action.inputs.items():
                if entity not in self.entities:
                    raise ValueError(f"actions.{aname}.inputs.{inp}: unknown entity {entity!r}")
            for entity in action.runs_on:
                if entity not in self.entities:
                    raise ValueError(f"actions.{aname}.runs_on: unknown entity {entity!r}")
        for rs in self.rule_sets:
            for rule in rs.rules:
                for tag in rule.tags:
                    if tag not in self.tags:
                        raise ValueError(
                            f"rule {rule.name!r}: tag {tag!r} is not defined under tags:"
                        )
                if rule.ask_for and rule.ask_for not in self.entities:
                    raise ValueError(
                        f"rule {rule.name!r}: ask_for {rule.ask_for!r} is not an entity"
                    )
                if rule.prepare is not None:
                    self._check_prepare(rule.name, rule.prepare)
        return self

    def _check_prepare(self, rule: str, prepare: Prepare) -> None:
        action = self.actions.get(prepare.action)
        if action is None:
            raise ValueError(f"rule {rule!r}: prepare: unknown action {prepare.action!r}")
        if not action.writes:
            raise ValueError(
                f"rule {rule!r}: prepare: {prepare.action!r} is not a write action "
                "(approval: required)"
            )
        unknown = sorted(set(prepare.inputs) - set(action.params))
        missing = sorted(
            n for n, p in action.params.items() if p.required and n not in prepare.inputs
        )
        if unknown:
            raise ValueError(f"rule {rule!r}: prepare: {prepare.action} has no param {unknown}")
        if missing:
            raise ValueError(f"rule {rule!r}: prepare: {prepare.action} needs {missing}")

    def approvers_of(self, action: str) -> Approvers:
        """Who may approve `action`: its own list, else the store's."""
        own = self.actions[action].approvers if action in self.actions else None
        return own if own is not None else self.approvers

    @property
    def knowledge_path(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.knowledge.dir).resolve()

    def routing(self) -> dict[str, str]:
        return {name: tag.channel for name, tag in self.tags.items() if tag.channel}

    def route_of(self, tags: Iterable[str]) -> str:
        """Which queue a handoff with these tags waits in: the channel of its first tag (in the
        config's order) that has one, as the Slack inbox routes it; "" for the inbox's own."""
        have = set(tags)
        return next((t.channel for n, t in self.tags.items() if t.channel and n in have), None) or ""

    def staff_name(self, author: str) -> str:
        """How a person of the team appears to shoppers: first name, full name or the team."""
        mode = self.store.human_names
        if mode == "team" or not author:
            return self.store.team_name
        return author.split()[0] if mode == "first_name" else author


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Follow a pydantic error location through the YAML node tree, as deep as it goes."""
    best = node
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part or (part == "if_" and k.value == "if"):
                    nxt = v
                    best = k
                    break
            if nxt is None:
                return best
            node = nxt
            best = node
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            best = node
        else:
            return best
    return best


def load_config(path: str | Path | None = None) -> StoreConfig:
    p = Path(path) if path else DEFAULT_CONFIG
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror or exc}") from exc
    return parse_config(text, p)


def parse_config(text: str, path: Path) -> StoreConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping (key: value) at the top level")
    try:
        cfg = StoreConfig.model_validate(data)
    except ValidationError as exc:
        # The nodes (for line numbers) only when there is an error to place: composing costs
        # as much as loading, on every start. The text already loaded, so it composes too.
        root = yaml.compose(text)
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            node = _node_at(root, loc)
            line = node.start_mark.line + 1 if node is not None else 1
            field = ".".join(str(x) for x in loc).replace("if_", "if") or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{path}:{line}: {field}: {msg}")
        raise ConfigError("\n".join(lines)) from exc
    cfg.path = path.resolve()
    return cfg
