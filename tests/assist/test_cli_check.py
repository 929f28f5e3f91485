"""`assist check` from the command line, run as a real subprocess."""

import json
import subprocess
import sys

ASSIST = [sys.executable, "-m", "assist"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ASSIST, "check", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_readable_verdict_marks_the_span():
    out = run("你自己不会看吗")
    assert out.returncode == 0, out.stderr
    assert "BLOCK" in out.stdout and "⟦你自己不会看吗⟧" in out.stdout
    assert "rhetorical_question" in out.stdout


def test_jsonl_keeps_order_and_reports_bad_lines():
    lines = "\n".join([
        json.dumps({"text": "不 知 道"}, ensure_ascii=False),
        "{not json",
        json.dumps({"text": 5}),
        json.dumps({"text": "您好,很高兴为您服务。", "history": [{"role": "customer", "text": "在吗"}]}, ensure_ascii=False),
        json.dumps({"text": "好的", "history": [{"role": "boss", "text": "x"}]}),
    ])
    out = run("--jsonl", stdin=lines + "\n")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(rows) == 5
    assert rows[0]["action"] == "rewrite" and rows[0]["violations"][0]["start"] == 0
    assert rows[1]["error"]["details"] == [{"line": 2}]
    assert rows[2]["error"]["code"] == "invalid_line"
    assert rows[3]["action"] == "pass"
    assert "history" in rows[4]["error"]["message"]


def test_word_list_library(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# house list\n关我屁事\n", encoding="utf-8")
    out = run("--library", str(words), "这 关我屁事")
    assert "BLOCK" in out.stdout


def test_invalid_library_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"id": "x"}]}', encoding="utf-8")
    out = run("--library", str(bad), "你好")
    assert out.returncode != 0
    assert "rules.0.category" in out.stderr and "Traceback" not in out.stderr


def test_text_is_required_without_jsonl():
    out = run()
    assert out.returncode == 2 and "TEXT" in out.stderr
