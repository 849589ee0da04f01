"""How long importing a season's events and building the report take (prints figures; not a test).

    python bench/events_bench.py [EVENTS]

A newsletter to ~1,000 families produces a few thousand events; 100,000 is a generous ceiling.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailroom.events.intake import import_events_file
from mailroom.events.report import build_report
from mailroom.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
SLUG = "2024-11-08-online-safety"
KINDS = ["processed", "delivered", "delivered", "open", "click", "deferred", "bounce", "unsubscribe"]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "school.toml").write_text((ROOT / "school.toml").read_text())
        (root / "assets").mkdir()
        (root / "assets" / "logo.png").write_bytes((ROOT / "assets" / "logo.png").read_bytes())
        (root / "newsletters" / SLUG).mkdir(parents=True)
        settings = load_settings(root, environ={})
        events = []
        for i in range(count):
            person = rng.randrange(count // 4 or 1)
            kind = rng.choice(KINDS)
            item = {"email": f"reader{person}@example.org", "timestamp": 1_731_060_000 + i, "event": kind,
                    "sg_event_id": f"ev-{i}", "sg_message_id": f"msg-{person}", "newsletter": SLUG,
                    "audience": "parents" if person % 5 else "staff", "recipient_id": f"r-{person}"}
            if kind == "click":
                item["url"] = f"https://www.oakfield.example.org/page{rng.randrange(12)}?utm_source=x"
            if kind == "bounce":
                item["type"] = "bounce"
            events.append(item)
        path = root / "events.json"
        path.write_text(json.dumps(events))
        size_mb = path.stat().st_size / 1e6

        start = time.perf_counter()
        result = import_events_file(settings.db_path, path)
        imported = time.perf_counter() - start

        # Memory is measured on a second, fresh database: tracemalloc slows everything down.
        tracemalloc.start()
        import_events_file(root / "memory.sqlite3", path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        start = time.perf_counter()
        again = import_events_file(settings.db_path, path)
        repeated = time.perf_counter() - start

        start = time.perf_counter()
        report = build_report(settings, root / "newsletters" / SLUG)
        reported = time.perf_counter() - start

    print(f"events:               {count:,} ({size_mb:.1f} MB of JSON)")
    print(f"import:               {imported:.2f} s ({count / imported:,.0f} events/s), "
          f"peak Python memory {peak / 1e6:.0f} MB; {result.suppressed:,} suppressed")
    print(f"import again (repeats): {repeated:.2f} s, {again.repeated:,} repeats, {again.stored} stored")
    print(f"report:               {reported:.2f} s for {len(report.audiences)} audiences, {len(report.links)} links")


if __name__ == "__main__":
    main()
