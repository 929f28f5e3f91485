"""Settings: env, file and flags in that priority; unsafe combinations refused with the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assist.config import ConfigError, Settings, TenantPolicy, load_settings


def test_defaults_are_a_working_laptop_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("ASSIST_"):
            monkeypatch.delenv(key)
    s = load_settings()
    assert (s.host, s.port, s.platform, s.env) == ("127.0.0.1", 8080, "demo", "dev")
    assert s.data_dir == Path("assist-data") and s.state_db == Path("assist-data/state.db")
    assert list(s.tenants) == ["default"] and s.tenants["default"].rewrite_policy == "forward"


def test_priority_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "assist.toml"
    conf.write_text('port = 9000\nhost = "0.0.0.0"\n[tenants.acme]\nline = "售后"\nrewrite_policy = "confirm"\n',
                    encoding="utf-8")
    monkeypatch.setenv("ASSIST_PORT", "9100")
    s = load_settings(config_file=conf)
    assert (s.port, s.host) == (9100, "0.0.0.0")
    assert s.tenants["acme"].line == "售后" and "default" in s.tenants
    assert load_settings(config_file=conf, port=1).port == 1
    monkeypatch.setenv("ASSIST_CONFIG_FILE", str(conf))
    monkeypatch.delenv("ASSIST_PORT")
    assert load_settings().port == 9000


def test_json_config_file_and_nested_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "assist.json"
    conf.write_text(json.dumps({"max_body_bytes": 4096}), encoding="utf-8")
    monkeypatch.setenv("ASSIST_TENANTS", json.dumps({"shop": {"override_allowed": ["fatal", "non_fatal"]}}))
    s = load_settings(config_file=conf)
    assert s.max_body_bytes == 4096 and s.tenants["shop"].override_allowed == ["fatal", "non_fatal"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"env": "prod", "platform": "webhook", "webhook_url": "http://x", "webhook_secret": "s"}, "audit_hmac_key"),
    ({"env": "prod", "audit_hmac_key": "k"}, "platform 'demo'"),
    ({"env": "prod", "audit_hmac_key": "k", "platform": "chatwoot", "chatwoot_base_url": "http://x",
      "chatwoot_account_id": 1, "chatwoot_api_token": "t"}, "chatwoot signature secret is still the placeholder"),
    ({"platform": "chatwoot"}, "chatwoot_base_url is required"),
    ({"platform": "webhook"}, "webhook_url is required"),
    ({"port": 70000}, "port"),
    ({"platform": "slack"}, "platform"),
    ({"delivery_backoff_base_s": 10, "delivery_backoff_max_s": 1}, "must not exceed"),
    ({"tenants": {"x": {"agent_no_template": "no slot"}}}, "agent_no_template"),
    ({"tenants": {"x": {"rewrite_policy": "maybe"}}}, "rewrite_policy"),
    ({"surprise": 1}, "surprise"),
], ids=["prod-audit-key", "prod-demo", "prod-chatwoot-secret", "chatwoot-incomplete", "webhook-no-url",
        "port-range", "unknown-platform", "backoff-order", "agent-template", "rewrite-policy", "unknown-field"])
def test_unsafe_or_wrong_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert message in str(info.value)


def test_prod_with_signature_off_is_an_explicit_choice() -> None:
    s = load_settings(env="prod", audit_hmac_key="k", platform="chatwoot", chatwoot_base_url="http://x",
                      chatwoot_account_id=1, chatwoot_api_token="t", chatwoot_signature_mode="off")
    assert s.chatwoot_signature_mode == "off"


def test_secrets_do_not_print() -> None:
    s = Settings(chatwoot_api_token="very-secret-token", audit_hmac_key="hmac-secret")
    assert "very-secret-token" not in repr(s) and "hmac-secret" not in str(s.model_dump())


def test_broken_config_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_settings(config_file=bad)


def test_agent_number_in_greeting() -> None:
    assert TenantPolicy(agent_no_template="CS-{agent_id}").agent_no("42") == "CS-42"
