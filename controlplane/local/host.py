"""A real host cluster on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
and kwok acting as the kubelet of N Node objects.

kwok serves the kubelet's own URL layout with the upstream streaming libraries, so `kubectl logs`,
`exec` and `port-forward` through the host API server behave as with a real kubelet: logs come from a
file (in CRI log format, or the API server answers "unsupported log format"), exec runs a local
command, port-forward pipes the connection into `cat` (an echo: a byte round-trip needs no server).
"""

from __future__ import annotations

import datetime
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syncer.kube import kubeconfigs, pki

from .apiserver import (
    POD_CIDR,
    SERVICE_CIDR,
    ControlPlanePKI,
    controller_manager_argv,
    start_apiserver,
    write_component_kubeconfigs,
)
from .binaries import Binaries
from .processes import ManagedProcess, ProcessGroup, free_port, http_ok, wait_until

log = logging.getLogger(__name__)

NODE_IP = "127.0.0.1"


def cri_log_line(text: str, stream: str = "stdout") -> str:
    """One line in the CRI log format the kubelet (and kwok) serve logs from."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{now} {stream} F {text}\n"


def _node(name: str, max_pods: int) -> dict[str, Any]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": str(max_pods), "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "kwok",
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


@dataclass
class HostCluster:
    """Start with `start()`, stop with `stop()` (also a context manager)."""

    state_dir: Path
    nodes: int = 2
    max_pods_per_node: int = 110
    binaries: Binaries = field(default_factory=Binaries.locate)
    service_cidr: str = SERVICE_CIDR
    pod_cidr: str = POD_CIDR

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        self.group = ProcessGroup()
        self.pki = ControlPlanePKI(self.state_dir / "pki")
        self.log_dir = self.state_dir / "logs"
        self.port = 0
        self.kubeconfig = self.state_dir / "admin.kubeconfig"
        self.pod_log_file = self.state_dir / "kwok" / "pod.log"
        self.attach_log_file = self.state_dir / "kwok" / "attach.log"
        self.node_names = [f"kwok-node-{i}" for i in range(self.nodes)]
        self.startup_seconds: dict[str, float] = {}

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> HostCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> HostCluster:
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = time.monotonic() - t0
        log.info("host cluster ready", extra={"server": self.server, "seconds": self.startup_seconds})
        return self

    def _mark(self, what: str, since: float) -> float:
        now = time.monotonic()
        self.startup_seconds[what] = round(now - since, 2)
        return now

    def _start(self) -> None:
        t = time.monotonic()
        self.pki.generate(service_cidr=self.service_cidr)
        etcd_port, etcd_peer, self.port = free_port(), free_port(), free_port()
        etcd = self.group.start(
            ManagedProcess(
                "host-etcd",
                [
                    self.binaries.path("etcd"),
                    "--name=host",
                    f"--data-dir={self.state_dir / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-cluster=host=http://127.0.0.1:{etcd_peer}",
                    "--listen-metrics-urls=",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                self.log_dir / "etcd.log",
            )
        )
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"), timeout=30, what="etcd", watch=[etcd]
        )
        t = self._mark("etcd", t)
        apiserver = start_apiserver(
            self.group,
            self.binaries,
            name="host-kube-apiserver",
            pki_paths=self.pki,
            port=self.port,
            etcd_url=f"http://127.0.0.1:{etcd_port}",
            service_cidr=self.service_cidr,
            log_dir=self.log_dir,
            store=etcd,
        )
        t = self._mark("kube-apiserver", t)
        configs = write_component_kubeconfigs(self.pki, self.server, self.state_dir / "kubeconfigs")
        shutil.copyfile(configs["admin"], self.kubeconfig)
        self.kubeconfig.chmod(0o600)
        kcm = self.group.start(
            ManagedProcess(
                "host-kube-controller-manager",
                controller_manager_argv(
                    self.binaries, kubeconfig=configs["kube-controller-manager"], pki_paths=self.pki
                ),
                self.log_dir / "kube-controller-manager.log",
            )
        )
        scheduler = self.group.start(
            ManagedProcess(
                "host-kube-scheduler",
                [
                    self.binaries.path("kube-scheduler"),
                    f"--kubeconfig={configs['kube-scheduler']}",
                    "--leader-elect=false",
                    "--secure-port=0",
                ],
                self.log_dir / "kube-scheduler.log",
            )
        )
        kwok = self._start_kwok()
        self.kubectl(
            "apply",
            "-f",
            "-",
            stdin=yaml.safe_dump_all([_node(n, self.max_pods_per_node) for n in self.node_names]),
        )
        watched = [etcd, apiserver, kcm, scheduler, kwok]
        wait_until(self._nodes_ready, timeout=60, what="kwok nodes Ready", watch=watched, interval=0.2)
        t = self._mark("nodes", t)
        # Pods can only be created once the default ServiceAccount exists (kcm's job).
        wait_until(
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0
            ),
            timeout=60,
            what="default ServiceAccount (kube-controller-manager)",
            watch=watched,
            interval=0.2,
        )
        self._mark("controllers", t)

    def _start_kwok(self) -> ManagedProcess:
        kwok_dir = self.state_dir / "kwok"
        kwok_dir.mkdir(parents=True, exist_ok=True)
        serving = pki.issue(
            pki.KeyPair.read(self.pki.server_ca, self.pki.server_ca_key),
            "kwok-kubelet",
            sans=[NODE_IP, "localhost", *self.node_names],
            server=True,
        )
        serving.write(kwok_dir / "kubelet.crt", kwok_dir / "kubelet.key")
        self.pod_log_file.write_text(cri_log_line("hello from kwok"))
        self.attach_log_file.write_text(cri_log_line("attached to kwok"))
        kwok_port = free_port()
        documents: list[Any] = [
            yaml.safe_load(p.read_text()) for p in sorted(self.binaries.kwok_stages.glob("*.yaml"))
        ]
        documents += [
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterExec",
                "metadata": {"name": "local-exec"},
                "spec": {"execs": [{"local": {"envs": [{"name": "KWOK_EXEC", "value": "1"}]}}]},
            },
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterLogs",
                "metadata": {"name": "file-logs"},
                "spec": {"logs": [{"logsFile": str(self.pod_log_file), "follow": True}]},
            },
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterAttach",
                "metadata": {"name": "file-attach"},
                "spec": {"attaches": [{"logsFile": str(self.attach_log_file)}]},
            },
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterPortForward",
                "metadata": {"name": "echo-forward"},
                "spec": {"forwards": [{"command": ["cat"]}]},
            },
        ]
        config = kwok_dir / "config.yaml"
        config.write_text(yaml.safe_dump_all(documents))
        kubeconfig = self.state_dir / "kubeconfigs" / "admin.kubeconfig"
        return self.group.start(
            ManagedProcess(
                "host-kwok",
                [
                    self.binaries.path("kwok"),
                    f"--kubeconfig={kubeconfig}",
                    f"--config={config}",
                    "--manage-all-nodes=true",
                    f"--node-ip={NODE_IP}",
                    f"--node-port={kwok_port}",
                    f"--server-address=127.0.0.1:{kwok_port}",
                    f"--tls-cert-file={kwok_dir / 'kubelet.crt'}",
                    f"--tls-private-key-file={kwok_dir / 'kubelet.key'}",
                    f"--cidr={self.pod_cidr}",
                ],
                self.log_dir / "kwok.log",
                cwd=kwok_dir,
            )
        )

    def _nodes_ready(self) -> bool:
        out = self.kubectl(
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
            check=False,
        )
        states = out.stdout.split()
        return out.returncode == 0 and len(states) == self.nodes and all(s == "True" for s in states)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster as admin."""
        return self.binaries.kubectl(self.kubeconfig, *args, stdin=stdin, check=check, timeout=timeout)

    def admin_kubeconfig(self) -> dict[str, object]:
        return self.pki.kubeconfig(self.server, "admin")

    def write_kubeconfig(self, path: Path) -> Path:
        return kubeconfigs.write(path, self.admin_kubeconfig())

    def pids(self) -> list[int]:
        return self.group.pids()

    def stop(self) -> None:
        self.group.stop()
