"""Child process of the kill -9 test: appends through AuditWriter forever, printing each acked id.

An id is printed only after `await writer.append()` returned, i.e. after its COMMIT; the parent
kills this process with SIGKILL mid-stream and then checks every printed id is in the store.
"""

from __future__ import annotations

import asyncio
import sys

from assist.audit import AuditEvent, AuditStore, AuditWriter


async def main(path: str, workers: int) -> None:
    store = AuditStore(path, hmac_key=b"kill-test-key", checkpoint_every=50)
    writer = AuditWriter(store)
    await writer.start()
    out = sys.stdout

    async def worker(n: int) -> None:
        i = 0
        while True:
            i += 1
            rid = await writer.append(AuditEvent(tenant=f"t{n % 3}", kind="send", actor=f"a{n}",
                                                 conversation_id=f"c{n}", original_text=f"第{i}条", final_text=f"第{i}条"))
            out.write(f"{rid}\n")
            out.flush()

    await asyncio.gather(*(worker(n) for n in range(workers)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
