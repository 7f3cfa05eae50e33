"""``wait_for`` and ``stop_process`` on real conditions and real child processes.

A child reports "ready" on its stdout once its signal handling is in place; reading that line
is the synchronisation, so no test sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from services.local.wait import pid_alive, stop_process, wait_for

OBEYS = "import time; print('ready', flush=True); time.sleep(60)"
IGNORES = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
           "print('ready', flush=True); time.sleep(60)")
# A group leader that obeys SIGTERM and leaves behind a child that ignores it.
LEADER = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {IGNORES!r}], stdout=subprocess.PIPE)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(60)
"""

Child = subprocess.Popen[bytes]
MakeChild = Callable[..., tuple[Child, str]]


@pytest.fixture
def make_child() -> Iterator[MakeChild]:
    """Start ``python -c script``; return it and its first line, once printed."""
    started: list[Child] = []

    def make(script: str, new_session: bool = False) -> tuple[Child, str]:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                start_new_session=new_session)
        started.append(proc)
        assert proc.stdout is not None
        return proc, proc.stdout.readline().decode().strip()

    yield make
    for proc in started:  # a failed test must not leave children behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- wait_for -------------------------------------------------------------------------------


def test_wait_for_returns_the_first_truthy_value() -> None:
    answers: Iterator[object] = iter([None, 0, "", [], {"version": "v2"}, "never asked"])
    assert wait_for(lambda: next(answers), 5, "an answer", interval_s=0.001) == {"version": "v2"}
    assert next(answers) == "never asked"


def test_a_zero_timeout_still_checks_once() -> None:
    assert wait_for(lambda: 7, 0, "seven") == 7


def test_timeout_names_what_was_awaited_and_appends_the_extra_text() -> None:
    calls = []

    def never() -> bool:
        calls.append(time.monotonic())
        return False

    with pytest.raises(TimeoutError, match=r"after 0.05 s waiting for serving to be ready\n"
                                           r"--- serve.log"):
        wait_for(never, 0.05, "serving to be ready", lambda: "--- serve.log",
                 interval_s=0.01)
    # Polled throughout, and once more when the time was up.
    assert len(calls) >= 3 and calls[-1] - calls[0] >= 0.05


def test_an_error_in_the_condition_ends_the_wait_at_once() -> None:
    def died() -> bool:
        raise RuntimeError("serve exited")

    with pytest.raises(RuntimeError, match="serve exited"):
        wait_for(died, 60, "serving")


# -- stop_process ---------------------------------------------------------------------------


def test_a_process_that_obeys_sigterm_stops_cleanly(make_child: MakeChild) -> None:
    proc, _ = make_child(OBEYS)
    assert stop_process(proc, timeout_s=10) is True
    assert proc.returncode == -signal.SIGTERM


def test_a_process_that_ignores_sigterm_is_killed(make_child: MakeChild) -> None:
    proc, _ = make_child(IGNORES)
    assert stop_process(proc, timeout_s=0.2) is False
    assert proc.returncode == -signal.SIGKILL


def test_a_bare_pid_is_stopped(make_child: MakeChild) -> None:
    proc, _ = make_child(IGNORES)
    assert stop_process(proc.pid, timeout_s=0.2) is False
    assert not pid_alive(proc.pid)  # a zombie until reaped: gone all the same
    assert proc.wait() == -signal.SIGKILL


def test_several_are_stopped_side_by_side(make_child: MakeChild) -> None:
    stubborn = [make_child(IGNORES)[0], make_child(IGNORES)[0]]
    polite, _ = make_child(OBEYS)
    t0 = time.monotonic()
    assert stop_process(*stubborn, polite, timeout_s=0.5) is False
    # One grace period for all, not one each.
    assert time.monotonic() - t0 < 0.95
    assert [p.returncode for p in stubborn] == [-signal.SIGKILL] * 2
    assert polite.returncode == -signal.SIGTERM


def test_a_group_is_killed_even_when_its_leader_left_in_time(
    make_child: MakeChild,
) -> None:
    leader, line = make_child(LEADER, new_session=True)
    orphan = int(line)
    assert stop_process(leader, timeout_s=10, group=True) is True
    assert leader.returncode == -signal.SIGTERM
    wait_for(lambda: not pid_alive(orphan), 10, "the leader's child to be killed")


def test_what_is_already_gone_is_no_error(make_child: MakeChild) -> None:
    proc, _ = make_child(OBEYS)
    proc.kill()
    proc.wait()
    assert stop_process(proc, timeout_s=1) is True
    assert stop_process(proc.pid, timeout_s=1, group=True) is True
    assert stop_process() is True
