"""A built-in demo platform, so a fresh `assist serve` shows the whole flow with nothing else running.

The service's /demo routes play the customer and show the transcript; this class is the
"platform" they talk to. Delivered messages are kept in <data_dir>/demo-platform.jsonl, so the
transcript survives a restart and delivery stays exactly-once (keyed by outbox id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .base import DeliveryReceipt, OutboundMessage

__all__ = ["DemoPlatform"]


class DemoPlatform:
    """An in-process chat platform: transcripts per (tenant, conversation), persisted as JSON lines."""

    name = "demo"

    def __init__(self, path: Path, *, clock: Callable[[], float]) -> None:
        self._path = path
        self._clock = clock
        self._transcripts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._delivered: dict[int, str] = {}
        self._count = 0
        self._file: Any = None
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._remember(json.loads(line))

    def _remember(self, entry: dict[str, Any]) -> None:
        self._count += 1
        self._transcripts.setdefault((entry["tenant"], entry["conversation_id"]), []).append(entry)
        if entry.get("outbox_id") is not None:
            self._delivered[int(entry["outbox_id"])] = entry["message_id"]

    def _append(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("a", encoding="utf-8")
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()  # the transcript survives a killed process
        self._remember(entry)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def transcript(self, tenant: str, cid: str) -> list[dict[str, Any]] | None:
        """Everything said in the conversation, oldest first; None if it never started."""
        return self._transcripts.get((tenant, cid))

    def customer_says(self, tenant: str, cid: str, text: str) -> dict[str, Any]:
        """Record a customer message and return its entry (with message_id and time)."""
        entry = {"tenant": tenant, "conversation_id": cid, "from": "customer", "text": text,
                 "at": self._clock(), "message_id": f"demo-{self._count + 1}", "outbox_id": None}
        self._append(entry)
        return entry

    async def deliver(self, message: OutboundMessage) -> DeliveryReceipt:
        if message.id in self._delivered:  # exactly once, even if asked twice
            return DeliveryReceipt(self._delivered[message.id])
        mid = f"demo-{self._count + 1}"
        self._append({"tenant": message.tenant, "conversation_id": message.conversation_id, "from": "agent",
                      "kind": message.kind, "text": message.text, "at": self._clock(),
                      "message_id": mid, "outbox_id": message.id})
        return DeliveryReceipt(mid)

    async def find_delivered(self, message: OutboundMessage) -> DeliveryReceipt | None:
        mid = self._delivered.get(message.id)
        return DeliveryReceipt(mid) if mid else None
