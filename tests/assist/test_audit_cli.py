"""`assist audit query|export|verify` and `assist report` on a real data directory."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from assist.audit import AuditEvent, AuditStore
from assist.cli import main

KEY = "cli-test-key"


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    store = AuditStore(d / "audit.db", hmac_key=KEY.encode(), checkpoint_every=100)
    at = datetime(2026, 1, 5, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    events = []
    for i in range(300):
        events.append(AuditEvent(tenant="default", kind="customer_message", actor="platform:demo",
                                 conversation_id=f"c{i}", original_text=f"我的订单{i}什么时候发货,电话13812345678", at=at + i * 60))
        events.append(AuditEvent(tenant="default", kind="send", actor=f"agent:{i % 3}", conversation_id=f"c{i}",
                                 action="pass", original_text="您好,已经发货了", final_text="您好,已经发货了",
                                 at=at + i * 60 + 20))
    events.append(AuditEvent(tenant="default", kind="block", actor="agent:1", conversation_id="c1", action="block",
                             rule_ids=("rq-told-you",), categories=("rhetorical_question",),
                             original_text="我不是说过了吗", at=at + 30))
    store.append_many(events)
    store.close()
    return d


def run(*args: str):
    return CliRunner().invoke(main, list(args), env={"ASSIST_AUDIT_HMAC_KEY": KEY},
                                              catch_exceptions=False)


def test_query_prints_newest_first_and_masks(data_dir):
    res = run("audit", "query", "--data-dir", str(data_dir), "--kind", "customer_message", "--limit", "3")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3 and "订单299" in lines[0] and "订单297" in lines[2]
    assert "13812345678" not in res.stdout and "138****5678" in res.stdout
    assert "--cursor" in res.stderr
    cursor = res.stderr.split("--cursor ")[1].split()[0]
    res = run("audit", "query", "--data-dir", str(data_dir), "--kind", "customer_message", "--limit", "3",
              "--cursor", cursor, "--json")
    assert [json.loads(x)["original_text"][:7] for x in res.stdout.splitlines()] == ["我的订单296", "我的订单295", "我的订单294"]


def test_query_filters_and_bad_options(data_dir):
    res = run("audit", "query", "--data-dir", str(data_dir), "--rule-id", "rq-told-you", "--json")
    assert [json.loads(x)["kind"] for x in res.stdout.splitlines()] == ["block"]
    res = run("audit", "query", "--data-dir", str(data_dir), "--text", "发货", "--agent", "2", "--json")
    assert {json.loads(x)["actor"] for x in res.stdout.splitlines()} == {"agent:2"}
    res = run("audit", "query", "--data-dir", str(data_dir), "--since", "tomorrow")
    assert res.exit_code == 2 and "--since" in res.stderr
    res = run("audit", "query", "--data-dir", str(data_dir / "nowhere"))
    assert res.exit_code == 1 and "no audit log" in res.stderr


def test_export_csv_with_bom_and_jsonl(data_dir, tmp_path):
    out = tmp_path / "out.csv"
    res = run("audit", "export", "--data-dir", str(data_dir), "--format", "csv", "--out", str(out), "--kind", "send")
    assert res.exit_code == 0, res.stderr
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert len(rows) == 300 and {r["kind"] for r in rows} == {"send"}
    assert rows[0]["at"].startswith("2026-01-05T14:59:20") and rows[0]["at"].endswith("+08:00")
    out = tmp_path / "out.jsonl"
    res = run("audit", "export", "--data-dir", str(data_dir), "--format", "jsonl", "--out", str(out),
              "--since", "2026-01-05T14:00", "--until", "2026-01-05T15:00", "--kind", "customer_message")
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["original_text"][:7] for r in lines[:2]] == ["我的订单299", "我的订单298"] and len(lines) == 60


def test_verify_exit_codes_and_first_bad_record(data_dir):
    res = run("audit", "verify", "--data-dir", str(data_dir))
    assert res.exit_code == 0 and "default: ok  601 records, 6 checkpoints" in res.stdout
    conn = sqlite3.connect(data_dir / "audit.db")
    conn.execute("DELETE FROM audit WHERE tenant = 'default' AND seq = 42")
    conn.commit()
    conn.close()
    res = run("audit", "verify", "--data-dir", str(data_dir))
    assert res.exit_code == 1
    assert "first bad record: tenant default, deleted at seq 42" in res.stderr


def test_report_table_and_csv(data_dir, tmp_path):
    res = run("report", "--data-dir", str(data_dir), "--period", "day", "--date", "2026-01-05")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("QA report day from 2026-01-05 (Asia/Shanghai)")
    assert [line.split()[0] for line in lines[2:]] == ["0", "1", "2"]
    res = run("report", "--data-dir", str(data_dir), "--date", "2026-01-05", "--csv", "--agent", "1")
    rows = list(csv.DictReader(io.StringIO(res.stdout.lstrip("\ufeff"))))
    assert len(rows) == 1 and rows[0]["agent"] == "1"
    assert rows[0]["customer_messages"] == "100" and rows[0]["agent_messages"] == "100"
    assert rows[0]["first_response_s"] == "20.0" and rows[0]["reply_rate_30s"] == "1.0"
    assert rows[0]["violations"] == "1"
    res = run("report", "--data-dir", str(data_dir), "--date", "05/01/2026")
    assert res.exit_code == 2 and "--date" in res.stderr
