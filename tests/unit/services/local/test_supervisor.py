from __future__ import annotations

import sys
from pathlib import Path

from services.local.supervisor import CHILD_ENV, supervise

SCRIPT = """
import os, sys
from pathlib import Path
assert os.environ["{env}"] == "1"
count = Path(sys.argv[1])
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
sys.exit(3 if n < {crashes} else 0)
"""


def run(tmp_path: Path, crashes: int, max_restarts: int) -> tuple[int, int, list[str]]:
    script = tmp_path / "child.py"
    script.write_text(SCRIPT.format(env=CHILD_ENV, crashes=crashes))
    counter = tmp_path / "count"
    said: list[str] = []
    code = supervise([sys.executable, str(script), str(counter)], say=said.append,
                     restart_delay_s=0, max_restarts_per_minute=max_restarts)
    return code, int(counter.read_text()), said


def test_a_crashed_worker_is_started_again_until_it_exits_cleanly(tmp_path: Path) -> None:
    code, starts, said = run(tmp_path, crashes=2, max_restarts=10)
    assert (code, starts) == (0, 3)
    assert said == ["worker exited with 3; starting it again in 0 s"] * 2


def test_a_crash_loop_gives_up_with_the_exit_code(tmp_path: Path) -> None:
    code, starts, said = run(tmp_path, crashes=100, max_restarts=2)
    assert (code, starts) == (3, 3)
    assert said[-1] == "worker crashed 3 times within a minute; giving up (exit 3)"
