"""The YAML of writes, prepares and approvers is checked at start, with the file's line: a write
that could run without a person, without an idempotency key, or from a rule that prepares what
is not a write never gets as far as a flash sale. The LLM is never offered a write as a tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.llm_tools import tool_specs
from domain.storeconfig import ConfigError, load_config, parse_config

BASE = """
entities:
  order_number: {pattern: 'FP-\\d+'}
actions:
  lookup_order:
    fact: orders
    inputs: {order_number: order_number}
    request: {url: "{{ shop_api_url }}/orders/{{ order_number }}"}
%s
tags:
  cancellation: {}
rule_sets:
  - name: r
    rules:
      - name: cancel
        if: "true"
        tags: [cancellation]
%s
"""

WRITE = """  cancel_order:
    approval: required
    params: {order_number: {}, amount: {type: number, max: 25, above_max: cap}}
    request: {method: POST, url: "{{ shop_api_url }}/orders/{{ order_number }}/cancel"}
    idempotency_key: "cancel-{{ order_number }}"
"""
PREPARE = """        prepare:
          action: cancel_order
          inputs: {order_number: "{{ 'FP-1' }}", amount: "{{ 3 }}"}
"""


def parse(actions: str, prepare: str = "") -> None:
    parse_config(BASE % (actions, prepare), Path("store.yaml"))


def test_a_complete_write_and_its_prepare_load() -> None:
    parse(WRITE, PREPARE)


@pytest.mark.parametrize(
    ("actions", "prepare", "message"),
    [
        (WRITE.replace("    approval: required\n", ""), "", "are for writes: add `approval: required`"),
        (WRITE.replace("    approval: required\n", "").replace("POST", "DELETE"), "", "DELETE changes the store"),
        (WRITE.replace('    idempotency_key: "cancel-{{ order_number }}"\n', ""), "", "needs an idempotency_key"),
        (WRITE.replace("method: POST", "method: GET"), "", "a write action uses POST, PUT, PATCH, DELETE"),
        (WRITE + "    runs_on: [order_number]\n", "", "runs only when a rule prepares it"),
        (WRITE, PREPARE.replace("cancel_order", "lookup_order"), "is not a write action"),
        (WRITE, PREPARE.replace("cancel_order", "refund"), "unknown action 'refund'"),
        (WRITE, PREPARE.replace("amount:", "amuont:"), "has no param ['amuont']"),
        (WRITE, PREPARE.replace("order_number: \"{{ 'FP-1' }}\", ", ""), "needs ['order_number']"),
        (WRITE.replace("{{ order_number }}\"\n", "{{ order_number \"\n"), "", "invalid template"),
    ],
)
def test_mistakes_are_refused_with_the_line(actions: str, prepare: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(actions, prepare)
    text = str(err.value)
    assert message in text and text.startswith("store.yaml:"), text


def test_approvers_are_slack_ids_and_staff_names() -> None:
    config = parse_config(
        BASE % (WRITE, "") + "approvers: {slack_users: [U1], slack_groups: [S1LEADS], inbox_staff: [Maria Lopez]}\n",
        Path("store.yaml"),
    )
    who = config.approvers_of("cancel_order")
    assert who.allows_slack("U1") and who.allows_slack("U9", {"S1LEADS"}) and not who.allows_slack("U9")
    assert who.allows_staff("maria  LOPEZ") and not who.allows_staff("Maria")
    with pytest.raises(ConfigError, match="not Slack ids"):
        parse_config(BASE % (WRITE, "") + "approvers: {slack_users: ['@maria']}\n", Path("store.yaml"))


def test_the_example_store_prepares_writes_the_llm_is_never_offered() -> None:
    config = load_config()
    writes = {n for n, a in config.actions.items() if a.writes}
    assert writes == {"cancel_order", "refund_price_difference"}
    offered = {spec["function"]["name"] for spec in tool_specs(config)}
    assert "lookup_order" in offered and not offered & writes
