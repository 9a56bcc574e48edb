"""Starting, watching and stopping the local control-plane processes.

Three promises, because tests and `vcluster-py up` both depend on them:

* a process that dies while we wait for it raises at once, with the tail of its log (not a
  timeout two minutes later);
* `stop()` leaves nothing behind: processes are stopped in reverse start order (controllers, then
  API servers, then their stores — an API server whose store vanished first was seen to ignore
  SIGTERM for a minute), each gets a short grace period, then SIGKILL, and we wait for it;
* if our own Python process dies without cleaning up (SIGKILL, a crashed test runner), the kernel
  kills the children (PR_SET_PDEATHSIG with SIGKILL: an API server whose store dies at the same
  moment ignores SIGTERM for a minute), so no orphan control plane keeps ports busy.

The code is synchronous on purpose: start-up is a handful of blocking steps, and callers from
asyncio run it in their own process (the control plane spawns `vcluster-py` children).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_reserved_ports: set[int] = set()


class ProcessFailed(RuntimeError):
    """A managed process exited, or never became ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and that we have not handed out before.

    Remembering handed-out ports closes the window where two components started in a row would
    get the same ephemeral port before either binds it.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _reserved_ports:
            _reserved_ports.add(port)
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ManagedProcess:
    """One child process with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env or {})
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop children in order
                preexec_fn=_die_with_parent,
            )
        self.started_at = time.monotonic()
        log.debug("started", extra={"component": self.name, "pid": self.popen.pid})

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            code = self.popen.returncode if self.popen else None
            raise ProcessFailed(
                f"{self.name} exited with code {code}; last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def stop(self, grace: float = 3.0) -> None:
        proc = self.popen
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time", extra={"component": self.name, "signal": sig.name})
        # Reap anything left in the process group (kwok's exec children, for example).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    watch: Sequence[ManagedProcess] = (),
    interval: float = 0.1,
) -> None:
    """Poll `condition` until it is true; fail early if a watched process dies."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in watch:
            proc.check_alive()
        if condition():
            return
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {p.name} ({p.log_path}):\n{p.log_tail()}" for p in watch)
            raise ProcessFailed(f"timed out after {timeout:.0f}s waiting for {what}{tails}")
        time.sleep(interval)


def http_ok(url: str, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    """True when GET `url` answers 200 (used for /readyz and etcd's /health)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ssl_context) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ProcessGroup:
    """Processes started together and stopped together, last started first stopped."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(self, proc: ManagedProcess) -> ManagedProcess:
        self.processes.append(proc)
        proc.start()
        return proc

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception:  # keep stopping the rest whatever one of them does
                log.exception("stop failed", extra={"component": proc.name})
