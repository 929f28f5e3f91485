"""Find a promised wait in a draft (请稍等, 请您稍等2分钟, 一分半钟) and its length in seconds.

Spec section 3: after "请稍等" with no time named the agent comes back within 1 minute; a named
wait sets the deadline to what was promised and may not exceed 3 minutes. Used by the guard (to
warn on a too-long promise) and by the conversation clock (to set the deadline).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .context import clause_bounds
from .normalize import fold

__all__ = ["WAIT_HINTS", "WAIT_WORDS", "WaitPromise", "find_wait", "find_wait_folded", "names_time", "parse_duration"]

# English words that ask the customer to wait (please wait 20 minutes, hold on … 1 hour).
_EN_WAIT_WORDS = ("wait", "hold on", "hang on", "please hold")
# A draft without any of these cannot promise a wait; one search skips the slower regexes. (Staying
# online, 别走开, promises a wait only with a length, and a length brings its unit.) The matching view
# has no spaces: hold on reads holdon there.
WAIT_WORDS = (
    "等", "候", "稍后", "分钟", "秒", "小时", "刻钟", "钟头", "min", "fen钟", "fenzhong", "hour",
    *(w.replace(" ", "") for w in _EN_WAIT_WORDS),
)
WAIT_HINTS = re.compile("|".join(WAIT_WORDS))

# Digits may be spaced apart to slip past a check (稍等1 0分钟 is ten minutes): up to two spaces between
# two digits join them.
# 个把 is "one or so" (个把钟头, about an hour).
_NUM = "[0-9](?: {0,2}[0-9])*|[零一二两三四五六七八九十百]+|半|个把"
# A lookahead for the first character of a number: regexes that start with a number and carry it
# skip ahead to candidate positions instead of trying the whole pattern at every character.
_AT_NUM = "(?=[0-9零一二两三四五六七八九十百半个])"
# Between the number and the unit: 二十来分钟, 十多分钟, 半个小时.
_APPROX = r"\s*(?:来|多)?\s*(?:个)?\s*"
# 个钟 / 个钟头 is the hour in Cantonese and colloquial Mandarin (半个钟, 两个钟头).
# Units typed in pinyin count too (30fen钟, 2xiaoshi).
_UNITS = r"小时|钟头|分钟|分|秒钟|秒|刻钟|刻|(?<=个)钟|fen钟|fenzhong|xiaoshi|minutes?|mins|min|hours?|hrs?|s|sec|secs"
_UNIT = r"(?:" + _UNITS + ")"
# A wait word, then (optionally, in the same clause) a duration: 请您稍等2分钟, 稍等 90 秒.
_WAIT = re.compile(
    r"(?:稍等|稍候|稍后|等一?下|等等|等一会儿?|等会儿|等会(?![员计议场所长])|等一等|等待|耐心等待|等我|等个|等上|先等)"
    r"(?:[^,!?;:。\n]{0,6}?(?P<after>(?:" + _NUM + r")" + _APPROX + _UNIT + r"(?:\s*半)?(?:钟)?))?"
)
# The same in English (please wait 20 minutes, hold on, about 1 hour), run only on drafts that hold
# one of its words: a Latin branch in _WAIT costs every Chinese draft a slower scan.
_WAIT_EN = re.compile(
    "(?:" + "|".join(_EN_WAIT_WORDS) + r")(?![a-z])"
    r"(?:[^,!?;:。\n]{0,6}?(?P<after>(?:" + _NUM + r")" + _APPROX + _UNIT + r"))?"
)
# A reply promised after a named length (I'll get back to you in about half an hour, give me ten
# minutes or so, expect to hear from me in roughly 25 minutes): English says the wait this way.
_EN_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10, "fifteen": 15, "twenty": 20,
    "thirty": 30, "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60, "half an": 0.5, "half a": 0.5, "a couple of": 2,
    "a few": 3,
}
_EN_NUM = "[0-9]+|" + "|".join(sorted(map(re.escape, _EN_NUMBERS), key=len, reverse=True))
_EN_LENGTH = r"(?P<n>" + _EN_NUM + r")\s*(?P<unit>minutes?|mins?|hours?|hrs?)(?![a-z])"
_EN_REPLY_WORDS = ("get back to you", "back to you", "reply", "respond", "hear from me", "ping you", "give me", "update you")
_EN_AFTER = re.compile(
    "(?:" + "|".join(_EN_REPLY_WORDS) + ")"
    r"[^.!?;\n]{0,20}?(?:in|within|for)?\s*(?:about|around|roughly|approximately|maybe)?\s*" + _EN_LENGTH
)
# The same length without its groups, for names_time.
_EN_LENGTH_HINT = re.compile(_EN_LENGTH.replace("(?P<n>", "(?:").replace("(?P<unit>", "(?:"))


def _english_wait(folded: str) -> WaitPromise | None:
    """A reply promised after an English length; None when there is none."""
    if not any(w in folded for w in _EN_REPLY_WORDS):
        return None
    m = _EN_AFTER.search(folded)
    if m is None:
        return None
    n = m.group("n")
    count = float(n) if n.isdigit() else _EN_NUMBERS[n]
    hours = m.group("unit").startswith("h")
    if hours and count > 2:
        return None  # reply within 24 hours: a follow-up promised, not a wait in the chat (as 24小时内给您回复)
    return WaitPromise(m.start(), m.end(), int(count * (3600 if hours else 60)))


# Words that promise a wait only with a duration right after them: 给我半个小时, 得等二十来分钟,
# 需要等十分钟 (a bare 需要 is about anything: 解冻大约需要12小时).
_TIMED = re.compile(
    r"(?:给我|得等|要等|需要等|等|候上|候个|候)\s*(?:多|再)?\s*(?:大概|大约|差不多|估计)?\s*"
    r"(?P<after>(?:" + _NUM + r")" + _APPROX + _UNIT + r"(?:\s*半)?(?:钟)?)"
)
_REPLY_WORDS = ("回复", "答复", "给您", "回您", "告诉您", "确认好", "处理好")
# A duration before a reply verb: 2分钟后回复您, 大约三分钟给您答复. Hours are left out: "24小时内
#给您回复" promises a follow-up, not a wait in the chat.
_BEFORE = re.compile(
    _AT_NUM + r"(?P<after>(?:" + _NUM + r")" + _APPROX + r"(?:分钟|分|秒钟|秒|刻钟)(?:\s*半)?(?:钟)?)"
    r"(?:左右|以内|之内)?(?:后|内)?[^,!?;:。\n]{0,4}?(?:" + "|".join(_REPLY_WORDS) + ")"
)
# Asking the customer to stay in the chat (您先别下线, 在线别走开, 在这个页面等我), or to do something else meanwhile
# (您先忙别的), with a length named anywhere in the
# same sentence promises that wait: 退费审核大概要半小时,您先在线别走开. Not after 不用/无需 (不用在线等).
_STAY = re.compile(
    r"别走开|别下线|不要走开|不要下线|别离开|先别走|别退出|别关窗口|在(?:线|这个页面|这个窗口|这儿|这里|这)等着?"
    # 您先忙别的: go and do something else meanwhile (得二十来分钟,您先忙别的).
    r"|先忙别的|先去忙别的|先忙您的|先忙你的"
)
# Checked in Python, not as lookbehinds: a pattern that opens with a lookbehind is tried at every
# character (8 us a draft); one that opens with its words skips ahead to them (1 us).
_NO_STAY_AFTER = ("不用", "无需", "不必", "我")
_VISIT = re.compile("送达|上门|派送|快递员|师傅|骑手|司机|到家|到达|到店")
# 感谢您的耐心等待 thanks the customer for a wait that is over; it promises none.
_THANKS = re.compile(r"感谢|谢谢|多谢|辛苦")
_SENTENCE_END = re.compile(r"[。!?\n]")
_SENTENCE_STOPS = frozenset("。!?\n")
_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


@dataclass(frozen=True, slots=True)
class WaitPromise:
    """A wait in the draft: where it is, and the seconds promised (None: no time named)."""

    start: int
    end: int
    seconds: int | None


def _number(token: str) -> float | None:
    if token == "半":
        return 0.5
    if token == "个把":
        return 1.0
    token = token.replace(" ", "")
    if token.isdigit():
        return float(token)
    total, current = 0, 0
    for ch in token:
        if ch in _DIGITS:
            current = _DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return float(total + current)


_DURATION = re.compile(_AT_NUM + r"(" + _NUM + r")" + _APPROX + r"(" + _UNITS + r")(\s*半)?")


def parse_duration(text: str) -> int | None:
    """Seconds in a duration like 2分钟, 两分钟, 半分钟, 90秒, 一分半钟, 1个小时; None if none."""
    m = _DURATION.search(text)
    if not m:
        return None
    n = _number(m.group(1))
    if n is None:
        return None
    unit = m.group(2)
    # 一刻钟 is a quarter of an hour.
    scale = (3600 if unit in ("小时", "钟头", "钟", "xiaoshi") or unit.startswith("h") else 900 if unit.startswith("刻")
             else 1 if unit.startswith(("秒", "s")) else 60)
    half = 0.5 * scale if m.group(3) else 0
    return int(n * scale + half)


# A number right before a unit of time: the cheap outline of every duration the regexes below can
# read (they are slower, so they run only where this finds something).
# One leading character class (an alternation for 个把 would double the search's cost).
_TIME_HINT = re.compile(r"[0-9零一二两三四五六七八九十百半个]把?[\s\x00来多个]*(?:小时|钟头|分|秒|刻|(?<=个)钟|fen|xiaoshi|min|s|sec|h)")


def names_time(folded: str) -> bool:
    """True when a number with a unit of time occurs: without one, no promised wait has a length."""
    if _TIME_HINT.search(folded) is not None:
        return True
    # half an hour, ten minutes: English numbers are words (looked for only where a unit is).
    return ("min" in folded or "h" in folded) and _EN_LENGTH_HINT.search(folded.replace("\x00", " ")) is not None


def find_wait(text: str) -> WaitPromise | None:
    """The first promised wait in `text`, with offsets into `text` itself."""
    return find_wait_folded(fold(text))


def find_wait_folded(folded: str, *, named: bool | None = None) -> WaitPromise | None:
    """find_wait on a text already folded (guards.normalize.fold), offsets unchanged.

    `named` is names_time(folded) when the caller has it already.
    """
    folded = folded.replace("\x00", " ")
    # Thanks before a wait word thank for a wait that is over (感谢您的耐心等待) unless a length follows it: 辛苦等我30分钟.
    m = next((w for w in _WAIT.finditer(folded)
              if w.group("after") or not _THANKS.search(folded, max(0, w.start() - 8), w.start())), None)
    if m is None and any(w in folded for w in _EN_WAIT_WORDS):
        m = _WAIT_EN.search(folded)
    if not (names_time(folded) if named is None else named):
        return WaitPromise(m.start(), m.end(), None) if m else None
    if m and m.group("after"):
        return WaitPromise(m.start(), m.end(), parse_duration(m.group("after")))
    english = _english_wait(folded)
    if english is not None:
        return english
    if m:
        # 稍等一下,大概需要5分钟: the length named later in the same sentence.
        stop = _SENTENCE_END.search(folded, m.end())
        d = _DURATION.search(folded, m.end(), stop.start() if stop else len(folded))
        if d:
            return WaitPromise(m.start(), d.end(), parse_duration(d.group()))
    # Each of the two needs a word of its own; substring tests spare most drafts the scan.
    timed_word = "等" in folded or "给我" in folded or "候" in folded
    reply_word = ("分" in folded or "秒" in folded) and any(w in folded for w in _REPLY_WORDS)
    for timed, present in ((_TIMED, timed_word), (_BEFORE, reply_word)):
        t = timed.search(folded) if present else None
        if t:
            return WaitPromise(t.start(), t.end(), parse_duration(t.group("after")))
    # 来回得二十来分钟,您在线等我: a length named before the request to stay counts too.
    stay = _STAY.search(folded)
    while stay is not None and folded.endswith(_NO_STAY_AFTER, 0, stay.start()):
        stay = _STAY.search(folded, stay.start() + 1)
    if stay is not None:
        lo, hi = clause_bounds(folded, stay.start(), stay.end(), stops=_SENTENCE_STOPS)
        d = _DURATION.search(folded, lo, hi)
        # 快递员30分钟后到,请别走开 asks the customer to be home for a visit, not to wait in the chat.
        if d and _VISIT.search(folded, lo, hi) is None:
            return WaitPromise(min(d.start(), stay.start()), max(d.end(), stay.end()), parse_duration(d.group()))
    return WaitPromise(m.start(), m.end(), None) if m else None
