"""`assist audit query|export|verify` and `assist report`: the auditor's tools on the command line."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from .audit_query import QueryError

__all__ = ["audit", "report"]

_FILTERS = ("since", "until", "agent", "actor", "conversation_id", "kind", "action", "category", "rule_id",
            "overridden", "text")


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--tenant", default="default", show_default=True, help="Tenant whose log to read.")(fn)
    fn = click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                      default=None, help="A TOML or JSON settings file (env ASSIST_CONFIG_FILE).")(fn)
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Where audit.db lives (env ASSIST_DATA_DIR; default ./assist-data).")(fn)


def _filters(fn: Callable[..., Any]) -> Callable[..., Any]:
    helps = {
        "since": "From this time (ISO date/time in the tenant's zone, or epoch seconds).",
        "until": "Before this time.", "agent": "Agent id (as in the token).", "actor": "Exact actor, e.g. agent:1001.",
        "conversation_id": "Conversation id.", "kind": "Record kind: send, rewrite, block, override, check, ...",
        "action": "pass | warn | rewrite | block, or a refusal code.", "category": "Violation category.",
        "rule_id": "Rule id.", "overridden": "true or false.", "text": "Substring of the original or final text.",
    }
    for name in reversed(_FILTERS):
        fn = click.option(f"--{name.replace('_', '-')}", name, default=None, help=helps[name])(fn)
    return fn


def _open(data_dir: Path | None, config_file: Path | None, tenant: str) -> tuple[Any, Any, Any]:
    from .audit import AuditStore
    from .config import ConfigError, load_settings

    try:
        settings = load_settings(data_dir=data_dir, config_file=config_file)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    policy = settings.policy(tenant)
    if policy is None:
        raise click.ClickException(f"tenant '{tenant}' is not configured; known: {', '.join(sorted(settings.tenants))}")
    if not settings.audit_db.exists():
        raise click.ClickException(f"no audit log at {settings.audit_db}; is --data-dir right?")
    store = AuditStore(settings.audit_db, hmac_key=settings.audit_hmac_key.get_secret_value().encode(),
                       checkpoint_every=settings.audit_checkpoint_every)
    _relay_staged(settings, store)
    return settings, policy, store


def _relay_staged(settings: Any, store: Any) -> None:
    """Append records a stopped (or killed) service left staged in state.db, so none is missed."""
    if not settings.state_db.exists():
        return
    import sqlite3

    from .audit import AuditIntegrityError
    from .audit_relay import drain

    conn = sqlite3.connect(settings.state_db, isolation_level=None, timeout=30)
    try:
        drain(conn, store)
    except AuditIntegrityError as err:  # a tampered chain: report it (verify does), append nothing
        click.echo(f"warning: staged audit records not appended: {err}", err=True)
    finally:
        conn.close()


def _build_query(tenant: str, policy: Any, filters: dict[str, Any], **extra: Any) -> Any:
    from .audit import AuditQuery

    params = {k: v for k, v in filters.items() if v is not None}
    params.update({k: v for k, v in extra.items() if v is not None})
    try:
        return AuditQuery.from_params({**params, "tenant": tenant}, tz=policy.timezone)
    except QueryError as err:
        raise click.BadParameter(err.message, param_hint=f"--{err.field.replace('_', '-')}") from None


def _keep(policy: Any, keep_original: bool) -> bool:
    if keep_original and not policy.keep_original_text:
        raise click.ClickException("tenant policy masks customer data (keep_original_text is false)")
    return keep_original


@click.group()
def audit() -> None:
    """Query, export and verify the tamper-evident audit log."""


@audit.command("query")
@_common
@_filters
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", default=None, help="Cursor printed by the previous page.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--keep-original", is_flag=True, help="Unmasked texts (only if the tenant's policy keeps them).")
def query(data_dir: Path | None, config_file: Path | None, tenant: str, limit: int, cursor: str | None,
          as_json: bool, keep_original: bool, **filters: Any) -> None:
    """List records newest first; prints the next page's cursor on stderr.

    Example: assist audit query --data-dir ./assist-data --agent 1001 --kind block --since 2026-01-01 --limit 20
    """
    from .audit_export import iso, jsonl_rows

    _, policy, store = _open(data_dir, config_file, tenant)
    try:
        q = _build_query(tenant, policy, filters, limit=str(limit), cursor=cursor)
        page = store.query(q, keep_original=_keep(policy, keep_original))
    finally:
        store.close()
    tz = ZoneInfo(policy.timezone)
    if as_json:
        click.echo(jsonl_rows(page.records, tz), nl=False)
    for r in [] if as_json else page.records:
        text = (r.final_text or r.original_text or r.reason or "").replace("\n", " ")
        click.echo(f"{r.id:>8}  {iso(r.at, tz)[:19]}  {r.kind:<12} {r.actor or '-':<16} {r.conversation_id or '-':<12} "
                   f"{r.action or '-':<8} {','.join(r.rule_ids) or '-':<20} {text[:60]}")
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}", err=True)


@audit.command("export")
@_common
@_filters
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True), required=True,
              help="File to write ('-' for stdout).")
@click.option("--keep-original", is_flag=True, help="Unmasked texts (only if the tenant's policy keeps them).")
def export(data_dir: Path | None, config_file: Path | None, tenant: str, fmt: str, out: Path,
           keep_original: bool, **filters: Any) -> None:
    """Export every matching record as CSV (UTF-8 with BOM, opens in Excel) or JSON Lines, streamed.

    Example: assist audit export --data-dir ./assist-data --format csv --out audit.csv --since 2026-01-01
    """
    from .audit_export import csv_header, render

    _, policy, store = _open(data_dir, config_file, tenant)
    tz = ZoneInfo(policy.timezone)
    try:
        q = _build_query(tenant, policy, filters)
        keep = _keep(policy, keep_original)
        to_stdout = str(out) == "-"
        stream = sys.stdout if to_stdout else open(out, "w", encoding="utf-8", newline="")
        try:
            if fmt == "csv":
                stream.write(csv_header())
            total = 0 if to_stdout else store.count(q)
            with click.progressbar(length=total, label=f"exporting {total} records", file=sys.stderr,
                                   hidden=to_stdout or total < 5000) as bar:
                batch: list[Any] = []
                for rec in store.iter_query(q, keep_original=keep, page_size=1000):
                    batch.append(rec)
                    if len(batch) == 1000:
                        stream.write(render(fmt, batch, tz))
                        bar.update(len(batch))
                        batch = []
                stream.write(render(fmt, batch, tz))
                bar.update(len(batch))
        finally:
            if not to_stdout:
                stream.close()
    finally:
        store.close()
    if not to_stdout:
        click.echo(f"wrote {out}", err=True)


@audit.command("verify")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Where audit.db lives.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
@click.option("--tenant", default=None, help="Verify one tenant (default: every tenant in the log).")
def verify(data_dir: Path | None, config_file: Path | None, tenant: str | None) -> None:
    """Walk the hash chains; exit 1 naming the first record changed, deleted, inserted or reordered.

    Example: assist audit verify --data-dir ./assist-data
    """
    _, _, store = _open(data_dir, config_file, tenant or "default")
    try:
        rep = store.verify(tenant)
    finally:
        store.close()
    for t in rep.tenants:
        status = "ok" if t.ok else "FAILED"
        click.echo(f"{t.tenant}: {status}  {t.records} records, {t.checkpoints} checkpoints")
    rate = rep.records / rep.seconds if rep.seconds else 0
    click.echo(f"verified {rep.records} records in {rep.seconds:.2f} s ({rate:,.0f}/s)", err=True)
    bad = rep.first_problem
    if bad is not None:
        tenant_name, p = bad
        click.echo(f"first bad record: tenant {tenant_name}, {p.kind} at seq {p.seq}"
                   f"{f' (id {p.record_id})' if p.record_id else ''}: {p.message}", err=True)
        sys.exit(1)


@click.command()
@_common
@click.option("--period", type=click.Choice(["day", "week", "month"]), default="day", show_default=True)
@click.option("--date", "day", default=None, help="A day inside the period, YYYY-MM-DD (default: today).")
@click.option("--agent", default=None, help="Only this agent.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (UTF-8 with BOM) instead of a table.")
def report(data_dir: Path | None, config_file: Path | None, tenant: str, period: str, day: str | None,
           agent: str | None, as_csv: bool) -> None:
    """Per-agent QA report for a day, week or month (tenant time zone), with early warnings.

    Example: assist report --data-dir ./assist-data --period week --date 2026-01-05
    """
    import time

    from . import reports

    settings, policy, store = _open(data_dir, config_file, tenant)
    try:
        window = reports.period_window(period, day, tz=policy.timezone, now=time.time())
        result = reports.agent_reports(store, tenant=tenant, window=window, library=settings.library_for(tenant),
                                       agent=agent)
    except reports.ReportError as err:
        raise click.BadParameter(err.message, param_hint=f"--{err.field}") from None
    finally:
        store.close()
    click.echo(_report_text(result, as_csv=as_csv), nl=False)


_COLS = [("agent", "agent"), ("conversations", "conv"), ("customer_messages", "cust"), ("agent_messages", "sent"),
         ("first_response_s", "first_s"), ("avg_response_s", "avg_s"), ("reply_rate_30s", "30s_rate"),
         ("reply_rate", "reply"), ("slow_share", "slow"), ("answer_question_ratio", "答问比"),
         ("violations", "viol"), ("overrides", "overr"), ("reminders_missed", "missed"),
         ("greeting_share", "greet"), ("closing_share", "close"), ("qa_score_avg", "qa")]


def _report_text(result: Any, *, as_csv: bool) -> str:
    rows = []
    for a in result.agents:
        row = [a.agent] + ["" if a.metrics[k] is None else a.metrics[k] for k, _ in _COLS[1:]]
        rows.append(row + ["; ".join(f"{w['dimension']} {w['score']}: {', '.join(w['metrics'])}" for w in a.warnings)])
    header = [h for _, h in _COLS] + ["warnings"]
    if as_csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow([k for k, _ in _COLS] + ["warnings"])
        w.writerows(rows)
        return "\ufeff" + buf.getvalue()
    table = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = [f"QA report {result.window.period} from {result.window.first_day} ({result.window.timezone}), "
             f"tenant {result.tenant}"]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    if not result.agents:
        lines.append("(no records in this period)")
    return "\n".join(lines) + "\n"
