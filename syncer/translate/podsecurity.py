"""Pod Security Standards, checked on the virtual pod before anything reaches the host.

The virtual cluster's tenant is cluster-admin of the virtual cluster, so the virtual API server's own
Pod Security admission is the tenant's to switch off: the syncer enforces the level on the host's
behalf. It follows the Kubernetes Pod Security Standards (the ``latest`` version of the pod-security
admission checks), including the Windows exemptions of the restricted level. A violation keeps the
pod off the host; the caller reports the list in a ``SyncError`` event on the virtual pod.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
VALID_LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

Pod = Mapping[str, Any]
Container = Mapping[str, Any]
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _containers(spec: Mapping[str, Any]) -> Iterator[Container]:
    for list_name in _CONTAINER_LISTS:
        yield from spec.get(list_name) or []


def _security_context(holder: Mapping[str, Any]) -> Mapping[str, Any]:
    return holder.get("securityContext") or {}


def _label(container: Container) -> str:
    return f"container {container.get('name', '?')!r}"


# --- baseline ---------------------------------------------------------------------------------------


def _host_namespaces(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{field}=true is not allowed"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if spec.get(field) is True
    ]


def _host_process(spec: Mapping[str, Any]) -> list[str]:
    holders = [("the pod", spec), *((_label(c), c) for c in _containers(spec))]
    return [
        f"{label}: windowsOptions.hostProcess=true is not allowed"
        for label, holder in holders
        if (_security_context(holder).get("windowsOptions") or {}).get("hostProcess") is True
    ]


def _privileged(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{_label(c)}: privileged=true is not allowed"
        for c in _containers(spec)
        if _security_context(c).get("privileged") is True
    ]


def _added_capabilities(spec: Mapping[str, Any], forbidden: Callable[[str], bool], level: str) -> list[str]:
    violations = []
    for container in _containers(spec):
        added = (_security_context(container).get("capabilities") or {}).get("add") or []
        extra = sorted({capability for capability in added if forbidden(capability)})
        if extra:
            violations.append(f"{_label(container)}: adding capabilities {extra} is not allowed ({level})")
    return violations


def _beyond_baseline(capability: str) -> bool:
    return capability not in BASELINE_CAPABILITIES


def _beyond_restricted(capability: str) -> bool:
    # Only what baseline allowed: anything beyond baseline is reported once, by the baseline check.
    return capability in BASELINE_CAPABILITIES and capability not in RESTRICTED_ADDABLE_CAPABILITIES


def _host_path_volumes(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"hostPath volume {volume.get('name')!r} is not allowed"
        for volume in spec.get("volumes") or []
        if "hostPath" in volume
    ]


def _host_ports(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{_label(c)}: hostPort {port['hostPort']} is not allowed"
        for c in _containers(spec)
        for port in c.get("ports") or []
        if port.get("hostPort")
    ]


def _handler_hosts(container: Container) -> Iterator[str]:
    handlers = [container.get(probe) or {} for probe in _PROBES]
    lifecycle = container.get("lifecycle") or {}
    handlers += [lifecycle.get(hook) or {} for hook in ("postStart", "preStop")]
    for handler in handlers:
        for action in ("httpGet", "tcpSocket"):
            host = (handler.get(action) or {}).get("host")
            if host:
                yield host


def _probe_hosts(spec: Mapping[str, Any]) -> list[str]:
    """Probes and lifecycle hooks with ``host`` make the kubelet connect anywhere (PSS 1.34+)."""
    return [
        f"{_label(c)}: probe or lifecycle handler host {host!r} is not allowed"
        for c in _containers(spec)
        for host in _handler_hosts(c)
    ]


def _apparmor(pod: Pod, spec: Mapping[str, Any]) -> list[str]:
    violations = []
    holders = [("the pod", spec), *((_label(c), c) for c in _containers(spec))]
    for label, holder in holders:
        profile = (_security_context(holder).get("appArmorProfile") or {}).get("type")
        if profile not in (None, "RuntimeDefault", "Localhost"):
            violations.append(f"{label}: appArmorProfile {profile} is not allowed")
    for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if (
            key.startswith(APPARMOR_ANNOTATION_PREFIX)
            and value != "runtime/default"
            and not value.startswith("localhost/")
        ):
            violations.append(f"annotation {key}={value} is not allowed")
    return violations


def _selinux(spec: Mapping[str, Any]) -> list[str]:
    violations = []
    for label, holder in [("the pod", spec), *((_label(c), c) for c in _containers(spec))]:
        options = _security_context(holder).get("seLinuxOptions") or {}
        if (options.get("type") or "") not in ALLOWED_SELINUX_TYPES:
            violations.append(f"{label}: seLinuxOptions.type {options['type']!r} is not allowed")
        if options.get("user") or options.get("role"):
            violations.append(f"{label}: seLinuxOptions user and role must not be set")
    return violations


def _proc_mount(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{_label(c)}: procMount {mount} is not allowed"
        for c in _containers(spec)
        if (mount := _security_context(c).get("procMount")) not in (None, "Default")
    ]


def _seccomp_unconfined(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{label}: seccompProfile Unconfined is not allowed"
        for label, holder in [("the pod", spec), *((_label(c), c) for c in _containers(spec))]
        if (_security_context(holder).get("seccompProfile") or {}).get("type") == "Unconfined"
    ]


def _sysctls(spec: Mapping[str, Any]) -> list[str]:
    names = [sysctl.get("name", "") for sysctl in _security_context(spec).get("sysctls") or []]
    # The kernel accepts "/" as separator too; normalise so "net/ipv4/..." is judged like "net.ipv4...".
    unsafe = sorted(name for name in names if name.replace("/", ".") not in SAFE_SYSCTLS)
    return [f"sysctls {unsafe} are not allowed"] if unsafe else []


def _baseline(pod: Pod, spec: Mapping[str, Any]) -> list[str]:
    return [
        *_host_process(spec),
        *_host_namespaces(spec),
        *_privileged(spec),
        *_added_capabilities(spec, _beyond_baseline, BASELINE),
        *_host_path_volumes(spec),
        *_host_ports(spec),
        *_probe_hosts(spec),
        *_apparmor(pod, spec),
        *_selinux(spec),
        *_proc_mount(spec),
        *_seccomp_unconfined(spec),
        *_sysctls(spec),
    ]


# --- restricted -------------------------------------------------------------------------------------


def _volume_types(spec: Mapping[str, Any]) -> list[str]:
    violations = []
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            violations.append(
                f"volume {volume.get('name')!r} of type {sorted(kinds)} is not allowed (restricted)"
            )
    return violations


def _privilege_escalation(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{_label(c)}: must set allowPrivilegeEscalation=false"
        for c in _containers(spec)
        if _security_context(c).get("allowPrivilegeEscalation") is not False
    ]


def _run_as_non_root(spec: Mapping[str, Any]) -> list[str]:
    pod_value = _security_context(spec).get("runAsNonRoot")
    violations = ["the pod must not set runAsNonRoot=false"] if pod_value is False else []
    for container in _containers(spec):
        value = _security_context(container).get("runAsNonRoot")
        if value is False:
            violations.append(f"{_label(container)}: must not set runAsNonRoot=false")
        elif value is None and pod_value is not True:
            violations.append(f"{_label(container)}: must set runAsNonRoot=true (or the pod must)")
    return violations


def _run_as_root_user(spec: Mapping[str, Any]) -> list[str]:
    holders = [("the pod", spec), *((_label(c), c) for c in _containers(spec))]
    return [
        f"{label}: runAsUser=0 is not allowed"
        for label, holder in holders
        if _security_context(holder).get("runAsUser") == 0
    ]


def _seccomp_required(spec: Mapping[str, Any]) -> list[str]:
    allowed = ("RuntimeDefault", "Localhost")
    pod_type = (_security_context(spec).get("seccompProfile") or {}).get("type")
    violations = []
    for container in _containers(spec):
        container_type = (_security_context(container).get("seccompProfile") or {}).get("type")
        effective = container_type or pod_type
        if (
            effective not in allowed and effective != "Unconfined"
        ):  # Unconfined is already a baseline violation
            violations.append(
                f"{_label(container)}: seccompProfile must be RuntimeDefault or Localhost (or the pod's)"
            )
    return violations


def _drop_all_capabilities(spec: Mapping[str, Any]) -> list[str]:
    return [
        f"{_label(c)}: must drop ALL capabilities"
        for c in _containers(spec)
        if "ALL" not in ((_security_context(c).get("capabilities") or {}).get("drop") or [])
    ]


def _restricted(spec: Mapping[str, Any]) -> list[str]:
    violations = [*_volume_types(spec), *_run_as_non_root(spec), *_run_as_root_user(spec)]
    if ((spec.get("os") or {}).get("name")) != "windows":  # Linux-only controls, as in the standard
        violations += [
            *_privilege_escalation(spec),
            *_seccomp_required(spec),
            *_drop_all_capabilities(spec),
            *_added_capabilities(spec, _beyond_restricted, RESTRICTED),
        ]
    return violations


_CHECKS: dict[str, Callable[[Pod, Mapping[str, Any]], list[str]]] = {
    PRIVILEGED: lambda pod, spec: [],
    BASELINE: _baseline,
    RESTRICTED: lambda pod, spec: [*_baseline(pod, spec), *_restricted(spec)],
}


def check_pod(vpod: Pod, level: str) -> list[str]:
    """Human-readable violations of the Pod Security Standard ``level`` (empty: allowed).

    ``privileged`` allows everything; ``restricted`` includes ``baseline``. Unknown levels are an error,
    never "no policy": a typo must not switch enforcement off.
    """
    if level not in _CHECKS:
        raise ValueError(f"unknown pod security level {level!r}; valid: {', '.join(VALID_LEVELS)}")
    return _CHECKS[level](vpod, vpod.get("spec") or {})
