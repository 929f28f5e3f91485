"""Auditor routes over real HTTP (create_app on a free port): list, filters, export, verify, reports."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import Service, assert_error

from assist.audit import AUDIT_STORE, AuditEvent

PHONE = "13812345678"


async def _conversation(svc: Service) -> str:
    agent = svc.token()
    status, body, _ = await svc.call("POST", "/demo/customer/c1", token=agent, json_body={"text": "在吗?我的快递到哪了"})
    assert status == 201, body
    for text in ("您的快递明天到,有问题请联系" + PHONE, "不知道", "没办法,快递停运了"):
        status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=agent, json_body={"text": text})
        assert status == 202, body
    return svc.token("auditor")


async def test_list_is_newest_first_masked_and_filterable(svc: Service) -> None:
    auditor = await _conversation(svc)
    status, body, _ = await svc.call("GET", "/v1/audit?limit=100", token=auditor)
    assert status == 200, body
    ids = [r["id"] for r in body["records"]]
    assert ids == sorted(ids, reverse=True) and body["next_cursor"] is None
    texts = json.dumps(body, ensure_ascii=False)
    assert PHONE not in texts and "138****5678" in texts

    status, body, _ = await svc.call("GET", "/v1/audit?kind=rewrite&agent=1001", token=auditor)
    assert [(r["kind"], r["original_text"], r["final_text"]) for r in body["records"]] == [
        ("rewrite", "不知道", "我帮您确认一下")]
    status, body, _ = await svc.call("GET", "/v1/audit?rule_id=t-no-way", token=auditor)
    assert {r["kind"] for r in body["records"]} == {"send"} and body["records"][0]["categories"] == ["passive_service"]
    status, body, _ = await svc.call("GET", "/v1/audit?category=forbidden_phrase", token=auditor)
    assert [r["kind"] for r in body["records"]] == ["rewrite"]
    # kind=send: the outbox delivers asynchronously, so a "delivery" record may or may not exist yet.
    status, body, _ = await svc.call("GET", "/v1/audit?kind=send&text=" + "快递停运", token=auditor)
    assert [r["final_text"] for r in body["records"]] == ["没办法,快递停运了"]
    status, body, _ = await svc.call("GET", "/v1/audit?text=快递&kind=customer_message", token=auditor)
    assert [r["original_text"] for r in body["records"]] == ["在吗?我的快递到哪了"]
    status, body, _ = await svc.call("GET", "/v1/audit?overridden=true", token=auditor)
    assert body["records"] == []


async def test_cursor_pages_cover_everything_once_while_records_arrive(svc: Service) -> None:
    store = svc.app[AUDIT_STORE]
    store.append_many([AuditEvent(tenant="default", kind="check", actor="agent:7", original_text=f"草稿{i}")
                       for i in range(45)])
    auditor = svc.token("auditor")
    seen: list[int] = []
    url = "/v1/audit?agent=7&limit=10"
    while True:
        status, body, _ = await svc.call("GET", url, token=auditor)
        assert status == 200, body
        seen += [r["id"] for r in body["records"]]
        store.append(AuditEvent(tenant="default", kind="check", actor="agent:7", original_text="新草稿"))
        if body["next_cursor"] is None:
            break
        url = f"/v1/audit?agent=7&limit=10&cursor={body['next_cursor']}"
    assert len(seen) == 45 and len(set(seen)) == 45 and seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        pytest.param("limit=0", 400, "invalid_query", id="limit-zero"),
        pytest.param("limit=abc", 400, "invalid_query", id="limit-nan"),
        pytest.param("since=last-tuesday", 400, "invalid_query", id="bad-time"),
        pytest.param("cursor=%21%21", 400, "invalid_query", id="bad-cursor"),
        pytest.param("colour=red", 400, "invalid_query", id="unknown-filter"),
        pytest.param("overridden=perhaps", 400, "invalid_query", id="bad-bool"),
        pytest.param("keep_original=true", 403, "originals_not_allowed", id="policy-masks"),
        pytest.param("tenant=acme", 403, "forbidden", id="other-tenant"),
        pytest.param("text=13812345678", 403, "masked_search", id="search-for-masked-phone"),
    ],
)
async def test_bad_queries_get_precise_errors(svc: Service, query: str, status: int, code: str) -> None:
    auditor = svc.token("auditor")
    got, body, _ = await svc.call("GET", f"/v1/audit?{query}", token=auditor)
    assert_error(got, body, status, code)


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/export", "/v1/audit/verify", "/v1/reports/agents"])
async def test_agents_and_anonymous_callers_are_refused(svc: Service, path: str) -> None:
    status, body, _ = await svc.call("GET", path, token=svc.token("agent"))
    assert_error(status, body, 403, "forbidden")
    status, body, _ = await svc.call("GET", path)
    assert_error(status, body, 401)


async def test_originals_where_the_tenant_keeps_them(start_service, library_file) -> None:
    svc = await start_service(tenants={"default": {"library_path": str(library_file), "keep_original_text": True}})
    auditor = await _conversation(svc)
    status, body, _ = await svc.call("GET", "/v1/audit?kind=send&keep_original=true", token=auditor)
    assert status == 200 and any(PHONE in (r["original_text"] or "") for r in body["records"])
    status, body, _ = await svc.call("GET", "/v1/audit?kind=send", token=auditor)
    assert not any(PHONE in (r["original_text"] or "") for r in body["records"])


async def test_csv_export_has_bom_and_the_query_rows(svc: Service) -> None:
    auditor = await _conversation(svc)
    svc.app[AUDIT_STORE].append_many([AuditEvent(tenant="default", kind="check", actor="agent:9",
                                                 original_text=f'=SUM(A1) "引号",逗号 {i}') for i in range(2500)])
    async with svc.session.get(svc.base_url + "/v1/audit/export?format=csv&agent=9",
                               headers={"Authorization": f"Bearer {auditor}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in resp.headers["Content-Disposition"]
        raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert len(rows) == 2500
    assert rows[0]["original_text"] == "'=SUM(A1) \"引号\",逗号 2499"  # formula neutralised, quoting intact
    assert [int(r["id"]) for r in rows] == sorted((int(r["id"]) for r in rows), reverse=True)
    local = datetime.fromisoformat(rows[0]["at"])
    assert local.utcoffset() == ZoneInfo("Asia/Shanghai").utcoffset(local.replace(tzinfo=None))
    status, body, _ = await svc.call("GET", "/v1/audit?kind=audit_export", token=auditor)
    assert body["records"][0]["details"]["filters"] == {"tenant": "default", "actor": "agent:9"}


async def test_jsonl_export_streams_every_record(svc: Service) -> None:
    auditor = await _conversation(svc)
    status, body, headers = await svc.call("GET", "/v1/audit/export?format=jsonl&kind=send", token=auditor)
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in body.splitlines()]
    assert [r["kind"] for r in lines] == ["send", "send"]
    assert all(PHONE not in (r["original_text"] or "") for r in lines)


async def test_export_rejects_an_unknown_format(svc: Service) -> None:
    status, body, _ = await svc.call("GET", "/v1/audit/export?format=xlsx", token=svc.token("auditor"))
    assert_error(status, body, 400, "invalid_query")


async def test_verify_route_names_the_tampered_record(svc: Service) -> None:
    auditor = await _conversation(svc)
    status, body, _ = await svc.call("GET", "/v1/audit/verify", token=auditor)
    assert status == 200 and body["ok"] is True and body["records"] >= 5
    conn = sqlite3.connect(svc.settings.audit_db)
    conn.execute("UPDATE audit SET final_text = '改过' WHERE tenant = 'default' AND seq = 3")
    conn.commit()
    conn.close()
    status, body, _ = await svc.call("GET", "/v1/audit/verify", token=auditor)
    assert status == 200 and body["ok"] is False
    problem = body["tenants"][0]["problem"]
    assert problem["kind"] == "changed" and problem["seq"] == 3


async def test_agent_report_route(svc: Service) -> None:
    await _conversation(svc)
    day = datetime.fromtimestamp(svc.clock.now(), ZoneInfo("Asia/Shanghai")).date().isoformat()
    auditor = svc.token("auditor")
    status, body, _ = await svc.call("GET", f"/v1/reports/agents?period=day&date={day}", token=auditor)
    assert status == 200, body
    [agent] = [a for a in body["agents"] if a["agent"] == "1001"]
    assert agent["metrics"]["customer_messages"] == 1
    assert agent["metrics"]["agent_messages"] == 3  # send, rewrite (sent rewritten), send with a warning
    assert agent["metrics"]["reply_rate"] == 1.0
    assert agent["violations"] == {"forbidden_phrase": 1, "passive_service": 1}
    assert body["period"] == "day" and body["date"] == day and "礼貌开始" in body["qa_items"]
    for query in ("period=year", "date=2026-13-01", "agent=1&colour=red"):
        status, err, _ = await svc.call("GET", f"/v1/reports/agents?{query}", token=auditor)
        assert_error(status, err, 400, "invalid_query")
