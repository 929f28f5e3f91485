"""One settings object for the service: env `ASSIST_*`, an optional TOML/JSON file, validated once.

Priority, highest first: values passed in code (the CLI's flags), environment variables, the config
file (`--config FILE` or `ASSIST_CONFIG_FILE`), then the defaults below. Built once in the entry
point and passed down; no other module reads the environment.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

import phrases

__all__ = ["PLACEHOLDER", "ConfigError", "Settings", "TenantPolicy", "load_settings"]

# Secrets left at this value are fine on a laptop and refused in prod (see Settings._safe).
PLACEHOLDER = "change-me"


class ConfigError(ValueError):
    """A configuration that cannot be loaded or is unsafe; the message names the field and the fix."""


class TenantPolicy(BaseModel):
    """What one tenant (a shop or contact centre) allows and how its replies are dressed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 首问语 (spec 2): "您好,这里是{line}专线,客服{agent_no}为您服务。"
    line: str = Field("在线客服", min_length=1, max_length=40)
    # How an agent id becomes the number said in the greeting; "{agent_id}" keeps it as is.
    agent_no_template: str = "{agent_id}"
    # forward: send the rewritten text at once; confirm: hand it back for the agent to accept.
    rewrite_policy: Literal["forward", "confirm"] = "forward"
    # Severities an agent may send anyway with a reason (spec 5); fatal items zero the QA score
    # (spec 4), so only non-fatal ones are overridable by default.
    override_allowed: list[Literal["fatal", "non_fatal"]] = ["non_fatal"]
    # prepend: the greeting goes in front of the first reply; separate: sent as its own message
    # first; off: the platform greets by itself.
    greeting_policy: Literal["prepend", "separate", "off"] = "prepend"
    timezone: str = "Asia/Shanghai"
    # Privacy: the audit stores every text whole (its hash chain covers them); when false, auditors
    # see phone numbers, ID numbers, bank cards and addresses masked.
    keep_original_text: bool = False
    library_path: Path | None = None

    @field_validator("agent_no_template")
    @classmethod
    def _template_has_slot(cls, v: str) -> str:
        if "{agent_id}" not in v:
            raise ValueError("agent_no_template must contain '{agent_id}'")
        return v

    def agent_no(self, agent_id: str | None) -> str:
        """The agent number as the greeting says it."""
        return self.agent_no_template.replace("{agent_id}", agent_id or "")


