"""Run a Python script and report its peak resident memory and CPU time: python bench/peak.py OUT.json SCRIPT [ARGS...].

The peak is VmHWM of this process (/proc/self/status), which starts afresh at exec; the parent's
ru_maxrss for a child would instead start from the parent's own size at fork, hiding the child's.
The CPU time is this process's own user + system seconds (os.times), so a server it talks to (the
SendGrid stand-in runs as another process) is never counted in it.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path


def vm_hwm_mb() -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    out, script, *rest = sys.argv[1:]
    sys.argv = [script, *rest]
    sys.path[0] = str(Path(script).resolve().parent)
    code: int | str | None = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    finally:
        times = os.times()
        Path(out).write_text(json.dumps({"peak_rss_mb": vm_hwm_mb(), "cpu_seconds": times.user + times.system}))
    sys.exit(code)


if __name__ == "__main__":
    main()
