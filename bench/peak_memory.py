"""Run a Python script and write its own peak memory (VmHWM, in kB) to a file when it exits.

Why not ru_maxrss from wait4: on Linux a child's ru_maxrss starts from its parent's size at fork/exec,
so a benchmark parent holding a busy stand-in server inflates every child's figure.

    python bench/peak_memory.py OUT_FILE SCRIPT [ARGS...]
"""

import atexit
import runpy
import sys
from pathlib import Path

out_file, script = Path(sys.argv[1]), sys.argv[2]
sys.argv = sys.argv[2:]


def _write_peak() -> None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out_file.write_text(line.split()[1])


atexit.register(_write_peak)
sys.path[0] = str(Path(script).resolve().parent)
runpy.run_path(script, run_name="__main__")
