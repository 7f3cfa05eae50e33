"""CPU a process has used, by thread group, read from ``/proc`` (Linux).

``cpu_by_thread(pid)`` groups a process's live threads into its main thread (for serving, the
event loop: HTTP, FastAPI, the route), librdkafka's threads (named ``rdk:…``: batching, the
broker protocol, I/O) and the rest. ``bench serving`` uses it to say where serving's CPU goes.

Example:
    >>> split = cpu_by_thread(os.getpid())
    >>> sorted(split), split["main"] > 0
    (['kafka', 'main', 'other'], True)
    >>> mean_us(lambda i: None, 10) >= 0
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

THREAD_GROUPS = ("main", "kafka", "other")


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) each group of ``pid``'s live threads has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = dict.fromkeys(THREAD_GROUPS, 0.0)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except FileNotFoundError:  # the thread ended since the listing
            continue
        name = head.split("(", 1)[1]
        fields = rest.split()
        group = "main" if tid == str(pid) else "kafka" if name.startswith("rdk:") else "other"
        out[group] += (int(fields[11]) + int(fields[12])) / tick
    return out


def mean_us(call: Callable[[int], Any], n: int) -> float:
    """Mean wall time of ``call(i)`` for ``i`` in ``range(n)``, in µs (after one warm call)."""
    call(0)
    started = time.perf_counter()
    for i in range(n):
        call(i)
    return (time.perf_counter() - started) / n * 1e6
