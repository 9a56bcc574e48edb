"""Shared pieces of the control plane e2e tests: the controller subprocess, the CLI and the API client.

`ControlPlane` runs `vcluster-py controlplane` (both drivers available, `local` the default) as a
child process with its own state directory and helm home; test modules wrap it in a module-scoped
fixture with `controlplane_fixture`, which also checks that no process of it is left behind.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.local.host import HostCluster
from controlplane.local.processes import ManagedProcess, ProcessGroup, free_port, http_ok, wait_until
from controlplane.local.tenant import LocalVirtualCluster
from tests.support import Kubectl, eventually, unique_name

PROJECT = "my-project"
PNS = f"loft-p-{PROJECT}"
SYNCER_ARGS = ["--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5", "--resync-period=2"]
API_PREFIX = "/kubernetes/management/apis/management.loft.sh/v1"


class ControlPlane:
    def __init__(self, host: HostCluster, state: Path) -> None:
        self.host = host
        self.state = state
        self.api_port = free_port()
        self.health_port = free_port()
        self.group = ProcessGroup()
        self.proc: ManagedProcess | None = None

    @property
    def helm_env(self) -> dict[str, str]:
        """Private helm cache/config/data directories (the helm driver's and the tests' helm)."""
        home = self.state / "helm-home"
        return {
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "controlplane",
            "--log-format=json",
            "--log-level=debug",
            "controlplane",
            f"--host-kubeconfig={self.host.kubeconfig}",
            f"--api-address=127.0.0.1:{self.api_port}",
            f"--health-address=127.0.0.1:{self.health_port}",
            f"--state-dir={self.state / 'data'}",
            *[f"--syncer-arg={a}" for a in SYNCER_ARGS],
        ]
        self.proc = self.group.start(
            ManagedProcess("controlplane", argv, self.state / "controlplane.log", env=self.helm_env)
        )
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{self.health_port}/readyz"),
            timeout=120,
            what="controlplane ready",
            watch=[self.proc],
            interval=0.3,
        )

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines) if self.proc else ""

    def stop(self) -> None:
        self.group.stop()


def controlplane_fixture(host: HostCluster, state: Path) -> Iterator[ControlPlane]:
    """Body of a module-scoped fixture: start, yield, stop, and check nothing of it keeps running."""
    cp = ControlPlane(host, state)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()
        leftover = subprocess.run(
            ["pgrep", "-f", str(cp.state)], capture_output=True, text=True
        ).stdout.split()
        assert not leftover, f"processes left behind: {leftover}"


def cli(
    *args: str, kubeconfig: Path, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "controlplane", *args, f"--kubeconfig={kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"vcluster-py {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def exists(kubectl: Kubectl, *args: str) -> bool:
    proc = kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    assert proc.returncode == 0, proc.stderr
    return bool(proc.stdout.strip())


def status_of(kubectl: Kubectl, name: str, kind: str = "virtualclusterinstances") -> dict[str, Any]:
    obj = get_json(kubectl, f"{kind}.management.loft.sh", name, "-n", PNS)
    return dict(obj.get("status") or {})


def wait_phase(
    kubectl: Kubectl,
    cp: ControlPlane,
    name: str,
    want: str,
    timeout: float = 300,
    kind: str = "virtualclusterinstances",
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = status_of(kubectl, name, kind)
        return st if st.get("phase") == want else None

    try:
        return eventually(check, timeout=timeout, interval=1, what=f"{name} {want}")  # type: ignore[return-value]
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nstatus: {status_of(kubectl, name, kind)}\ncontroller log:\n{cp.log_tail()}"
        ) from None


def ensure_project(hk: Kubectl, project: str = PROJECT) -> None:
    hk(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {"apiVersion": "management.loft.sh/v1", "kind": "Project", "metadata": {"name": project}}
        ),
    )
    eventually(
        lambda: hk("get", "namespace", f"loft-p-{project}", check=False).returncode == 0,
        timeout=60,
        what="project namespace",
    )


def token(hk: Kubectl, sa: str) -> str:
    hk("create", "serviceaccount", sa, "-n", "default", check=False)
    return str(hk("create", "token", sa, "-n", "default").stdout.strip())


def admin_token(hk: Kubectl, sa: str = "mgmt-admin") -> str:
    tok = token(hk, sa)
    if not exists(hk, "clusterrolebinding", sa):
        hk(
            "create",
            "clusterrolebinding",
            sa,
            "--clusterrole=cluster-admin",
            f"--serviceaccount=default:{sa}",
        )
    return tok


# The seed documents call the API with `curl --insecure https://...`; so do the tests.
INSECURE = ssl._create_unverified_context()


def api(
    cp: ControlPlane,
    method: str,
    path: str,
    tok: str,
    body: bytes | None = None,
    ctype: str = "application/json",
) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"https://127.0.0.1:{cp.api_port}{API_PREFIX}{path}",
        method=method,
        data=body,
        headers={"Authorization": f"Bearer {tok}", "Content-Type": ctype},
    )
    try:
        with urllib.request.urlopen(req, timeout=30, context=INSECURE) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def controlplane(
    host_cluster: HostCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    yield from controlplane_fixture(host_cluster, tmp_path_factory.mktemp("controlplane"))


@pytest.fixture(scope="module")
def hk(host_kubectl: Kubectl, controlplane: ControlPlane) -> Kubectl:
    return host_kubectl


def legacy_cluster(host: HostCluster, state_dir: Path) -> LocalVirtualCluster:
    """An already running virtual cluster that no instance owns: what import adopts."""
    return LocalVirtualCluster(
        host,
        name="legacy",
        namespace=unique_name("imp"),
        state_dir=state_dir,
        syncer_args=(*SYNCER_ARGS, "--out-kube-config-secret=vc-legacy"),
    )