class _FileSource(PydanticBaseSettingsSource):
    """Reads the optional config file named by the `config_file` init value or env var."""

    def __init__(self, settings_cls: type[BaseSettings], init: dict[str, Any], env: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._init = init
        self._env = env

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self._init.get("config_file") or self._env().get("config_file")
        if not path:
            return {}
        return read_config_file(Path(path))


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or JSON config file into a dict of settings."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"config file {path}: cannot read it ({err.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: not valid {path.suffix or 'TOML'}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must hold a table/object of settings")
    return data


class Settings(BaseSettings):
    """Everything the service is configured with; see README 'Settings' for each field."""

    model_config = SettingsConfigDict(env_prefix="ASSIST_", env_nested_delimiter="__", extra="forbid")

    config_file: Path | None = None
    env: Literal["dev", "prod"] = "dev"
    host: str = "127.0.0.1"  # loopback: a sidecar sits next to the agents' console
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("assist-data")
    # 64 KiB is far above any chat reply and keeps a flood of large bodies cheap to refuse.
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    platform: Literal["demo", "webhook", "chatwoot"] = "demo"
    # Chatwoot (spec chatwoot.md): REST base, account, user/bot token, webhook signing secret.
    chatwoot_base_url: str | None = None
    chatwoot_account_id: int | None = None
    chatwoot_api_token: SecretStr | None = None
    chatwoot_webhook_secret: SecretStr = SecretStr(PLACEHOLDER)
    # Chatwoot before v4.11.2 signs nothing: log_only/off keep such installs usable.
    chatwoot_signature_mode: Literal["enforce", "log_only", "off"] = "enforce"
    # Chatwoot suggests about 5 minutes between signing and receipt (PR #13573).
    signature_window_s: int = Field(300, ge=10, le=3600)
    # Generic platform: where replies are POSTed, and the secret both directions are signed with.
    webhook_url: str | None = None
    webhook_secret: SecretStr = SecretStr(PLACEHOLDER)
    webhook_signature_mode: Literal["enforce", "log_only", "off"] = "enforce"

    # Delivery: Chatwoot's own webhook timeout is 5 s; replies should not wait longer per try.
    delivery_timeout_s: float = Field(5.0, gt=0, le=120)
    delivery_backoff_base_s: float = Field(0.5, gt=0, le=60)
    delivery_backoff_max_s: float = Field(60.0, gt=0, le=3600)
    # After this many failed tries (about an hour with the defaults) a reply is reported failed.
    delivery_max_attempts: int = Field(60, ge=1, le=10_000)

    # Delivery ids of inbound webhooks and idempotency keys of replies are kept this long: platform
    # retries come within minutes (Chatwoot: 3 tries, 3 s apart), a client retry within hours.
    dedupe_retention_h: int = Field(168, ge=1, le=24 * 365)
    # A closed conversation's once-only flags (不客气, the closing suggested) are kept this long in
    # case the customer comes back; later the conversation starts afresh.
    clock_closed_retention_h: int = Field(72, ge=1, le=24 * 365)

    audit_hmac_key: SecretStr = SecretStr(PLACEHOLDER)
    audit_checkpoint_every: int = Field(1000, ge=1)
    # Conversation history handed to the guard (repetition, repeated closing): the last N messages.
    history_messages: int = Field(20, ge=0, le=500)
    tenants: dict[str, TenantPolicy] = {"default": TenantPolicy()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init = getattr(init_settings, "init_kwargs", {})
        return (init_settings, env_settings, _FileSource(settings_cls, init, env_settings))

    @field_validator("tenants")
    @classmethod
    def _default_tenant(cls, v: dict[str, TenantPolicy]) -> dict[str, TenantPolicy]:
        if "default" not in v:
            v = {"default": TenantPolicy(), **v}
        return v

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        problems: list[str] = []
        if self.platform == "chatwoot":
            for name in ("chatwoot_base_url", "chatwoot_account_id", "chatwoot_api_token"):
                if getattr(self, name) is None:
                    problems.append(f"{name} is required when platform is 'chatwoot'")
        if self.platform == "webhook" and not self.webhook_url:
            problems.append("webhook_url is required when platform is 'webhook'")
        if self.env == "prod":
            if self.audit_hmac_key.get_secret_value() == PLACEHOLDER:
                problems.append("audit_hmac_key is still the placeholder; set ASSIST_AUDIT_HMAC_KEY in prod")
            if self.platform == "demo":
                problems.append("platform 'demo' delivers nowhere; choose 'chatwoot' or 'webhook' in prod")
            for prefix in ("chatwoot", "webhook"):
                secret = getattr(self, f"{prefix}_webhook_secret" if prefix == "chatwoot" else "webhook_secret")
                mode = getattr(self, f"{prefix}_signature_mode")
                if self.platform == prefix and mode != "off" and secret.get_secret_value() == PLACEHOLDER:
                    problems.append(
                        f"{prefix} signature secret is still the placeholder; set it or set "
                        f"{prefix}_signature_mode='off' explicitly"
                    )
        if self.delivery_backoff_base_s > self.delivery_backoff_max_s:
            problems.append("delivery_backoff_base_s must not exceed delivery_backoff_max_s")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def audit_db(self) -> Path:
        return self.data_dir / "audit.db"

    def policy(self, tenant: str) -> TenantPolicy | None:
        """The tenant's policy, or None for a tenant this service does not know."""
        return self.tenants.get(tenant)

    def library_for(self, tenant: str) -> phrases.Library:
        """Load the tenant's phrase library (its own file, or the packaged default)."""
        policy = self.tenants[tenant]
        return phrases.load_library(policy.library_path)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from overrides, env and file; raise ConfigError with every problem listed."""
    from pydantic import ValidationError

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "settings"
            lines.append(f"{loc}: {e['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
