"""The syncer's settings and the rules for which resources it syncs.

`--disable-sync-resources=a,b` (vcluster <= 0.4, the form Loft's docs use in `syncer.extraArgs`) and
`--sync=-a,+b` (vcluster 0.5) both work, over one list of names. Our fix to vcluster <= 0.4: an
unknown name is an error at start-up that lists the valid names, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Every name either flag accepts, in the order the docs list them.
KNOWN_RESOURCES: tuple[str, ...] = (
    "pods",
    "services",
    "endpoints",
    "configmaps",
    "secrets",
    "events",
    "persistentvolumeclaims",
    "persistentvolumes",
    "ingresses",
    "nodes",
    "storageclasses",
    "priorityclasses",
    "networkpolicies",
)

# On unless switched off. storageclasses, priorityclasses and networkpolicies are opt-in, as in
# vcluster; `nodes` and `persistentvolumes` mean the fake virtual nodes and PVs.
OPT_IN: frozenset[str] = frozenset({"storageclasses", "priorityclasses", "networkpolicies"})
DEFAULT_ENABLED: frozenset[str] = frozenset(KNOWN_RESOURCES) - OPT_IN

POD_SECURITY_LEVELS: tuple[str, ...] = ("privileged", "baseline", "restricted")


class OptionsError(ValueError):
    """A flag value we cannot run with. Shown to the user as is, so it names the valid values."""

    user_facing = True


def _names(value: str) -> list[str]:
    return [item.strip().lower() for item in value.split(",") if item.strip()]


def _check_known(name: str, flag: str) -> None:
    if name not in KNOWN_RESOURCES:
        raise OptionsError(
            f"{flag}: unknown resource {name!r}; valid names are: {', '.join(KNOWN_RESOURCES)}"
        )


def effective_resources(
    disable_sync_resources: Iterable[str] = (), sync: Iterable[str] = ()
) -> frozenset[str]:
    """The set of resources to sync, from any number of `--disable-sync-resources` and `--sync` values.

    `--sync` items are `name` or `+name` (enable) and `-name` (disable); later values win, and
    `--sync` is applied after `--disable-sync-resources` (vcluster 0.5 maps the old flag to `-name`).
    """
    enabled = set(DEFAULT_ENABLED)
    for value in disable_sync_resources:
        for name in _names(value):
            _check_known(name, "--disable-sync-resources")
            enabled.discard(name)
    for value in sync:
        for item in _names(value):
            sign, name = (item[0], item[1:]) if item[0] in "+-" else ("+", item)
            _check_known(name, "--sync")
            if sign == "-":
                enabled.discard(name)
            else:
                enabled.add(name)
    return frozenset(enabled)


@dataclass(frozen=True)
class SyncerOptions:
    """Everything the syncer needs to know, resolved from flags."""

    name: str
    target_namespace: str
    virtual_kubeconfig: str
    host_kubeconfig: str | None = None  # None: in-cluster configuration
    service_name: str = "vcluster"
    service_namespace: str | None = None  # defaults to the target namespace
    cluster_domain: str = "cluster.local"
    pod_security_standard: str = "baseline"
    resources: frozenset[str] = DEFAULT_ENABLED
    workers: int = 4
    resync_seconds: float = 300.0
    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    health_address: str = "127.0.0.1:8080"
    identity: str = ""
    apply_coredns: bool = True
    out_kube_config_secret: str | None = None
    out_kube_config_server: str | None = None
    proxy_address: str = "0.0.0.0"
    proxy_port: int = 8443
    tls_sans: tuple[str, ...] = ()
    server_ca_cert: str = "/data/server/tls/server-ca.crt"
    server_ca_key: str = "/data/server/tls/server-ca.key"
    client_ca_cert: str = "/data/server/tls/client-ca.crt"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pod_security_standard not in POD_SECURITY_LEVELS:
            raise OptionsError(
                f"--pod-security-standard: unknown level {self.pod_security_standard!r}; "
                f"valid levels are: {', '.join(POD_SECURITY_LEVELS)}"
            )
        if not self.name:
            raise OptionsError("--name must not be empty: it suffixes every host object name")

    @property
    def host_service_namespace(self) -> str:
        return self.service_namespace or self.target_namespace

    def syncs(self, resource: str) -> bool:
        return resource in self.resources
