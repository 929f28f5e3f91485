"""The audit store on a real SQLite file: chain, masking, secret scrubbing, filters, FTS, pagination."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assist.audit import AuditEvent, AuditQuery, AuditStore
from assist.audit_mask import mask_text, scrub_secrets
from assist.audit_query import QueryError, parse_time

KEY = b"test-audit-key"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path):
    s = AuditStore(tmp_path / "audit.db", hmac_key=KEY, checkpoint_every=5, clock=Clock())
    yield s
    s.close()


def _seed(store: AuditStore) -> list[int]:
    events = [
        AuditEvent(tenant="t1", kind="send", actor="a1", conversation_id="c1", action="pass",
                   original_text="您好,订单已经发货了", final_text="您好,订单已经发货了"),
        AuditEvent(tenant="t1", kind="rewrite", actor="a1", conversation_id="c1", action="rewrite",
                   rule_ids=("fp.dunno",), categories=("forbidden_phrase",),
                   original_text="我不知道,你自己查物流", final_text="这个问题我马上帮您确认一下"),
        AuditEvent(tenant="t1", kind="block", actor="a2", conversation_id="c2", action="block",
                   rule_ids=("contempt.01", "rq.02"), categories=("contempt", "rhetorical_question"),
                   original_text="你是不是看不懂中文啊"),
        AuditEvent(tenant="t1", kind="override", actor="a2", conversation_id="c2", action="warn",
                   rule_ids=("punct.01",), categories=("punctuation",), reason="客户要求",
                   original_text="好的!!!", details={"override_reason": "客户要求"}),
        AuditEvent(tenant="t2", kind="send", actor="b1", conversation_id="c9", action="pass",
                   original_text="退款申请已提交", final_text="退款申请已提交"),
        AuditEvent(tenant="t1", kind="customer_message", actor="a1", conversation_id="c1",
                   original_text="我要退款,退款申请在哪里"),
    ]
    return store.append_many(events)


def test_chain_verifies_with_checkpoints_per_tenant(store):
    _seed(store)
    store.append_many([AuditEvent(tenant="t1", kind="check", original_text=f"第{i}条") for i in range(12)])
    report = store.verify()
    assert report.ok, report.to_dict()
    by = {t.tenant: t for t in report.tenants}
    assert by["t1"].records == 17 and by["t1"].checkpoints == 3  # seq 5, 10, 15
    assert by["t2"].records == 1 and by["t2"].checkpoints == 0
    assert store.verify("t2").records == 1


def test_seq_is_contiguous_per_tenant_and_ids_returned_in_order(store):
    ids = _seed(store)
    assert ids == sorted(ids) and len(set(ids)) == 6
    rows = sqlite3.connect(store.path).execute("SELECT tenant, seq FROM audit ORDER BY id").fetchall()
    assert [s for t, s in rows if t == "t1"] == [1, 2, 3, 4, 5]
    assert [s for t, s in rows if t == "t2"] == [1]


def test_records_are_durable_settings(store):
    conn = store.backend._w
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        pytest.param("我的电话是13812345678", "我的电话是138****5678", id="phone"),
        pytest.param("电话 138-1234-5678 谢谢", "电话 138****5678 谢谢", id="phone-dashes"),
        pytest.param("12345678901", "12345678901", id="not-a-mobile-prefix"),
        pytest.param("身份证11010519491231002X", "身份证110105********002X", id="id-card-x"),
        pytest.param("卡号6222021234567890123", "卡号***************0123", id="card-19"),
        pytest.param("卡号 6222 0212 3456 7890", "卡号 ************7890", id="card-spaced"),
        pytest.param("寄到浙江省杭州市西湖区文三路90号", "寄到**省**市**区**路**号", id="address-full"),
        pytest.param("地址:建国路88号", "地址:**路**号", id="address-street-number"),
        pytest.param("我们在市场上很受欢迎,号码是多少", "我们在市场上很受欢迎,号码是多少", id="not-an-address"),
        pytest.param("订单号123456", "订单号123456", id="order-number-kept"),
    ],
)
def test_mask_text(text, masked):
    assert mask_text(text) == masked


def test_masked_by_default_original_on_request(store):
    store.append(AuditEvent(tenant="t1", kind="send", original_text="电话13812345678",
                            final_text="寄到杭州市西湖区", details={"note": "卡6222021234567890123"}))
    [masked] = store.query(AuditQuery(tenant="t1")).records
    assert masked.original_text == "电话138****5678"
    assert masked.final_text == "寄到**市**区"
    assert masked.details == {"note": "卡***************0123"}
    [plain] = store.query(AuditQuery(tenant="t1"), keep_original=True).records
    assert plain.original_text == "电话13812345678" and plain.final_text == "寄到杭州市西湖区"
    assert store.verify().ok  # the chain covers the originals, masking is read-side only


def test_tokens_never_stored(store):
    token = "tok_Q2hhdHdvb3RBY2Nlc3NUb2tlbkV4YW1wbGUxMjM0NTY3"
    store.append(AuditEvent(tenant="t1", kind="refused", reason=f"Authorization: Bearer {token}",
                            original_text=f"my key is {token}", details={"header": f"Bearer {token}"}))
    raw = b"".join(p.read_bytes() for p in store.path.parent.iterdir())
    assert token.encode() not in raw
    [rec] = store.query(AuditQuery(tenant="t1"), keep_original=True).records
    assert "[redacted]" in rec.reason and "[redacted]" in rec.original_text
    assert scrub_secrets("uuid 550e8400e29b41d4a716446655440000 stays") == "uuid 550e8400e29b41d4a716446655440000 stays"


def _ids(store, **filters):
    return [r.id for r in store.query(AuditQuery(**filters), keep_original=True).records]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"tenant": "t1"}, [6, 4, 3, 2, 1], id="tenant"),
        pytest.param({"tenant": "t2"}, [5], id="other-tenant"),
        pytest.param({}, [6, 5, 4, 3, 2, 1], id="no-filter"),
        pytest.param({"tenant": "t1", "actor": "a2"}, [4, 3], id="actor"),
        pytest.param({"tenant": "t1", "conversation_id": "c1"}, [6, 2, 1], id="conversation"),
        pytest.param({"tenant": "t1", "kind": "block"}, [3], id="kind"),
        pytest.param({"tenant": "t1", "action": "rewrite"}, [2], id="action"),
        pytest.param({"tenant": "t1", "category": "contempt"}, [3], id="category"),
        pytest.param({"category": "punctuation"}, [4], id="category-no-tenant"),
        pytest.param({"tenant": "t1", "rule_id": "rq.02"}, [3], id="rule"),
        pytest.param({"rule_id": "fp.dunno"}, [2], id="rule-no-tenant"),
        pytest.param({"tenant": "t1", "rule_id": "rq.02", "category": "contempt"}, [3], id="rule-and-category"),
        pytest.param({"tenant": "t1", "rule_id": "rq.02", "category": "punctuation"}, [], id="rule-wrong-category"),
        pytest.param({"tenant": "t1", "overridden": True}, [4], id="overridden"),
        pytest.param({"tenant": "t1", "overridden": False}, [6, 3, 2, 1], id="not-overridden"),
        pytest.param({"tenant": "t1", "since": T0 + 2, "until": T0 + 4}, [3, 2], id="time-range"),
        pytest.param({"tenant": "t1", "actor": "a1", "kind": "send"}, [1], id="combined"),
        pytest.param({"tenant": "t1", "text": "退款申请"}, [6], id="fts-chinese-substring"),
        pytest.param({"text": "退款申请"}, [6, 5], id="fts-all-tenants"),
        pytest.param({"tenant": "t1", "text": "看不懂中"}, [3], id="fts-inside-word"),
        pytest.param({"tenant": "t1", "text": "马上帮您确认"}, [2], id="fts-final-text"),
        pytest.param({"tenant": "t1", "text": "退款"}, [6], id="two-chars-like"),
        pytest.param({"tenant": "t1", "text": "!"}, [4], id="one-char-like"),
        pytest.param({"tenant": "t1", "text": "100%"}, [], id="like-wildcards-escaped"),
        pytest.param({"tenant": "t1", "text": '"发货'}, [], id="fts-quote-safe"),
    ],
)
def test_query_filters(store, filters, expected):
    _seed(store)
    assert _ids(store, **filters) == expected


def test_cursor_pagination_is_stable_while_appending(store):
    store.append_many([AuditEvent(tenant="t1", kind="send", actor="a1", original_text=f"消息{i}") for i in range(23)])
    seen: list[int] = []
    q = AuditQuery(tenant="t1", actor="a1", limit=5)
    while True:
        page = store.query(q)
        seen += [r.id for r in page.records]
        # Concurrent writers add newer records between pages; they must not shift later pages.
        store.append_many([AuditEvent(tenant="t1", kind="send", actor="a1", original_text="新的")] * 3)
        if page.next_cursor is None:
            break
        q = q.replace(cursor=page.next_cursor)
    assert seen == list(range(23, 0, -1))


def test_iter_query_walks_every_page(store):
    store.append_many([AuditEvent(tenant="t1", kind="check")] * 1234)
    assert [r.id for r in store.iter_query(AuditQuery(tenant="t1"), page_size=100)] == list(range(1234, 0, -1))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": "0"}, "limit", id="limit-zero"),
        pytest.param({"limit": "ten"}, "limit", id="limit-nan"),
        pytest.param({"since": "yesterday"}, "since", id="bad-time"),
        pytest.param({"since": "2026-01-02", "until": "2026-01-01"}, "since", id="range-reversed"),
        pytest.param({"overridden": "maybe"}, "overridden", id="bad-bool"),
        pytest.param({"cursor": "not-a-cursor"}, "cursor", id="bad-cursor"),
        pytest.param({"colour": "red"}, "colour", id="unknown-filter"),
    ],
)
def test_bad_query_parameters_name_the_field(params, field):
    with pytest.raises(QueryError) as err:
        AuditQuery.from_params(params)
    assert err.value.field == field


def test_query_params_parse_times_in_tenant_zone():
    q = AuditQuery.from_params({"since": "2026-01-01", "until": "2026-01-01T12:00:00+00:00", "overridden": "true"},
                               tz="Asia/Shanghai")
    assert q.since == T0 - 8 * 3600 and q.until == T0 + 12 * 3600 and q.overridden is True
    assert parse_time("1767225600") == T0


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(AuditEvent(tenant="", kind="send"), id="empty-tenant"),
        pytest.param(AuditEvent(tenant="t1", kind=""), id="empty-kind"),
        pytest.param(AuditEvent(tenant="t1", kind="send", original_text=12), id="text-not-str"),  # type: ignore[arg-type]
    ],
)
def test_invalid_events_are_refused_and_nothing_is_written(store, event):
    with pytest.raises((ValueError, TypeError)):
        store.append_many([AuditEvent(tenant="t1", kind="send"), event])
    assert store.query(AuditQuery()).records == []


def test_full_text_index_trails_the_log_and_searches_stay_exact(store):
    ids = store.append_many([AuditEvent(tenant="t1", kind="send", original_text=f"第{i}号蓝牙耳机退货") for i in range(30)])
    assert store.backend.fts_indexed() == 0  # fewer than FTS_BATCH waiting: not indexed yet
    q = AuditQuery(tenant="t1", text="号蓝牙耳机", limit=100)
    assert [r.id for r in store.query(q).records] == ids[::-1]  # found by scanning the tail
    assert store.index_texts() == 30 and store.backend.fts_indexed() == ids[-1]
    more = store.append_many([AuditEvent(tenant="t1", kind="send", original_text="新的蓝牙耳机订单")])
    # Now the FTS candidates drive the query, and the unindexed newest record still shows.
    candidates, high = store.backend._candidates("蓝牙耳机")
    assert sorted(candidates) == ids and high == ids[-1]
    assert [r.id for r in store.query(q.replace(text="蓝牙耳机")).records] == more + ids[::-1]
    assert store.query(q.replace(text="耳机退货号")).records == []  # trigrams all present, substring not


def test_appends_index_texts_once_a_batch_is_waiting(store):
    from assist.audit_sql import FTS_BATCH

    store.append_many([AuditEvent(tenant="t1", kind="send", original_text="大批量的记录")] * (FTS_BATCH + 5))
    assert store.backend.fts_indexed() == FTS_BATCH + 5


def test_actor_and_kind_spans_follow_out_of_order_times(store):
    store.append_many([AuditEvent(tenant="t1", kind="send", actor="agent:x", at=T0 + 5000)])
    store.append_many([AuditEvent(tenant="t1", kind="send", actor="agent:x", at=T0 + 10),  # an older event, late
                       AuditEvent(tenant="t1", kind="note", actor="agent:y", at=T0 + 9000)])
    assert [r.at for r in store.query(AuditQuery(tenant="t1", actor="agent:x")).records] == [T0 + 5000, T0 + 10]
    assert [r.at for r in store.query(AuditQuery(tenant="t1", kind="note")).records] == [T0 + 9000]
    assert store.query(AuditQuery(tenant="t1", actor="agent:nobody")).records == []
    assert store.query(AuditQuery(tenant="t2", actor="agent:x")).records == []


@pytest.mark.parametrize(
    ("filters", "plan"),
    [
        pytest.param({"tenant": "t1"}, "USING INDEX audit_time (tenant=?)", id="tenant"),
        pytest.param({"tenant": "t1", "conversation_id": "c1"}, "USING INDEX audit_conv", id="conversation"),
        pytest.param({"tenant": "t1", "actor": "a1"}, "USING INDEX audit_time (tenant=? AND at_us>? AND at_us<?)", id="actor-span"),
        pytest.param({"tenant": "t1", "kind": "send"}, "USING INDEX audit_time (tenant=? AND at_us>? AND at_us<?)", id="kind-span"),
        pytest.param({"tenant": "t1", "rule_id": "r1"}, "SEARCH t USING PRIMARY KEY", id="rule-tag"),
        pytest.param({"tenant": "t1", "overridden": True}, "USING INDEX audit_overridden", id="overridden"),
    ],
)
def test_each_filter_reads_an_index_not_the_table(store, filters, plan):
    """Latency is measured in bench/audit.py; this guards the plans that make it (no full scans)."""
    _seed(store)
    steps = store.backend.explain(AuditQuery(**filters).where(), after=None, limit=51)
    assert plan in steps[0], steps
    assert not any(s.startswith("SCAN a") for s in steps), steps


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Bearer ", "token=", "API-Key: ", "password='", "secret ", "ast_0123abcd_",
                                 "x" * 45, "a1" * 20, "订单", "号", " ", ":", "_", "-", "q", "7"]), max_size=30))
def test_secret_prefilter_never_skips_what_the_patterns_would_catch(parts: list[str]) -> None:
    """scrub_secrets' cheap scans only skip texts that none of its three patterns would change."""
    from assist import audit_mask as m

    text = "".join(parts)
    full = m._SERVICE_TOKEN.sub("[redacted]", text)
    full = m._BEARER.sub(lambda x: f"{x.group(1)}{x.group(2)}[redacted]", full)
    full = m._OPAQUE.sub("[redacted]", full)
    assert m.scrub_secrets(text) == (full if len(text) >= 14 and m._LATIN.search(text) else text)
