"""Waiting for a condition and stopping processes: the one way each is done.

``wait_for`` polls a condition until it is truthy or a timeout passes; it is how the stack, the
local loop, the joiner drivers and the integration tests wait, never a bare ``sleep``.
``stop_process`` ends processes the way every caller did by hand: SIGTERM, a grace period,
then SIGKILL.

Example:
    >>> answers = iter([None, 0, "ready"])
    >>> wait_for(lambda: next(answers), timeout_s=5, what="the answer", interval_s=0.001)
    'ready'
    >>> wait_for(lambda: False, timeout_s=0, what="the impossible")
    Traceback (most recent call last):
    ...
    TimeoutError: timed out after 0 s waiting for the impossible
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from subprocess import Popen

T = TypeVar("T")
KILL_GRACE_S = 10.0  # how long a SIGKILLed process may take to be gone (the kernel's part)
_STOP_POLL_S = 0.05


def wait_for(condition: Callable[[], T], timeout_s: float, what: str,
             on_timeout: Callable[[], str] | None = None, *, interval_s: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    The condition is called at least once, and once more when the time is up, so a zero
    timeout means "check now". An exception it raises propagates at once: a condition that
    can tell "will never happen" (the process died) says so by raising.

    Args:
        condition: What to poll; its truthy result is returned.
        timeout_s: How long to keep polling.
        what: What is waited for, for the error ("serving to be ready").
        on_timeout: Called on timeout for text to append to the error (e.g. the logs).
        interval_s: Pause between two polls.

    Raises:
        TimeoutError: ``condition`` stayed falsy for ``timeout_s``; the message names ``what``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            extra = f"\n{on_timeout()}" if on_timeout is not None else ""
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}{extra}")
        time.sleep(min(interval_s, left))


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie.

    Example:
        >>> pid_alive(os.getpid())
        True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_process(*targets: Popen[Any] | int, timeout_s: float = 30.0,
                 group: bool = False) -> bool:
    """SIGTERM ``targets``, wait up to ``timeout_s`` for them to exit, SIGKILL the rest.

    All are signalled before any is waited for, so they shut down side by side within one
    ``timeout_s``. A ``Popen`` is reaped (its ``returncode`` is set); a bare PID counts as gone
    once it no longer runs (a zombie is gone). Targets already gone are fine.

    Args:
        targets: ``Popen`` objects or PIDs.
        timeout_s: How long a clean shutdown may take.
        group: Signal each target's process group (it was started with
            ``start_new_session=True``), and SIGKILL the group even when its leader exited
            in time: a child may outlive its parent.

    Returns:
        True when every target exited within ``timeout_s`` of the SIGTERM.

    Raises:
        TimeoutError: a target still runs ``KILL_GRACE_S`` after its SIGKILL.
    """
    for target in targets:
        _signal(target, signal.SIGTERM, group)
    try:
        wait_for(lambda: all(map(_gone, targets)), timeout_s, "the processes to exit",
                 interval_s=_STOP_POLL_S)
        clean = True
    except TimeoutError:
        clean = False
    for target in targets:
        if group or not _gone(target):
            _signal(target, signal.SIGKILL, group)
    for target in targets:
        wait_for(partial(_gone, target), KILL_GRACE_S,
                 f"process {_pid(target)} to exit after SIGKILL", interval_s=_STOP_POLL_S)
    return clean


def _pid(target: Popen[Any] | int) -> int:
    return target if isinstance(target, int) else target.pid


def _gone(target: Popen[Any] | int) -> bool:
    """The process has exited (a ``Popen`` is reaped on the way)."""
    if isinstance(target, int):
        return not pid_alive(target)
    return target.poll() is not None


def _signal(target: Popen[Any] | int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(_pid(target), sig)  # its own session: the group id is its pid
        elif isinstance(target, int):
            os.kill(target, sig)
        else:
            target.send_signal(sig)  # a no-op once the process has been reaped
    except ProcessLookupError:
        pass  # already gone
