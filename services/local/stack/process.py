"""Background processes owned by the local stack: start detached, find by PID file, stop.

A PID file alone can lie (the PID may have been reused after a reboot), so a process counts as
ours only when its command line also carries the stack's marker string.
"""

from __future__ import annotations

import socket
import subprocess  # noqa: S404 - the stack's whole job is starting local servers
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.errors import ServicesError
from services.local.wait import pid_alive, stop_process


class StackError(ServicesError):
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

        Raises:
            TimeoutError: the process outlived its SIGKILL (the PID file is removed anyway).
        """
        pid = pid if pid is not None else self.running_pid()
        try:
            if pid is None or not pid_alive(pid):
                return False
            stop_process(pid, timeout_s=timeout_s)
            return True
        finally:
            self.pidfile.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log, to show why a start failed."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


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
