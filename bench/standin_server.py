"""The SendGrid stand-in (tests/sendgrid_standin.py) in a process of its own, for the send benchmarks.

A separate process keeps the stand-in's own work (JSON parsing, schema checks, counting) out of the sender's
wall time on the same core as little as possible, and out of the sender's peak memory entirely.
Protocol on stdin/stdout, one line each: it prints {"url": ...}; each line "stats" read from stdin is answered
with the counts so far; "reset" clears them; end of input stops the server.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sendgrid_standin import SendGridStandIn  # noqa: E402


def main() -> None:
    api_key = sys.argv[1]
    with SendGridStandIn(api_key=api_key) as standin:
        standin.keep_bodies = False  # 100 requests of 1000 people each would otherwise sit in memory
        print(json.dumps({"url": standin.url}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                standin.received = Counter()
                standin.request_count = 0
                standin.violations.clear()
                standin.message_ids.clear()
            stats = {"requests": standin.request_count, "delivered": sum(standin.received.values()),
                     "people": len(standin.received), "violations": standin.violations[:5],
                     "violation_count": len(standin.violations)}
            print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
