"""README documents every setting, tenant policy field, CLI command and route (docs enforced by tests)."""

import re
from pathlib import Path

import click
import pytest

from assist.cli import main
from assist.config import Settings, TenantPolicy

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(set(Settings.model_fields) - {"config_file"}))
def test_every_setting_is_documented(name):
    assert f"`{name}`" in README, name


def test_config_file_is_documented():
    assert "ASSIST_CONFIG_FILE" in README and "--config" in README


@pytest.mark.parametrize("name", sorted(TenantPolicy.model_fields))
def test_every_tenant_policy_field_is_documented(name):
    assert f"`{name}`" in README, name


def _commands(group: click.Group, prefix: str = "assist") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += _commands(cmd, full)
        else:
            out.append(full)
    return out


@pytest.mark.parametrize("command", sorted(_commands(main)))
def test_every_cli_command_is_documented(command):
    assert command in README, command


def test_every_route_is_documented(tmp_path):
    from assist.app import create_app

    app = create_app(Settings(data_dir=tmp_path, audit_hmac_key="k"))
    missing = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        path = re.sub(r"\{[^}]+\}", "{id}", path) if path else path
        if path and route.method != "HEAD" and path not in README:
            missing.append(f"{route.method} {path}")
    assert not missing, missing
