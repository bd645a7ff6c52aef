"""The writes a handoff's rules prepare (`prepare:` on a rule), for a person to approve.

Only the rules' verdict on what the shopper proved prepares anything: `decision.matches` are
the matches on the proved facts (agent/trust.py), so an order a stranger named, without its
email, never gets a cancellation or a refund prepared, whatever the store says about it. Each
prepared write's params are rendered from the facts (`order` too, for a rule `for_each: order`)
and checked against the action's `params:` (type, min, max or a cap); one that fails the checks
is still shown on the ticket, as not prepared and why, so the person knows what to do by hand."""

from __future__ import annotations

from typing import Any

from agent import trust
from agent.actions import render_value
from agent.rules import Decision
from domain.storeconfig import StoreConfig
from domain.templating import evaluate, render
from domain.writes import check_params


def prepare_actions(
    config: StoreConfig, decision: Decision, facts: dict[str, Any]
) -> list[dict[str, Any]]:
    """The handoff context's `prepared` list: one entry per write, in rule order, each once."""
    proved = trust.proved_view(facts)
    orders = {str(o.get("number")): o for o in proved.get("orders") or []}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for match in decision.matches:
        prep = match.rule.prepare
        if prep is None:
            continue
        action = config.actions[prep.action]
        if match.rule.for_each == "order":
            targets: list[dict[str, Any] | None] = [orders[n] for n in match.orders if n in orders]
        else:
            targets = [None]
        for order in targets:
            ctx = {**proved, "tags": list(decision.tags)}
            if order is not None:
                ctx["order"] = order
            entry: dict[str, Any] = {
                "action": prep.action,
                "label": action.description or prep.action.replace("_", " "),
                "rule": match.rule.name,
            }
            if order is not None:
                entry["order"] = str(order.get("number"))
            try:
                if not evaluate(prep.if_, **ctx):
                    continue
                raw = {name: render_value(tmpl, **ctx) for name, tmpl in prep.inputs.items()}
            except Exception as exc:  # a template that fails on these facts: say so, prepare nothing
                entry.update(state="not_prepared", params={}, problems=[f"{type(exc).__name__}: {exc}"])
                out.append(entry)
                continue
            checked = check_params(action, raw)
            key = repr((prep.action, sorted(checked.values.items())))
            if key in seen:
                continue
            seen.add(key)
            entry["params"] = checked.values if checked.ok else raw_json(raw)
            if checked.notes:
                entry["notes"] = checked.notes
            if not checked.ok:
                entry.update(state="not_prepared", problems=checked.problems)
            else:
                entry["state"] = "prepared"
                entry["summary"] = summary(config, prep.action, checked.values)
            out.append(entry)
    return out


def summary(config: StoreConfig, name: str, params: dict[str, Any]) -> str:
    """What the ticket says the write will do: the action's `summary:`, else its name and params."""
    action = config.actions[name]
    if action.summary:
        try:
            text = " ".join(render(action.summary, **params).split())
        except Exception:
            text = ""
        if text:
            return text
    shown = ", ".join(f"{k} {v}" for k, v in params.items())
    return f"{action.description or name}" + (f" ({shown})" if shown else "")


def raw_json(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in values.items()}
