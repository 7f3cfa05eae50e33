"""CPU by thread group from /proc (services/ops/cpu.py), as ``bench serving`` reads it."""

from __future__ import annotations

import subprocess
import sys
import time

from services.ops.cpu import cpu_by_thread, mean_us

# A child whose main thread and one other thread each burn 0.3 s of CPU, then wait (alive, so
# /proc still lists both) until stdin closes.
_CHILD = """
import sys, threading, time
def spin(s):
    end = time.thread_time() + s
    while time.thread_time() < end:
        pass
t = threading.Thread(target=lambda: (spin(0.3), sys.stdin.read()))
t.start()
spin(0.3)
print("done", flush=True)
sys.stdin.read()
"""


def test_cpu_by_thread_charges_the_thread_that_worked() -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        time.sleep(0.2)  # the other thread may finish its spin a little later
        split = cpu_by_thread(child.pid)
    finally:
        child.communicate("", timeout=10)
    assert 0.25 <= split["main"] < 1.0  # the interpreter's start-up counts too
    assert 0.25 <= split["other"] < 0.5
    assert split["kafka"] == 0.0  # no librdkafka thread


def test_mean_us_times_each_call() -> None:
    calls: list[int] = []

    def call(i: int) -> None:
        calls.append(i)
        time.sleep(0.002)

    spent = mean_us(call, 20)
    assert calls == [0, *range(20)]  # one warm call, then each index once
    assert 1_900 <= spent <= 50_000
