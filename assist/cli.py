"""The `assist` command: one click group; other modules add their commands with main.add_command()."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from .config import ConfigError, Settings, load_settings

__all__ = ["main"]

_data_dir = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                         help="Where state.db and audit.db live (env ASSIST_DATA_DIR; default ./assist-data).")
_config = click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                       default=None, help="A TOML or JSON settings file (env ASSIST_CONFIG_FILE).")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


@click.group()
@click.version_option(package_name="assist-guard")
def main() -> None:
    """Compliance guard for customer-service chat: guards replies, reminds, audits."""


def _banner(settings: Settings, url: str) -> str:
    data = settings.data_dir
    lines = [
        f"assist is listening on {url}  (platform: {settings.platform}, data: {data.resolve()})",
        "Get a token (shown once):",
        f"  assist token create --role agent --agent 1001 --data-dir {data}",
        "Then try it:",
        '  export TOKEN=<the token>',
        f"  curl -s -X POST {url}/v1/check -H \"Authorization: Bearer $TOKEN\" -d '{{\"text\": \"不知道\"}}'",
    ]
    if settings.platform == "demo":
        lines += [
            "Demo platform (play the customer, answer as the agent, see what was delivered):",
            f"  curl -s -X POST {url}/demo/customer/c1 -H \"Authorization: Bearer $TOKEN\" -d '{{\"text\": \"在吗?我的快递到哪了\"}}'",
            f"  curl -s -X POST {url}/v1/conversations/c1/replies -H \"Authorization: Bearer $TOKEN\" -d '{{\"text\": \"请您稍等2分钟,我帮您查询。\"}}'",
            f"  curl -s {url}/demo/conversations/c1 -H \"Authorization: Bearer $TOKEN\"",
        ]
    return "\n".join(lines)


async def _serve(settings: Settings) -> None:
    from aiohttp import web

    from .app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    click.echo(_banner(settings, f"http://{host}:{port}"), err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


@main.command()
@click.option("--host", default=None, help="Address to bind (env ASSIST_HOST; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind, 0 for any free one (env ASSIST_PORT; default 8080).")
@_data_dir
@_config
def serve(host: str | None, port: int | None, data_dir: Path | None, config_file: Path | None) -> None:
    """Run the service (SQLite in the data directory; the demo platform unless configured otherwise).

    Example: assist serve --port 8080 --data-dir ./assist-data
    """
    from .logging import configure_logging

    settings = _settings(host=host, port=port, data_dir=data_dir, config_file=config_file)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    import phrases

    try:
        asyncio.run(_serve(settings))
    except (OSError, phrases.LibraryError) as err:
        raise click.ClickException(f"cannot start: {err}") from None


@main.group()
def token() -> None:
    """Manage bearer tokens."""


@token.command("create")
@click.option("--role", type=click.Choice(["agent", "admin", "auditor", "platform"]), required=True,
              help="agent: check/send/close; admin: everything; auditor: read-only; platform: webhooks only.")
@click.option("--agent", "agent_id", default=None, help="The agent's id or number (required for --role agent).")
@click.option("--tenant", default="default", show_default=True, help="The tenant the token acts for.")
@click.option("--ttl-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Expire the token after this many hours (default: never).")
@_data_dir
@_config
def token_create(role: str, agent_id: str | None, tenant: str, ttl_hours: float | None,
                 data_dir: Path | None, config_file: Path | None) -> None:
    """Create a bearer token and print it once (only its sha256 hash is stored).

    Example: assist token create --role agent --agent 1001 --tenant default --ttl-hours 12
    """
    from .auth import create_token
    from .state_sql import StateDB

    settings = _settings(data_dir=data_dir, config_file=config_file)
    if tenant not in settings.tenants:
        raise click.ClickException(
            f"tenant '{tenant}' is not configured; known tenants: {', '.join(sorted(settings.tenants))}")
    if role == "agent" and not agent_id:
        raise click.ClickException("--agent is required for --role agent (the greeting names the agent)")
    db = StateDB(settings.state_db)
    try:
        tok, principal = create_token(db, role=role, tenant=tenant, agent_id=agent_id, ttl_hours=ttl_hours,
                                      now=time.time())
    finally:
        db.close()
    expiry = "never" if principal.expires_at is None else time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime(principal.expires_at))
    click.echo(f"token id {principal.token_id}: role={role} tenant={tenant} agent={agent_id or '-'} "
               f"expires={expiry}. It is shown only this once.", err=True)
    click.echo(tok)


from .cli_audit import audit as _audit, report as _report  # noqa: E402  (registered after main exists)
from .cli_check import check as _check  # noqa: E402

main.add_command(_audit)
main.add_command(_check)
main.add_command(_report)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
