"""The SendGrid stand-in (tests/sendgrid_standin.py) in a process of its own, for the send benchmarks.

A separate process keeps the stand-in's own work (JSON parsing, schema checks, counting) off the sender's
CPU time and out of the sender's peak memory entirely.
Usage: python bench/standin_server.py API_KEY [DELAY_SECONDS] (a delay before every answer stands in for the
network round trip to SendGrid). Protocol on stdin/stdout, one line each: it prints {"url": ...}; each line
"stats" read from stdin is answered with the counts so far; "reset" clears them; end of input stops it.
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
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    with SendGridStandIn(api_key=api_key, delay=delay) as standin:
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
