"""A store developer's mistakes in the YAML are caught at start, with the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from domain.storeconfig import DEFAULT_CONFIG, ConfigError, load_config, parse_config


def _broken(replace: str, by: str) -> str:
    text = DEFAULT_CONFIG.read_text()
    assert replace in text
    return text.replace(replace, by, 1)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_shipped_pack_is_valid() -> None:
    cfg = load_config()
    assert {
        "payment-failure",
        "flash-cancellation",
        "vip",
        "multi-order",
        "human-requested",
    } <= set(cfg.tags)
    assert cfg.knowledge_path.is_dir()


def test_unknown_tag_in_rule_names_line_and_field(tmp_path: Path) -> None:
    text = _broken("tags: [out-of-stock]", "tags: [out-of-stok]")
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "store.yaml")
    msg = str(err.value)
    assert "store.yaml:" in msg and "out-of-stok" in msg and "not defined" in msg


def test_bad_condition_points_at_its_line(tmp_path: Path) -> None:
    text = _broken(
        "if: \"order.payment_status == 'failed'\"", "if: \"order.payment_status == = 'failed'\""
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "store.yaml")
    line = _line_of(text, "== = 'failed'")
    assert f"store.yaml:{line}:" in str(err.value)
    assert "rule_sets.0.rules.0.if" in str(err.value)


def test_bad_regex_and_unknown_field(tmp_path: Path) -> None:
    text = _broken("  sla_minutes: 15", "  sla_minutes: 15\n  sla_minuts: 5")
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "s.yaml")
    assert f"s.yaml:{_line_of(text, 'sla_minuts')}: store.sla_minuts" in str(err.value)
    text = _broken("    upper: false", "    upper: false\n    pattern: '([a-z'")
    with pytest.raises(ConfigError):
        parse_config(text, tmp_path / "s.yaml")


def test_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("store: [unclosed\n", tmp_path / "x.yaml")
    assert "x.yaml:" in str(err.value) and "not valid YAML" in str(err.value)


def test_check_command_reports_errors_with_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_broken("tags: [out-of-stock]", "tags: [nope]"))
    assert main(["check", "--config", str(bad)]) == 2
    assert "nope" in capsys.readouterr().err
    monkeypatch.setenv("INBOX_TOKEN", "a")
    assert main(["check"]) == 1  # valid config, but a guessable INBOX_TOKEN
    out = capsys.readouterr()
    assert "lookup_order" in out.out and "INBOX_TOKEN is too weak" in out.err
