"""Run a worker in a child process and start it again when it crashes.

Why: when Faust's exactly-once recovery finds its in-memory table ahead of the changelog (its
own uncommitted writes, seen across a second rebalance in one process) it stops the worker
rather than go on with state Kafka never committed. A fresh process rebuilds the table from the
committed changelog, so restarting is the consistent answer — what systemd or Kubernetes would
do, but built in so that `streamlearn join` alone is enough.

The child dies with its supervisor (``PR_SET_PDEATHSIG``), so killing the supervisor, even with
SIGKILL, never leaves a worker behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess  # noqa: S404 - starting our own worker is the point
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

CHILD_ENV = "STREAMLEARN_SUPERVISED_CHILD"
PR_SET_PDEATHSIG = 1


def is_child() -> bool:
    """True inside the worker process a supervisor started."""
    return os.environ.get(CHILD_ENV) == "1"


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def supervise(
    argv: Sequence[str],
    say: Callable[[str], None] = print,
    restart_delay_s: float = 1.0,
    max_restarts_per_minute: int = 10,
) -> int:
    """Run ``argv`` (with the child marker set) until it exits cleanly or we are told to stop.

    Returns:
        The child's last exit code; 0 when stopped by SIGTERM/SIGINT.
    """
    stopping = False
    child: subprocess.Popen[bytes] | None = None
    recent: list[float] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    env = {**os.environ, CHILD_ENV: "1"}
    try:
        while True:
            child = subprocess.Popen(  # noqa: S603
                list(argv), env=env, preexec_fn=_die_with_parent  # noqa: PLW1509
            )
            code = child.wait()
            if stopping or code == 0:
                return 0
            now = time.monotonic()
            recent = [t for t in recent if now - t < 60] + [now]
            if len(recent) > max_restarts_per_minute:
                say(f"worker crashed {len(recent)} times within a minute; giving up "
                    f"(exit {code})")
                return code
            say(f"worker exited with {code}; starting it again in {restart_delay_s:.0f} s")
            time.sleep(restart_delay_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def this_command() -> list[str]:
    """The command line that started this process, to run it again as the child."""
    return [sys.executable, "-m", "services.cli", *sys.argv[1:]]
