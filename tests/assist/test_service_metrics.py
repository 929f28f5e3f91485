"""GET /metrics: Prometheus text with requests, verdicts, violations, deliveries, outbox depth, latency."""

from __future__ import annotations

import asyncio

from conftest import Service
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_what_happened(svc: Service) -> None:
    agent, auditor = svc.token(), svc.token("auditor")
    await svc.call("POST", "/demo/customer/c1", token=agent, json_body={"text": "在吗"})
    await svc.call("POST", "/v1/check", token=agent, json_body={"text": "不知道"})
    await svc.call("POST", "/v1/check", token=agent, json_body={"text": "您好"})
    await svc.call("POST", "/v1/conversations/c1/replies", token=agent, json_body={"text": "你自己不会看呀"})
    await svc.call("POST", "/v1/conversations/c1/replies", token=agent, json_body={"text": "您好,在的"})
    await svc.call("POST", "/v1/check", token=agent, data=b"{")
    for _ in range(200):
        status, text, headers = await svc.call("GET", "/metrics", token=auditor)
        m = samples(text)
        delivered = m.get(("assist_deliveries_total", (("outcome", "delivered"), ("platform", "demo"))), 0)
        if delivered == 1 and m[("assist_outbox_depth", ())] == 0:
            break
        await asyncio.sleep(0.01)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert m[("assist_requests_total", (("method", "POST"), ("route", "/v1/check"), ("status", "200")))] == 2
    assert m[("assist_requests_total", (("method", "POST"), ("route", "/v1/check"), ("status", "400")))] == 1
    assert m[("assist_verdicts_total", (("action", "rewrite"), ("endpoint", "check")))] == 1
    assert m[("assist_verdicts_total", (("action", "pass"), ("endpoint", "check")))] == 1
    assert m[("assist_verdicts_total", (("action", "block"), ("endpoint", "send")))] == 1
    assert m[("assist_violations_total", (("action", "block"), ("category", "rhetorical_question")))] == 1
    assert m[("assist_violations_total", (("action", "rewrite"), ("category", "forbidden_phrase")))] == 1
    assert m[("assist_inbound_events_total", (("kind", "customer_message"), ("source", "demo")))] == 1
    assert m[("assist_outbox_depth", ())] == 0
    assert m[("assist_request_duration_seconds_count", (("route", "/v1/check"),))] == 3
    assert ("assist_request_duration_seconds_bucket", (("le", "0.005"), ("route", "/v1/check"))) in m
    assert ("assist_guard_check_seconds_count", ()) in m
