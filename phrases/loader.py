"""Load a phrase library: the packaged default, a library file, or a plain word list.

`load_library()` returns the default zh-CN library (one JSON file per category under
`phrases/defaults/`). `load_library(path)` takes a whole library as JSON, a folder laid out like
the defaults, or a `.txt` word list (one phrase per line, `#` comments) which is added to the
default library as `forbidden_phrase` rules, since contact centres already keep such lists.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .schema import Library

__all__ = ["LibraryError", "library_from_data", "load_library", "load_default_data", "word_list_rules"]

# A word list names phrases only; they get the spec's default treatment of 服务禁语.
_WORD_LIST_TEMPLATE = "wordlist-polite"
_WORD_LIST_TEXT = "这个问题我马上帮您确认一下,请您稍等。"


class LibraryError(ValueError):
    """A library that does not validate; `problems` lists every one with its location."""

    def __init__(self, source: str, problems: list[dict[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p['loc']}: {p['msg']}" for p in problems)
        super().__init__(f"invalid phrase library {source}: {len(problems)} problem(s)\n{lines}")


_NAMED = re.compile(r"^(?:Value error, )?(rule|template) '([^']+)': ")


def _split(loc: str, msg: str) -> list[dict[str, str]]:
    """One problem per clause of a cross-entry message, located at the entry it names."""
    out = []
    for part in msg.removeprefix("Value error, ").split("; "):
        m = _NAMED.match(part)
        where = f"{m.group(1)}s[{m.group(2)}]" if m and not loc else loc
        out.append({"loc": where or "library", "msg": part})
    return out


def _problems(err: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for e in err.errors():
        loc = ".".join(str(part) for part in e["loc"])
        out += _split(f"{prefix}{'.' if prefix and loc else ''}{loc}", e["msg"])
    return out


def _merge(parts: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[int, str]]:
    """Merge per-file dicts; remember which file each rule came from for error locations."""
    merged: dict[str, Any] = {"rules": [], "templates": [], "contexts": []}
    origin: dict[int, str] = {}
    for name, data in parts:
        for key, value in data.items():
            if key in ("rules", "templates", "contexts"):
                if key == "rules":
                    for i in range(len(value)):
                        origin[len(merged["rules"]) + i] = f"{name}:rules.{i}"
                merged[key].extend(value)
            else:
                merged[key] = value
    return merged, origin


def library_from_data(data: dict[str, Any], *, source: str = "<data>") -> Library:
    """Validate a library given as plain data; raise LibraryError listing every problem."""
    try:
        return Library.model_validate(data)
    except ValidationError as err:
        raise LibraryError(source, _problems(err, "")) from None


def load_default_data() -> dict[str, Any]:
    """The default library as plain data (merged from every file under phrases/defaults/)."""
    folder = resources.files("phrases") / "defaults"
    parts = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            parts.append((entry.name, json.loads(entry.read_text(encoding="utf-8"))))
    merged, _ = _merge(parts)
    return merged


def _load_folder(folder: Path) -> Library:
    parts = []
    problems: list[dict[str, str]] = []
    for f in sorted(folder.glob("*.json")):
        try:
            parts.append((f.name, json.loads(f.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            problems.append({"loc": f.name, "msg": f"not readable JSON: {err}"})
    if problems:
        raise LibraryError(str(folder), problems)
    merged, origin = _merge(parts)
    try:
        return Library.model_validate(merged)
    except ValidationError as err:
        out = []
        for e in err.errors():
            loc = list(e["loc"])
            where = ".".join(str(p) for p in loc)
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                where = ".".join([origin.get(loc[1], f"rules.{loc[1]}"), *map(str, loc[2:])])
            out += _split(where, e["msg"])
        raise LibraryError(str(folder), out) from None


def word_list_rules(lines: list[str], *, source: str) -> list[dict[str, Any]]:
    """Turn a word list into one `forbidden_phrase` rule per phrase (rewrite to a polite line)."""
    rules = []
    for n, raw in enumerate(lines, start=1):
        phrase = raw.split("#", 1)[0].strip()
        if not phrase:
            continue
        digest = hashlib.sha1(phrase.encode("utf-8")).hexdigest()[:10]
        rules.append(
            {
                "id": f"wordlist-{digest}",
                "category": "forbidden_phrase",
                "severity": "fatal",
                "action": "block",
                "source": f"{source}:{n}",
                "phrases": [phrase],
                "suggest": [_WORD_LIST_TEMPLATE],
            }
        )
    # The same phrase twice in a list is one rule.
    unique = {r["id"]: r for r in rules}
    return list(unique.values())


def load_library(path: str | Path | None = None) -> Library:
    """The default library, or the library at `path` (JSON file, folder, or `.txt` word list)."""
    if path is None:
        folder = resources.files("phrases") / "defaults"
        return _load_folder(Path(str(folder)))
    p = Path(path)
    if not p.exists():
        raise LibraryError(str(p), [{"loc": str(p), "msg": "no such file or folder"}])
    if p.is_dir():
        return _load_folder(p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LibraryError(str(p), [{"loc": p.name, "msg": f"not readable as UTF-8 text: {err}"}]) from None
    if p.suffix.lower() == ".txt":
        data = load_default_data()
        data["rules"].extend(word_list_rules(text.splitlines(), source=p.name))
        if not any(t["id"] == _WORD_LIST_TEMPLATE for t in data["templates"]):
            data["templates"].append(
                {"id": _WORD_LIST_TEMPLATE, "situation": "word-list phrase blocked", "text": _WORD_LIST_TEXT}
            )
        return library_from_data(data, source=str(p))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LibraryError(
            str(p), [{"loc": f"{p.name}:{err.lineno}:{err.colno}", "msg": f"invalid JSON: {err.msg}"}]
        ) from None
    if not isinstance(data, dict):
        raise LibraryError(str(p), [{"loc": p.name, "msg": "a library file must hold a JSON object"}])
    return library_from_data(data, source=str(p))
