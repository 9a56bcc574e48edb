"""Pod Security Standards: what keeps a tenant's pod off the host."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.translate.podsecurity import BASELINE, PRIVILEGED, RESTRICTED, VALID_LEVELS, check_pod


def pod(container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A plain pod as the API server returns it (defaults filled, kube-api-access mounted)."""
    main = {
        "name": "app",
        "image": "nginx",
        "imagePullPolicy": "Always",
        "volumeMounts": [
            {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        ],
        **(container or {}),
    }
    body: dict[str, Any] = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "containers": [main],
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "volumes": [
                {
                    "name": "kube-api-access-abcde",
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                }
            ],
        },
    }
    body["spec"].update(spec)
    return body


def restricted_pod(**spec: Any) -> dict[str, Any]:
    hardened = {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        }
    }
    return pod(
        hardened, securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, **spec
    )


def test_levels() -> None:
    assert VALID_LEVELS == ("privileged", "baseline", "restricted")
    with pytest.raises(ValueError, match="privileged, baseline, restricted"):
        check_pod(pod(), "strict")


def test_a_default_pod_is_baseline_but_not_restricted() -> None:
    assert check_pod(pod(), BASELINE) == []
    violations = check_pod(pod(), RESTRICTED)
    assert any("allowPrivilegeEscalation" in v for v in violations)
    assert any("runAsNonRoot" in v for v in violations)
    assert any("seccompProfile" in v for v in violations)
    assert any("drop ALL" in v for v in violations)


def test_privileged_allows_anything() -> None:
    assert check_pod(pod({"securityContext": {"privileged": True}}, hostNetwork=True), PRIVILEGED) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (pod(hostNetwork=True), "hostNetwork"),
        (pod(hostPID=True), "hostPID"),
        (pod(hostIPC=True), "hostIPC"),
        (pod({"securityContext": {"privileged": True}}), "privileged"),
        (pod({"securityContext": {"capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}}}), "['SYS_ADMIN']"),
        (pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}]), "hostPath volume 'root'"),
        (pod({"ports": [{"containerPort": 80, "hostPort": 80}]}), "hostPort 80"),
        (pod({"securityContext": {"procMount": "Unmasked"}}), "procMount"),
        (pod(securityContext={"seccompProfile": {"type": "Unconfined"}}), "Unconfined"),
        (pod(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}), "kernel.msgmax"),
        (pod(securityContext={"sysctls": [{"name": "net/core/somaxconn", "value": "1"}]}), "somaxconn"),
        (pod(securityContext={"seLinuxOptions": {"type": "spc_t"}}), "spc_t"),
        (pod({"securityContext": {"seLinuxOptions": {"user": "system_u"}}}), "user and role"),
        (pod({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}), "appArmorProfile"),
        (pod({"securityContext": {"windowsOptions": {"hostProcess": True}}}), "hostProcess"),
        (
            pod({"livenessProbe": {"httpGet": {"host": "169.254.169.254", "path": "/", "port": 80}}}),
            "169.254.169.254",
        ),
        (pod({"lifecycle": {"preStop": {"tcpSocket": {"host": "10.0.0.1", "port": 22}}}}), "10.0.0.1"),
    ],
)
def test_baseline_violations(body: dict[str, Any], expected: str) -> None:
    violations = check_pod(body, BASELINE)
    assert len(violations) == 1, violations
    assert expected in violations[0]
    assert check_pod(body, RESTRICTED)  # restricted includes baseline


def test_apparmor_annotations() -> None:
    body = pod()
    body["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
    assert check_pod(body, BASELINE) == [
        "annotation container.apparmor.security.beta.kubernetes.io/app=unconfined is not allowed"
    ]
    body["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/app"] = (
        "localhost/my-profile"
    )
    assert check_pod(body, BASELINE) == []


def test_init_and_ephemeral_containers_are_checked_too() -> None:
    body = pod(
        initContainers=[{"name": "init", "image": "busybox", "securityContext": {"privileged": True}}],
        ephemeralContainers=[
            {"name": "debug", "image": "busybox", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
        ],
    )
    violations = check_pod(body, BASELINE)
    assert any("'init'" in v and "privileged" in v for v in violations)
    assert any("'debug'" in v and "NET_ADMIN" in v for v in violations)


def test_baseline_allows_safe_settings() -> None:
    body = pod(
        {"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}, "procMount": "Default"}},
        securityContext={
            "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}],
            "seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"},
            "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
        },
    )
    assert check_pod(body, BASELINE) == []


def test_a_hardened_pod_is_restricted() -> None:
    assert check_pod(restricted_pod(), RESTRICTED) == []


@pytest.mark.parametrize(
    ("volume", "allowed"),
    [
        ({"emptyDir": {}}, True),
        ({"persistentVolumeClaim": {"claimName": "data"}}, True),
        ({"csi": {"driver": "x"}}, True),
        ({"ephemeral": {"volumeClaimTemplate": {}}}, True),
        ({"nfs": {"server": "n", "path": "/"}}, False),
        ({"gitRepo": {"repository": "r"}}, False),
        ({"hostPath": {"path": "/tmp"}}, False),
    ],
)
def test_restricted_volume_types(volume: dict[str, Any], allowed: bool) -> None:
    body = restricted_pod()
    body["spec"]["volumes"].append({"name": "v", **volume})
    assert (check_pod(body, RESTRICTED) == []) is allowed


def test_restricted_run_as_non_root_rules() -> None:
    body = restricted_pod()
    body["spec"]["securityContext"]["runAsNonRoot"] = None
    assert any("must set runAsNonRoot=true" in v for v in check_pod(body, RESTRICTED))
    body["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = True
    assert check_pod(body, RESTRICTED) == []
    body["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
    body["spec"]["securityContext"]["runAsNonRoot"] = True
    assert any("must not set runAsNonRoot=false" in v for v in check_pod(body, RESTRICTED))


def test_restricted_forbids_uid_zero_and_extra_capabilities() -> None:
    body = restricted_pod()
    body["spec"]["securityContext"]["runAsUser"] = 0
    body["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["CHOWN"]
    violations = check_pod(body, RESTRICTED)
    assert any("runAsUser=0" in v for v in violations)
    assert any("['CHOWN']" in v and "restricted" in v for v in violations)
    assert check_pod(body, BASELINE) == []


def test_capabilities_beyond_baseline_are_reported_once() -> None:
    body = restricted_pod()
    body["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    assert sum("SYS_ADMIN" in v for v in check_pod(body, RESTRICTED)) == 1


def test_restricted_seccomp_may_be_set_per_container() -> None:
    body = restricted_pod()
    del body["spec"]["securityContext"]["seccompProfile"]
    assert any("seccompProfile" in v for v in check_pod(body, RESTRICTED))
    body["spec"]["containers"][0]["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}
    assert check_pod(body, RESTRICTED) == []


def test_windows_pods_skip_linux_only_restricted_controls() -> None:
    body = pod(securityContext={"runAsNonRoot": True}, os={"name": "windows"})
    assert check_pod(body, RESTRICTED) == []
