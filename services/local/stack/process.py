"""Background processes owned by the local stack: start detached, find by PID file, stop.

A PID file alone can lie (the PID may have been reused after a reboot), so a process counts as
ours only when its command line also carries the stack's marker string.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess  # noqa: S404 - the stack's whole job is starting local servers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(Exception):
    """The local stack could not be started, found or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class ManagedProcess:
    """Where one service keeps its PID file and log, and how to recognise it."""

    name: str
    pidfile: Path
    logfile: Path
    marker: str

    def read_pid(self) -> int | None:
        """The PID recorded in the PID file, if any."""
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The PID when the recorded process is alive and is ours, else None."""
        pid = self.read_pid()
        if pid is None or not pid_alive(pid):
            return None
        # A process rewriting its title (redis does at start) shows a blank command line for
        # a moment: read again before deciding it is not ours.
        for _ in range(20):
            line = cmdline(pid)
            if line.strip():
                return pid if self.marker in line else None
            time.sleep(0.01)
        return None

    def start(self, argv: Sequence[str], cwd: Path | None = None) -> int:
        """Start ``argv`` detached (own session, output to the log file); record its PID."""
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - argv is built by the stack, not from input
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout_s: float = 30.0, pid: int | None = None) -> bool:
        """SIGTERM the process, SIGKILL it after ``timeout_s``; remove the PID file.

        Args:
            timeout_s: how long a clean shutdown may take.
            pid: a PID known to be ours (one just started); default: the recorded one, if it
                is alive and ours.

        Returns:
            True when a running process was stopped, False when none was running.
        """
        pid = pid if pid is not None else self.running_pid()
        stopped = False
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_until(lambda: not pid_alive(pid), timeout_s):
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda: not pid_alive(pid), 10.0)
            stopped = True
        self.pidfile.unlink(missing_ok=True)
        return stopped

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log, to show why a start failed."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
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


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" when unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.05
) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
