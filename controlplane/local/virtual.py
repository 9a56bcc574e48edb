"""A virtual control plane as local processes: what k3s runs inside a vcluster pod.

kine on SQLite stands in for etcd, a kube-apiserver serves the virtual API with the SAME service
CIDR as the host (so the host-allocated ClusterIP of a synced Service is valid in the virtual cluster
too), and a kube-controller-manager runs every controller except those that belong to real nodes and
real volumes (node IPAM and lifecycle, PV binding, attach/detach, expansion): the host does that work
and the syncer mirrors the result.

Files are laid out as k3s lays them out under /data, so the syncer and proxy read the same paths
locally and in a Helm-installed pod: `server/tls/*` (CAs, service-account key) and
`server/cred/admin.kubeconfig`.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from syncer.kube import kubeconfigs

from .apiserver import (
    SERVICE_CIDR,
    VIRTUAL_DISABLED_CONTROLLERS,
    ControlPlanePKI,
    controller_manager_argv,
    start_apiserver,
    write_component_kubeconfigs,
)
from .binaries import Binaries
from .processes import ManagedProcess, ProcessGroup, free_port, port_open, wait_until

log = logging.getLogger(__name__)


@dataclass
class VirtualControlPlane:
    """One virtual cluster's control plane. `data_dir` plays the role of k3s's /data."""

    data_dir: Path
    service_cidr: str = SERVICE_CIDR
    binaries: Binaries = field(default_factory=Binaries.locate)
    extra_sans: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.group = ProcessGroup()
        self.pki = ControlPlanePKI(self.data_dir / "server" / "tls")
        self.log_dir = self.data_dir / "logs"
        self.port = 0
        self.startup_seconds: dict[str, float] = {}

    # The paths a syncer needs, under their k3s names.
    @property
    def admin_kubeconfig_path(self) -> Path:
        return self.data_dir / "server" / "cred" / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> VirtualControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> VirtualControlPlane:
        t0 = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = round(time.monotonic() - t0, 2)
        log.info(
            "virtual control plane ready", extra={"server": self.server, "seconds": self.startup_seconds}
        )
        return self

    def _start(self, timeout: float) -> None:
        t = time.monotonic()
        self.pki.generate(service_cidr=self.service_cidr, extra_sans=self.extra_sans)
        kine_port, self.port = free_port(), free_port()
        db = self.data_dir / "server" / "db" / "state.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        kine = self.group.start(
            ManagedProcess(
                "virtual-kine",
                [
                    self.binaries.path("kine"),
                    f"--listen-address=127.0.0.1:{kine_port}",
                    f"--endpoint=sqlite://{db}?_journal=WAL&cache=shared&_busy_timeout=30000",
                    "--metrics-bind-address=0",  # defaults to :8080 on every interface
                ],
                self.log_dir / "kine.log",
            )
        )
        wait_until(lambda: port_open(kine_port), timeout=30, what="kine", watch=[kine])
        self.startup_seconds["kine"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        apiserver = start_apiserver(
            self.group,
            self.binaries,
            name="virtual-kube-apiserver",
            pki_paths=self.pki,
            port=self.port,
            etcd_url=f"http://127.0.0.1:{kine_port}",
            service_cidr=self.service_cidr,
            log_dir=self.log_dir,
            store=kine,
            timeout=timeout,
        )
        self.startup_seconds["kube-apiserver"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        configs = write_component_kubeconfigs(self.pki, self.server, self.data_dir / "server" / "cred")
        kubeconfigs.write(self.admin_kubeconfig_path, self.pki.kubeconfig(self.server, "admin"))
        kcm = self.group.start(
            ManagedProcess(
                "virtual-kube-controller-manager",
                controller_manager_argv(
                    self.binaries,
                    kubeconfig=configs["kube-controller-manager"],
                    pki_paths=self.pki,
                    disabled=VIRTUAL_DISABLED_CONTROLLERS,
                ),
                self.log_dir / "kube-controller-manager.log",
            )
        )
        # vcluster's syncer waits for default/default before it starts; so do we.
        wait_until(
            self._default_service_account_exists,
            timeout=timeout,
            what="virtual default ServiceAccount (kube-controller-manager)",
            watch=[kine, apiserver, kcm],
            interval=0.2,
        )
        self.startup_seconds["kube-controller-manager"] = round(time.monotonic() - t, 2)

    def _default_service_account_exists(self) -> bool:
        cert, key = self.pki.client_pair("admin")
        ctx = ssl.create_default_context(cafile=str(self.pki.server_ca))
        ctx.load_cert_chain(str(cert), str(key))
        try:
            with urllib.request.urlopen(
                f"{self.server}/api/v1/namespaces/default/serviceaccounts/default", timeout=2, context=ctx
            ) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def pids(self) -> list[int]:
        return self.group.pids()

    def stop(self) -> None:
        self.group.stop()
