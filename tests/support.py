"""Helpers for tests: unique names, the real kubectl, and waiting on conditions."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from controlplane.local.binaries import Binaries

_counter = itertools.count()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:5]}"


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def kubectl_for(binaries: Binaries, kubeconfig: Path) -> Kubectl:
    def run(
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(
            [binaries.path("kubectl"), f"--kubeconfig={kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    return run


def eventually(
    condition: Callable[[], object], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> object:
    """Wait for `condition()` to return something truthy; fail with `what` after `timeout` seconds.

    This is the only way tests wait: on a condition, with a deadline (never a bare sleep).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_error}")
        time.sleep(interval)
