"""What the host cluster and the virtual control plane have in common: PKI layout, kube-apiserver
and kube-controller-manager command lines, readiness.

Every address is on 127.0.0.0/8. Fake pod IPs, ClusterIPs and node addresses are addresses nobody
serves; the API server dials them when proxying, so they must never leave this machine. With
loopback ranges the API server refuses such proxying itself ("address not allowed").
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from syncer.kube import kubeconfigs, pki

from .binaries import Binaries
from .processes import ManagedProcess, ProcessGroup, http_ok, wait_until

SERVICE_CIDR = "127.96.0.0/16"
POD_CIDR = "127.244.0.0/16"
CLUSTER_DOMAIN = "cluster.local"

# What k3s runs inside a vcluster pod: no node, PV-binder, attach/detach or expander controllers
# (the host does that work), named as kube-controller-manager >= 1.37 names them.
VIRTUAL_DISABLED_CONTROLLERS = (
    "node-ipam-controller",
    "node-lifecycle-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-attach-detach-controller",
    "persistentvolume-expander-controller",
    "ttl-controller",
    "taint-eviction-controller",
)


def first_service_ip(cidr: str) -> str:
    return str(next(ipaddress.ip_network(cidr).hosts()))


@dataclass(frozen=True)
class ControlPlanePKI:
    """Paths of one control plane's certificates, in the layout k3s uses under /data/server/tls.

    The syncer and the proxy read the same file names in a real vcluster pod, so the local virtual
    control plane lays them out identically.
    """

    tls_dir: Path

    @property
    def server_ca(self) -> Path:
        return self.tls_dir / "server-ca.crt"

    @property
    def server_ca_key(self) -> Path:
        return self.tls_dir / "server-ca.key"

    @property
    def client_ca(self) -> Path:
        return self.tls_dir / "client-ca.crt"

    @property
    def client_ca_key(self) -> Path:
        return self.tls_dir / "client-ca.key"

    @property
    def request_header_ca(self) -> Path:
        return self.tls_dir / "request-header-ca.crt"

    @property
    def service_key(self) -> Path:
        return self.tls_dir / "service.key"

    @property
    def service_pub(self) -> Path:
        return self.tls_dir / "service.pub"

    @property
    def serving_cert(self) -> Path:
        return self.tls_dir / "serving-kube-apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.tls_dir / "serving-kube-apiserver.key"

    def client_pair(self, name: str) -> tuple[Path, Path]:
        return self.tls_dir / f"client-{name}.crt", self.tls_dir / f"client-{name}.key"

    def generate(self, *, service_cidr: str, extra_sans: tuple[str, ...] = ()) -> None:
        """Create every CA and leaf once; existing files are kept (a restart reuses its identity)."""
        if self.server_ca.exists():
            return
        server_ca = pki.new_ca("vcluster-py-server-ca")
        client_ca = pki.new_ca("vcluster-py-client-ca")
        request_header_ca = pki.new_ca("vcluster-py-request-header-ca")
        server_ca.write(self.server_ca, self.server_ca_key)
        client_ca.write(self.client_ca, self.client_ca_key)
        request_header_ca.write(self.request_header_ca, self.tls_dir / "request-header-ca.key")
        sans = (
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            first_service_ip(service_cidr),
            *extra_sans,
        )
        pki.issue(server_ca, "kube-apiserver", sans=sans, server=True).write(
            self.serving_cert, self.serving_key
        )
        pki.ServiceAccountKey.generate().write(self.service_key, self.service_pub)
        for file_name, (user, groups) in CLIENTS.items():
            pki.issue(client_ca, user, organizations=groups, client=True).write(*self.client_pair(file_name))

    def kubeconfig(self, server: str, user: str) -> dict[str, object]:
        cert, key = self.client_pair(user)
        return kubeconfigs.build(
            server=server,
            ca_pem=self.server_ca.read_bytes(),
            name=user,
            client_cert_pem=cert.read_bytes(),
            client_key_pem=key.read_bytes(),
        )

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.server_ca))


# Client identities by file name: (CN = the Kubernetes user, O = its groups).
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("admin", ("system:masters",)),
    "kube-controller-manager": ("system:kube-controller-manager", ()),
    "kube-scheduler": ("system:kube-scheduler", ()),
}


def apiserver_argv(
    binaries: Binaries,
    *,
    pki_paths: ControlPlanePKI,
    port: int,
    etcd_url: str,
    service_cidr: str,
) -> list[str]:
    return [
        binaries.path("kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki_paths.serving_cert}",
        f"--tls-private-key-file={pki_paths.serving_key}",
        f"--client-ca-file={pki_paths.client_ca}",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        f"--api-audiences=https://kubernetes.default.svc.{CLUSTER_DOMAIN},https://kubernetes.default.svc",
        f"--service-account-key-file={pki_paths.service_pub}",
        f"--service-account-signing-key-file={pki_paths.service_key}",
        f"--service-cluster-ip-range={service_cidr}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--kubelet-preferred-address-types=InternalIP",
        # The API server's own endpoint would be 127.0.0.1, which Endpoints validation rejects as
        # loopback; nothing reaches API servers through the `kubernetes` Service here.
        "--endpoint-reconciler-type=none",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
    ]


def controller_manager_argv(
    binaries: Binaries, *, kubeconfig: Path, pki_paths: ControlPlanePKI, disabled: tuple[str, ...] = ()
) -> list[str]:
    argv = [
        binaries.path("kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        f"--service-account-private-key-file={pki_paths.service_key}",
        f"--root-ca-file={pki_paths.server_ca}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={pki_paths.client_ca}",
        f"--cluster-signing-key-file={pki_paths.client_ca_key}",
    ]
    if disabled:
        argv.append("--controllers=*," + ",".join(f"-{c}" for c in disabled))
    return argv


def write_component_kubeconfigs(pki_paths: ControlPlanePKI, server: str, directory: Path) -> dict[str, Path]:
    """One kubeconfig per client identity, inlined credentials."""
    written = {}
    for user in CLIENTS:
        written[user] = kubeconfigs.write(
            directory / f"{user}.kubeconfig", pki_paths.kubeconfig(server, user)
        )
    return written


def start_apiserver(
    group: ProcessGroup,
    binaries: Binaries,
    *,
    name: str,
    pki_paths: ControlPlanePKI,
    port: int,
    etcd_url: str,
    service_cidr: str,
    log_dir: Path,
    store: ManagedProcess,
    timeout: float = 90.0,
) -> ManagedProcess:
    proc = group.start(
        ManagedProcess(
            name,
            apiserver_argv(
                binaries, pki_paths=pki_paths, port=port, etcd_url=etcd_url, service_cidr=service_cidr
            ),
            log_dir / f"{name}.log",
        )
    )
    ctx = pki_paths.ssl_context()
    wait_until(
        lambda: http_ok(f"https://127.0.0.1:{port}/readyz", ssl_context=ctx),
        timeout=timeout,
        what=f"{name} /readyz",
        watch=[store, proc],
    )
    return proc
