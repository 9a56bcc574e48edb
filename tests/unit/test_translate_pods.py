"""Virtual pod → host pod: every rewrite, on pods shaped exactly as a v1.37 API server returns them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer.translate.metadata import selector_matches
from syncer.translate.names import (
    ANN_MANAGED_ANNOTATIONS,
    ANN_OBJECT_KIND,
    ANN_OBJECT_NAME,
    ANN_POD_LABELS,
    ANN_POD_NAME,
    ANN_POD_NAMESPACE,
    ANN_POD_SCHEDULING_GATES,
    ANN_POD_SERVICE_ACCOUNT,
    ANN_POD_UID,
    MARKER_LABEL,
    NAMESPACE_LABEL,
    is_dns1123_label,
)
from syncer.translate.pods import (
    SAFE_TO_EVICT_ANNOTATION,
    SERVICE_ACCOUNT_MOUNT_PATH,
    DnsNotReady,
    PodContext,
    TokenRequestSpec,
    TokenSecretNotReady,
    default_hostname,
    format_labels,
    host_ephemeral_containers,
    host_pod_update,
    host_status_update,
    referenced_configmaps,
    referenced_pvcs,
    referenced_secrets,
    service_link_env,
    token_key,
    token_requests,
    translate_pod,
    virtual_status_update,
    with_service_account_token_volume,
)

KUBE_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
TOKEN_SECRET = "web-sa-token-x-default-x-vc1"
API_ACCESS = "kube-api-access-6slz7"


def api_access_mount() -> dict[str, Any]:
    return {"mountPath": SERVICE_ACCOUNT_MOUNT_PATH, "name": API_ACCESS, "readOnly": True}


def realistic_pod(**spec_overrides: Any) -> dict[str, Any]:
    """A Deployment's pod as the virtual API server returns it after admission (ServiceAccount plugin
    included: the kube-api-access volume and its mount), before any status sync."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": "2026-11-23T09:58:14Z",
            "generateName": "web-7d9c8b6f5d-",
            "generation": 1,
            "labels": {"app": "web", "pod-template-hash": "7d9c8b6f5d"},
            "name": "web-7d9c8b6f5d-x2x9k",
            "namespace": "default",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "blockOwnerDeletion": True,
                    "controller": True,
                    "kind": "ReplicaSet",
                    "name": "web-7d9c8b6f5d",
                    "uid": "6c1d1c64-3a53-4b32-9df0-3bbf2e0e0bb1",
                }
            ],
            "resourceVersion": "255",
            "uid": "aea94510-6e39-4738-838b-25b5d7b0838f",
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
        },
        "spec": {
            "containers": [
                {
                    "env": [{"name": "MODE", "value": "prod"}],
                    "image": "nginx:1.27",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "web",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [api_access_mount()],
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
            ],
            "volumes": [
                {
                    "name": API_ACCESS,
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                    "name": "kube-root-ca.crt",
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                            "path": "namespace",
                                        }
                                    ]
                                }
                            },
                        ],
                    },
                }
            ],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
    pod["spec"].update(spec_overrides)
    return pod


def service(name: str, ip: str, *ports: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": ip, "ports": list(ports)},
    }


def context(**overrides: Any) -> PodContext:
    values: dict[str, Any] = {
        "vcluster": "vc1",
        "host_namespace": "team-a",
        "kube_service_ip": KUBE_IP,
        "dns_ip": DNS_IP,
        "token_secret_name": TOKEN_SECRET,
    }
    values.update(overrides)
    return PodContext(**values)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {env["name"]: env.get("value", env.get("valueFrom")) for env in container["env"]}


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# --- metadata --------------------------------------------------------------------------------------


def test_host_pod_name_namespace_and_labels() -> None:
    meta = translate_pod(realistic_pod(), context())["metadata"]
    assert meta["name"] == "web-7d9c8b6f5d-x2x9k-x-default-x-vc1"
    assert meta["namespace"] == "team-a"
    assert meta["labels"] == {
        "app": "web",
        "pod-template-hash": "7d9c8b6f5d",
        MARKER_LABEL: "vc1",
        NAMESPACE_LABEL: "default",
    }


def test_virtual_bookkeeping_is_not_copied() -> None:
    host = translate_pod(realistic_pod(), context())
    assert set(host["metadata"]) == {"name", "namespace", "labels", "annotations"}
    assert "status" not in host
    assert host["apiVersion"] == "v1" and host["kind"] == "Pod"


def test_pod_annotations_carry_the_virtual_identity() -> None:
    annotations = translate_pod(realistic_pod(), context())["metadata"]["annotations"]
    assert annotations[ANN_POD_NAME] == "web-7d9c8b6f5d-x2x9k"
    assert annotations[ANN_POD_NAMESPACE] == "default"
    assert annotations[ANN_POD_UID] == "aea94510-6e39-4738-838b-25b5d7b0838f"
    assert annotations[ANN_POD_SERVICE_ACCOUNT] == "default"
    assert annotations[ANN_POD_LABELS] == 'app="web"\npod-template-hash="7d9c8b6f5d"'
    assert annotations[ANN_OBJECT_NAME] == "web-7d9c8b6f5d-x2x9k"
    assert annotations[ANN_OBJECT_KIND] == "Pod"


def test_labels_file_format_is_kubelets() -> None:
    assert format_labels({"b": "2", "a": "x.y_z-1"}) == 'a="x.y_z-1"\nb="2"'
    assert format_labels(None) == ""


def test_workload_pods_are_safe_to_evict_bare_pods_are_not() -> None:
    annotations = translate_pod(realistic_pod(), context())["metadata"]["annotations"]
    assert annotations[SAFE_TO_EVICT_ANNOTATION] == "true"
    assert SAFE_TO_EVICT_ANNOTATION in annotations[ANN_MANAGED_ANNOTATIONS].split("\n")
    bare = realistic_pod()
    del bare["metadata"]["ownerReferences"]
    assert SAFE_TO_EVICT_ANNOTATION not in translate_pod(bare, context())["metadata"]["annotations"]


def test_tenants_safe_to_evict_wins() -> None:
    pod = realistic_pod()
    pod["metadata"]["annotations"] = {SAFE_TO_EVICT_ANNOTATION: "false"}
    assert translate_pod(pod, context())["metadata"]["annotations"][SAFE_TO_EVICT_ANNOTATION] == "false"


def test_input_is_not_mutated() -> None:
    pod = realistic_pod()
    before = copy.deepcopy(pod)
    translate_pod(pod, context())
    assert pod == before


# --- service account and tokens --------------------------------------------------------------------


def test_no_host_token_and_no_host_service_account_by_default() -> None:
    spec = translate_pod(realistic_pod(), context())["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec and "serviceAccount" not in spec


def test_configured_host_service_account() -> None:
    spec = translate_pod(realistic_pod(), context(host_service_account="vc-workload"))["spec"]
    assert spec["serviceAccountName"] == "vc-workload"
    assert spec["automountServiceAccountToken"] is False


def test_kube_api_access_volume_reads_token_ca_and_namespace_from_virtual_sources() -> None:
    spec = translate_pod(realistic_pod(), context())["spec"]
    (volume,) = spec["volumes"]
    assert volume["name"] == API_ACCESS and volume["projected"]["defaultMode"] == 420
    token, ca, namespace = volume["projected"]["sources"]
    assert token == {
        "secret": {"name": TOKEN_SECRET, "items": [{"key": token_key(None, 3607), "path": "token"}]}
    }
    assert ca["configMap"]["name"] == "kube-root-ca.crt-x-default-x-vc1"
    assert namespace["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == (
        f"metadata.annotations['{ANN_POD_NAMESPACE}']"
    )
    assert spec["containers"][0]["volumeMounts"] == [api_access_mount()]


def test_tokens_never_travel_in_annotations() -> None:
    annotations = translate_pod(realistic_pod(), context())["metadata"]["annotations"]
    assert not [key for key in annotations if "token" in key]


def test_token_requests_list_what_to_mint() -> None:
    pod = realistic_pod()
    pod["spec"]["volumes"].append(
        {
            "name": "vault",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "a"}},
                    {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "b"}},
                ]
            },
        }
    )
    assert token_requests(pod) == [
        TokenRequestSpec(token_key(None, 3607), None, 3607),
        TokenRequestSpec(token_key("vault", 600), "vault", 600),
    ]
    sources = translate_pod(pod, context())["spec"]["volumes"][1]["projected"]["sources"]
    assert [source["secret"]["items"][0] for source in sources] == [
        {"key": token_key("vault", 600), "path": "a"},
        {"key": token_key("vault", 600), "path": "b"},
    ]


def test_token_keys_are_valid_stable_and_distinguish_requests() -> None:
    key = token_key("https://kubernetes.default.svc.cluster.local", 3607)
    assert key == token_key("https://kubernetes.default.svc.cluster.local", 3607)
    assert key.startswith("token-") and all(c.isalnum() or c in "-._" for c in key)
    assert len({token_key(None, 3600), token_key("", 3600), token_key("a", 3600), token_key(None, 3601)}) == 3


def test_missing_expiration_defaults_like_the_api_server() -> None:
    pod = realistic_pod()
    del pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"]
    assert token_requests(pod)[0].expiration_seconds == 3600


def test_tokens_without_a_secret_are_not_ready() -> None:
    with pytest.raises(TokenSecretNotReady):
        translate_pod(realistic_pod(), context(token_secret_name=None))
    no_tokens = realistic_pod(automountServiceAccountToken=False, volumes=[])
    no_tokens["spec"]["containers"][0]["volumeMounts"] = []
    assert translate_pod(no_tokens, context(token_secret_name=None))["spec"]["volumes"] == []


def test_admission_emulation_changes_nothing_on_an_admitted_pod() -> None:
    pod = realistic_pod()
    assert with_service_account_token_volume(pod) == pod


def test_admission_emulation_adds_the_volume_to_every_container_without_the_mount() -> None:
    pod = realistic_pod(volumes=[], initContainers=[{"name": "init", "image": "busybox"}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "own", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]
    emulated = with_service_account_token_volume(pod)
    (volume,) = emulated["spec"]["volumes"]
    assert volume["name"].startswith("kube-api-access-")
    assert emulated["spec"]["initContainers"][0]["volumeMounts"] == [
        {"name": volume["name"], "readOnly": True, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}
    ]
    assert emulated["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "own", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}
    ]
    assert token_requests(emulated) == [TokenRequestSpec(token_key(None, 3607), None, 3607)]
    assert referenced_configmaps(emulated) == {"kube-root-ca.crt"}
    assert pod["spec"]["volumes"] == []  # the input is untouched


def test_admission_emulation_respects_the_pods_opt_out() -> None:
    pod = realistic_pod(volumes=[], automountServiceAccountToken=False)
    pod["spec"]["containers"][0]["volumeMounts"] = []
    assert with_service_account_token_volume(pod) == pod


# --- env -------------------------------------------------------------------------------------------


def test_kubernetes_env_points_at_the_syncer_service_and_comes_first() -> None:
    (container,) = translate_pod(realistic_pod(), context())["spec"]["containers"]
    names = [env["name"] for env in container["env"]]
    assert names[-1] == "MODE"
    assert env_of(container) == {
        "KUBERNETES_SERVICE_HOST": KUBE_IP,
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": f"tcp://{KUBE_IP}:443",
        "KUBERNETES_PORT_443_TCP": f"tcp://{KUBE_IP}:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": KUBE_IP,
        "MODE": "prod",
    }


def test_user_defined_names_win() -> None:
    pod = realistic_pod()
    pod["spec"]["containers"][0]["env"].insert(0, {"name": "KUBERNETES_SERVICE_HOST", "value": "mine"})
    env = translate_pod(pod, context())["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "KUBERNETES_SERVICE_HOST"] == [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "mine"}
    ]


def test_service_links_from_virtual_services_like_kubelet() -> None:
    services = [
        service(
            "db-main",
            "10.96.5.5",
            {"name": "pg", "port": 5432, "protocol": "TCP"},
            {"name": "metrics", "port": 9187},
        ),
        service("headless", "None", {"port": 80}),
        service("external", "", {"port": 80}),
        service("kubernetes", "10.96.9.9", {"name": "https", "port": 443}),  # default/kubernetes: ctx wins
        service("elsewhere", "10.96.7.7", {"port": 1}, namespace="other"),
    ]
    (container,) = translate_pod(realistic_pod(), context(service_env=services))["spec"]["containers"]
    env = env_of(container)
    assert env["DB_MAIN_SERVICE_HOST"] == "10.96.5.5"
    assert env["DB_MAIN_SERVICE_PORT"] == "5432"
    assert env["DB_MAIN_SERVICE_PORT_PG"] == "5432"
    assert env["DB_MAIN_SERVICE_PORT_METRICS"] == "9187"
    assert env["DB_MAIN_PORT"] == "tcp://10.96.5.5:5432"
    assert env["DB_MAIN_PORT_9187_TCP"] == "tcp://10.96.5.5:9187"
    assert env["DB_MAIN_PORT_5432_TCP_PROTO"] == "tcp"
    assert env["DB_MAIN_PORT_5432_TCP_ADDR"] == "10.96.5.5"
    assert env["KUBERNETES_SERVICE_HOST"] == KUBE_IP
    assert not [name for name in env if name.startswith(("HEADLESS", "EXTERNAL", "ELSEWHERE"))]


def test_kubernetes_service_in_another_namespace_overrides_like_kubelet() -> None:
    pod = realistic_pod()
    pod["metadata"]["namespace"] = "apps"
    ctx = context(service_env=[service("kubernetes", "10.96.3.3", {"port": 8080}, namespace="apps")])
    env = env_of(translate_pod(pod, ctx)["spec"]["containers"][0])
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.3.3"


def test_no_service_links_when_the_virtual_pod_disabled_them() -> None:
    ctx = context(service_env=[service("db", "10.96.5.5", {"port": 5432})])
    host = translate_pod(realistic_pod(enableServiceLinks=False), ctx)
    env = env_of(host["spec"]["containers"][0])
    assert "DB_SERVICE_HOST" not in env and env["KUBERNETES_SERVICE_HOST"] == KUBE_IP
    assert host["spec"]["enableServiceLinks"] is False


def test_host_never_gets_host_service_links() -> None:
    assert translate_pod(realistic_pod(), context())["spec"]["enableServiceLinks"] is False


def test_ipv6_and_udp_link_variables() -> None:
    env = {
        e["name"]: e["value"]
        for e in service_link_env(service("dns", "fd00::a", {"name": "dns", "port": 53, "protocol": "UDP"}))
    }
    assert env["DNS_PORT"] == "udp://[fd00::a]:53"
    assert env["DNS_PORT_53_UDP_PROTO"] == "udp"
    assert env["DNS_PORT_53_UDP_ADDR"] == "fd00::a"


def test_init_containers_get_the_same_env() -> None:
    pod = realistic_pod(
        initContainers=[
            {
                "name": "init",
                "image": "busybox",
                "env": [{"name": "X", "value": "$(KUBERNETES_SERVICE_HOST)"}],
            }
        ]
    )
    (init,) = translate_pod(pod, context())["spec"]["initContainers"]
    assert init["env"][0] == {"name": "KUBERNETES_SERVICE_HOST", "value": KUBE_IP}
    assert init["env"][-1] == {"name": "X", "value": "$(KUBERNETES_SERVICE_HOST)"}


# --- networking: aliases, DNS, hostname -------------------------------------------------------------


def test_kubernetes_host_aliases_follow_the_tenants() -> None:
    pod = realistic_pod(hostAliases=[{"ip": "1.2.3.4", "hostnames": ["db"]}])
    aliases = translate_pod(pod, context(cluster_domain="corp.local"))["spec"]["hostAliases"]
    assert aliases == [
        {"ip": "1.2.3.4", "hostnames": ["db"]},
        {
            "ip": KUBE_IP,
            "hostnames": [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.corp.local",
            ],
        },
    ]


def test_cluster_first_uses_the_virtual_dns() -> None:
    spec = translate_pod(realistic_pod(), context())["spec"]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"] == {
        "nameservers": [DNS_IP],
        "searches": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        "options": [{"name": "ndots", "value": "5"}],
    }


def test_tenant_dns_config_is_merged_like_kubelet() -> None:
    dns_config = {
        "nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"],
        "searches": ["example.com", "svc.cluster.local"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    spec = translate_pod(realistic_pod(dnsConfig=dns_config), context())["spec"]
    assert spec["dnsConfig"] == {
        "nameservers": [DNS_IP, "1.1.1.1", "8.8.8.8"],
        "searches": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.com"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }


def test_search_list_is_cut_to_what_the_api_server_accepts() -> None:
    searches = [f"d{i}.{'x' * 60}.example.com" for i in range(40)]
    result = translate_pod(realistic_pod(dnsConfig={"searches": searches}), context())["spec"]["dnsConfig"][
        "searches"
    ]
    assert len(result) <= 32 and len(" ".join(result)) <= 2048
    assert result[:3] == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def test_cluster_first_with_host_net_uses_the_virtual_dns_too() -> None:
    spec = translate_pod(realistic_pod(dnsPolicy="ClusterFirstWithHostNet", hostNetwork=True), context())[
        "spec"
    ]
    assert spec["dnsPolicy"] == "None" and spec["dnsConfig"]["nameservers"] == [DNS_IP]


@pytest.mark.parametrize(
    ("policy", "host_network"), [("Default", False), ("ClusterFirst", True), ("None", False)]
)
def test_other_dns_policies_are_left_alone(policy: str, host_network: bool) -> None:
    tenant_config = {"nameservers": ["1.1.1.1"]}
    pod = realistic_pod(dnsPolicy=policy, hostNetwork=host_network, dnsConfig=tenant_config)
    spec = translate_pod(pod, context(dns_ip=None))["spec"]
    assert spec["dnsPolicy"] == policy and spec["dnsConfig"] == tenant_config


def test_missing_dns_service_is_not_ready() -> None:
    with pytest.raises(DnsNotReady):
        translate_pod(realistic_pod(), context(dns_ip=None))


def test_hostname_defaults_to_the_virtual_name() -> None:
    assert translate_pod(realistic_pod(), context())["spec"]["hostname"] == "web-7d9c8b6f5d-x2x9k"
    assert translate_pod(realistic_pod(hostname="mine"), context())["spec"]["hostname"] == "mine"


def test_hostname_cut_never_ends_in_a_dash() -> None:
    dotted = "a" * 62 + ".b"  # the dot becomes a dash at position 63
    assert default_hostname(dotted) == "a" * 62
    assert default_hostname("web.v1") == "web-v1"


def test_subdomain_is_not_copied() -> None:
    assert (
        "subdomain" not in translate_pod(realistic_pod(hostname="web-0", subdomain="web"), context())["spec"]
    )


@given(
    st.lists(
        st.from_regex(r"[a-z0-9]([-a-z0-9]{0,70}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4
    ).map(".".join)
)
def test_default_hostname_is_always_a_valid_label(name: str) -> None:
    assert is_dns1123_label(default_hostname(name))


# --- references --------------------------------------------------------------------------------------


def pod_with_references() -> dict[str, Any]:
    pod = realistic_pod()
    spec = pod["spec"]
    spec["imagePullSecrets"] = [{"name": "regcred"}]
    container = spec["containers"][0]
    container["env"] += [
        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k", "optional": True}}},
    ]
    container["envFrom"] = [
        {"configMapRef": {"name": "cfg2"}},
        {"secretRef": {"name": "sec2"}, "prefix": "P_"},
    ]
    spec["volumes"] += [
        {"name": "cm", "configMap": {"name": "app.config", "defaultMode": 420}},
        {"name": "s", "secret": {"secretName": "tls", "defaultMode": 420}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {
            "name": "mix",
            "projected": {"sources": [{"secret": {"name": "p-sec"}}, {"configMap": {"name": "p-cm"}}]},
        },
        {"name": "csi", "csi": {"driver": "secrets-store", "nodePublishSecretRef": {"name": "csi-creds"}}},
        {"name": "az", "azureFile": {"secretName": "az-creds", "shareName": "s"}},
        {
            "name": "scratch",
            "ephemeral": {
                "volumeClaimTemplate": {
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }
            },
        },
    ]
    return pod


def test_referenced_objects_are_listed() -> None:
    pod = pod_with_references()
    assert referenced_configmaps(pod) == {"kube-root-ca.crt", "cfg", "cfg2", "app.config", "p-cm"}
    assert referenced_secrets(pod) == {"regcred", "sec", "sec2", "tls", "p-sec", "csi-creds", "az-creds"}
    assert referenced_pvcs(pod) == {"data", "web-7d9c8b6f5d-x2x9k-scratch"}


def test_every_reference_is_renamed() -> None:
    spec = translate_pod(pod_with_references(), context())["spec"]

    def h(name: str) -> str:
        return f"{name}-x-default-x-vc1"

    assert spec["imagePullSecrets"] == [{"name": h("regcred")}]
    env = env_of(spec["containers"][0])
    assert env["CM"]["configMapKeyRef"] == {"name": h("cfg"), "key": "k"}
    assert env["S"]["secretKeyRef"] == {"name": h("sec"), "key": "k", "optional": True}
    assert spec["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": h("cfg2")}},
        {"secretRef": {"name": h("sec2")}, "prefix": "P_"},
    ]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["cm"]["configMap"]["name"] == h("app.config")
    assert volumes["s"]["secret"]["secretName"] == h("tls")
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == h("data")
    assert volumes["mix"]["projected"]["sources"] == [
        {"secret": {"name": h("p-sec")}},
        {"configMap": {"name": h("p-cm")}},
    ]
    assert volumes["csi"]["csi"]["nodePublishSecretRef"]["name"] == h("csi-creds")
    assert volumes["az"]["azureFile"]["secretName"] == h("az-creds")


def test_ephemeral_volumes_use_the_claim_the_virtual_controller_creates() -> None:
    volumes = {v["name"]: v for v in translate_pod(pod_with_references(), context())["spec"]["volumes"]}
    assert volumes["scratch"] == {
        "name": "scratch",
        "persistentVolumeClaim": {"claimName": "web-7d9c8b6f5d-x2x9k-scratch-x-default-x-vc1"},
    }


def test_every_renamed_reference_is_reported() -> None:
    """What translate_pod renames and what referenced_* reports come from one walk."""
    pod = pod_with_references()
    text = json.dumps(translate_pod(pod, context())["spec"])
    for name in referenced_configmaps(pod) | referenced_secrets(pod) | referenced_pvcs(pod):
        assert f'"{name}-x-default-x-vc1"' in text, name


# --- downward API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_path", "annotation"),
    [
        ("metadata.name", ANN_POD_NAME),
        ("metadata.namespace", ANN_POD_NAMESPACE),
        ("metadata.uid", ANN_POD_UID),
        ("spec.serviceAccountName", ANN_POD_SERVICE_ACCOUNT),
    ],
)
def test_env_field_refs_read_virtual_values(field_path: str, annotation: str) -> None:
    pod = realistic_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": "V", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}
    ]
    env = translate_pod(pod, context())["spec"]["containers"][0]["env"]
    assert env[-1]["valueFrom"]["fieldRef"] == {
        "apiVersion": "v1",
        "fieldPath": f"metadata.annotations['{annotation}']",
    }


def test_volume_field_refs_read_virtual_values_and_others_are_kept() -> None:
    items = [
        {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
        {"path": "app", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app']"}},
        {"path": "node", "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "web", "resource": "limits.cpu"}},
    ]
    pod = realistic_pod()
    pod["spec"]["volumes"].append({"name": "info", "downwardAPI": {"items": items}})
    (info,) = [v for v in translate_pod(pod, context())["spec"]["volumes"] if v["name"] == "info"]
    paths = [item.get("fieldRef", {}).get("fieldPath") for item in info["downwardAPI"]["items"]]
    assert paths == [
        f"metadata.annotations['{ANN_POD_LABELS}']",
        "metadata.labels['app']",
        "spec.nodeName",
        None,
    ]


# --- scheduling ------------------------------------------------------------------------------------


def test_affinity_terms_are_scoped_to_the_tenant() -> None:
    affinity = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "namespaces": ["prod", "stage"],
                        "topologyKey": "topology.kubernetes.io/zone",
                    },
                }
            ]
        },
    }
    result = translate_pod(realistic_pod(affinity=affinity), context())["spec"]["affinity"]
    (required,) = result["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required == {
        "labelSelector": {"matchLabels": {"app": "db", MARKER_LABEL: "vc1", NAMESPACE_LABEL: "default"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    (preferred,) = result["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["weight"] == 10
    assert preferred["podAffinityTerm"] == {
        "labelSelector": {
            "matchLabels": {"app": "web", MARKER_LABEL: "vc1"},
            "matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "In", "values": ["prod", "stage"]}],
        },
        "topologyKey": "topology.kubernetes.io/zone",
    }


def term_selector(term: dict[str, Any], ctx: PodContext | None = None) -> dict[str, Any] | None:
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    host = translate_pod(realistic_pod(affinity=affinity), ctx or context())
    (translated,) = host["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert "namespaces" not in translated and "namespaceSelector" not in translated
    selector: dict[str, Any] | None = translated.get("labelSelector")
    return selector


def test_namespace_selector_is_resolved_against_virtual_namespace_labels() -> None:
    ctx = context(
        namespace_labels={"prod": {"tier": "backend"}, "dev": {"tier": "frontend"}, "qa": {"tier": "backend"}}
    )
    term = {
        "labelSelector": {},
        "namespaces": ["dev"],
        "namespaceSelector": {"matchLabels": {"tier": "backend"}},
        "topologyKey": "k",
    }
    selector = term_selector(term, ctx)
    assert selector is not None
    assert selector["matchExpressions"] == [
        {"key": NAMESPACE_LABEL, "operator": "In", "values": ["dev", "prod", "qa"]}
    ]


def test_empty_namespace_selector_means_all_of_the_tenants_namespaces() -> None:
    selector = term_selector(
        {"labelSelector": {"matchLabels": {"app": "x"}}, "namespaceSelector": {}, "topologyKey": "k"}
    )
    assert selector == {"matchLabels": {"app": "x", MARKER_LABEL: "vc1"}}


def test_namespace_selector_matching_nothing_matches_nothing() -> None:
    term = {"labelSelector": {}, "namespaceSelector": {"matchLabels": {"tier": "none"}}, "topologyKey": "k"}
    selector = term_selector(term)
    assert not selector_matches(selector, {MARKER_LABEL: "vc1", NAMESPACE_LABEL: "default"})


def test_null_label_selector_still_matches_nothing() -> None:
    assert term_selector({"topologyKey": "k"}) is None


def test_match_label_keys_are_folded_into_the_selector() -> None:
    pod = realistic_pod(
        affinity={
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "matchLabelKeys": ["pod-template-hash", "absent"],
                        "mismatchLabelKeys": ["app"],
                        "topologyKey": "k",
                    }
                ]
            }
        }
    )
    term = translate_pod(pod, context())["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ][0]
    assert "matchLabelKeys" not in term and "mismatchLabelKeys" not in term
    assert term["labelSelector"]["matchExpressions"] == [
        {"key": "pod-template-hash", "operator": "In", "values": ["7d9c8b6f5d"]}
    ]  # "app" is already in the selector, "absent" is not a label of the pod


def test_match_label_keys_already_merged_by_the_api_server_are_not_merged_twice() -> None:
    merged = {"key": "pod-template-hash", "operator": "In", "values": ["7d9c8b6f5d"]}
    term = {
        "labelSelector": {"matchExpressions": [merged]},
        "matchLabelKeys": ["pod-template-hash"],
        "topologyKey": "k",
    }
    selector = term_selector(term)
    assert selector is not None and selector["matchExpressions"] == [merged]


def test_topology_spread_is_scoped_to_the_tenant_namespace() -> None:
    constraint = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}},
        "matchLabelKeys": ["pod-template-hash"],
    }
    (result,) = translate_pod(realistic_pod(topologySpreadConstraints=[constraint]), context())["spec"][
        "topologySpreadConstraints"
    ]
    assert result == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {
            "matchLabels": {"app": "web", MARKER_LABEL: "vc1", NAMESPACE_LABEL: "default"},
            "matchExpressions": [{"key": "pod-template-hash", "operator": "In", "values": ["7d9c8b6f5d"]}],
        },
    }


def test_priority_is_cleared_unless_priority_classes_are_synced() -> None:
    pod = realistic_pod(priorityClassName="high", priority=1000)
    spec = translate_pod(pod, context())["spec"]
    assert not {"priorityClassName", "priority", "preemptionPolicy"} & set(spec)
    synced = translate_pod(pod, context(sync_priority_classes=True))["spec"]
    assert synced["priorityClassName"] == "vcluster-high-x-team-a-x-vc1"
    assert "priority" not in synced and "preemptionPolicy" not in synced


def test_kept_verbatim_and_dropped_fields() -> None:
    pod = realistic_pod(
        nodeName="node-1",
        nodeSelector={"disk": "ssd"},
        overhead={"cpu": "250m"},
        runtimeClassName="kata",
        schedulingGates=[{"name": "example.com/wait"}],
        ephemeralContainers=[{"name": "debug", "image": "busybox"}],
    )
    spec = translate_pod(pod, context())["spec"]
    assert spec["nodeName"] == "node-1" and spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == realistic_pod()["spec"]["tolerations"]
    assert spec["runtimeClassName"] == "kata"
    assert spec["schedulingGates"] == [{"name": "example.com/wait"}]
    assert "overhead" not in spec and "ephemeralContainers" not in spec
    assert "nodeName" not in translate_pod(realistic_pod(), context())["spec"]


# --- updates ---------------------------------------------------------------------------------------


def created(vpod: dict[str, Any], ctx: PodContext | None = None) -> dict[str, Any]:
    """The host pod as the host API server returns it after create: defaulted and with a status."""
    host = translate_pod(vpod, ctx or context())
    host["metadata"].update({"uid": "host-uid", "resourceVersion": "7"})
    host["spec"]["tolerations"] = [*host["spec"]["tolerations"], {"key": "host-only", "operator": "Exists"}]
    host["spec"]["nodeName"] = "node-1"
    host["status"] = {"phase": "Running"}
    return host


def test_fresh_host_pod_needs_no_update() -> None:
    assert host_pod_update(realistic_pod(), created(realistic_pod()), context()) is None


def test_update_ignores_dns_and_token_state() -> None:
    assert (
        host_pod_update(
            realistic_pod(), created(realistic_pod()), context(dns_ip=None, token_secret_name=None)
        )
        is None
    )


def test_image_changes_are_propagated_with_complete_lists() -> None:
    vpod = realistic_pod(initContainers=[{"name": "init", "image": "busybox:1"}])
    host = created(vpod)
    vpod["spec"]["containers"][0]["image"] = "nginx:1.28"
    vpod["spec"]["initContainers"][0]["image"] = "busybox:2"
    patch = host_pod_update(vpod, host, context())
    assert patch is not None and set(patch) == {"spec"}
    assert patch["spec"]["containers"] == [{**host["spec"]["containers"][0], "image": "nginx:1.28"}]
    assert patch["spec"]["initContainers"][0]["image"] == "busybox:2"
    assert host_pod_update(vpod, apply_merge_patch(host, patch), context()) is None


def test_active_deadline_can_be_set_or_lowered_only() -> None:
    host = created(realistic_pod(activeDeadlineSeconds=100))
    assert host_pod_update(realistic_pod(activeDeadlineSeconds=50), host, context()) == {
        "spec": {"activeDeadlineSeconds": 50}
    }
    assert host_pod_update(realistic_pod(activeDeadlineSeconds=200), host, context()) is None
    unset = created(realistic_pod())
    assert host_pod_update(realistic_pod(activeDeadlineSeconds=10), unset, context()) == {
        "spec": {"activeDeadlineSeconds": 10}
    }


def test_tolerations_are_only_added() -> None:
    host = created(realistic_pod())
    vpod = realistic_pod()
    vpod["spec"]["tolerations"].append({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"})
    patch = host_pod_update(vpod, host, context())
    assert patch == {
        "spec": {
            "tolerations": [
                *host["spec"]["tolerations"],
                {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
            ]
        }
    }


def test_labels_and_annotations_follow_the_tenant_and_host_only_keys_survive() -> None:
    vpod = realistic_pod()
    vpod["metadata"]["annotations"] = {"note": "old"}
    host = created(vpod)
    host["metadata"]["annotations"]["host-tool/seen"] = "yes"
    host["metadata"]["labels"]["host-tool"] = "yes"
    vpod["metadata"]["labels"] = {"app": "web", "version": "2"}
    vpod["metadata"]["annotations"] = {"new": "1"}
    patch = host_pod_update(vpod, host, context())
    assert patch is not None
    assert patch["metadata"]["labels"] == {"version": "2", "pod-template-hash": None}
    annotations = patch["metadata"]["annotations"]
    assert annotations["note"] is None and annotations["new"] == "1"
    assert annotations[ANN_POD_LABELS] == 'app="web"\nversion="2"'
    assert "host-tool/seen" not in annotations
    patched = apply_merge_patch(host, patch)
    assert patched["metadata"]["labels"]["host-tool"] == "yes"
    assert host_pod_update(vpod, patched, context()) is None


def test_removed_scheduling_gates_are_removed_and_host_gates_kept() -> None:
    gates = [{"name": "example.com/a"}, {"name": "example.com/b"}]
    vpod = realistic_pod(schedulingGates=gates)
    host = created(vpod)
    assert host["metadata"]["annotations"][ANN_POD_SCHEDULING_GATES] == "example.com/a\nexample.com/b"
    host["spec"]["schedulingGates"] = [*gates, {"name": "host.example/quota"}]
    vpod["spec"]["schedulingGates"] = [{"name": "example.com/b"}]
    patch = host_pod_update(vpod, host, context())
    assert patch is not None
    assert patch["spec"]["schedulingGates"] == [{"name": "example.com/b"}, {"name": "host.example/quota"}]
    assert patch["metadata"]["annotations"] == {ANN_POD_SCHEDULING_GATES: "example.com/b"}
    patched = apply_merge_patch(host, patch)
    assert host_pod_update(vpod, patched, context()) is None
    del vpod["spec"]["schedulingGates"]
    last = host_pod_update(vpod, patched, context())
    assert last is not None and last["spec"]["schedulingGates"] == [{"name": "host.example/quota"}]
    assert last["metadata"]["annotations"] == {ANN_POD_SCHEDULING_GATES: None}


def test_ephemeral_containers_are_added_through_the_subresource() -> None:
    vpod = realistic_pod()
    host = created(vpod)
    assert host_ephemeral_containers(vpod, host, context()) is None
    debug = {
        "name": "debug",
        "image": "busybox",
        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }
    vpod["spec"]["ephemeralContainers"] = [debug]
    (translated,) = host_ephemeral_containers(vpod, host, context()) or []
    assert env_of(translated)["KUBERNETES_SERVICE_HOST"] == KUBE_IP
    assert (
        translated["env"][-1]["valueFrom"]["fieldRef"]["fieldPath"]
        == f"metadata.annotations['{ANN_POD_NAME}']"
    )
    host["spec"]["ephemeralContainers"] = [translated]
    assert host_ephemeral_containers(vpod, host, context()) is None


# --- status ------------------------------------------------------------------------------------------


def running_status() -> dict[str, Any]:
    return {
        "phase": "Running",
        "observedGeneration": 3,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "observedGeneration": 3, "lastProbeTime": None},
            {"type": "Ready", "status": "True"},
        ],
        "hostIP": "10.0.0.5",
        "hostIPs": [{"ip": "10.0.0.5"}],
        "podIP": "10.244.1.7",
        "podIPs": [{"ip": "10.244.1.7"}],
        "startTime": "2026-11-23T10:00:00Z",
        "qosClass": "BestEffort",
        "containerStatuses": [
            {
                "name": "web",
                "ready": True,
                "restartCount": 0,
                "image": "nginx:1.27",
                "state": {"running": {"startedAt": "2026-11-23T10:00:01Z"}},
            }
        ],
    }


def test_host_status_is_copied_back() -> None:
    vpod = realistic_pod()
    host = created(vpod)
    host["status"] = running_status()
    status = virtual_status_update(vpod, host)
    assert status is not None
    assert (
        status["phase"] == "Running"
        and status["podIP"] == "10.244.1.7"
        and status["hostIPs"] == [{"ip": "10.0.0.5"}]
    )
    assert status["containerStatuses"] == running_status()["containerStatuses"]
    assert "observedGeneration" not in status
    assert all("observedGeneration" not in condition for condition in status["conditions"])
    vpod["status"] = status
    assert virtual_status_update(vpod, host) is None


def test_virtual_qos_class_is_immutable() -> None:
    vpod = realistic_pod()
    host = created(vpod)
    host["status"] = {**running_status(), "qosClass": "Burstable"}
    status = virtual_status_update(vpod, host)
    assert status is not None and status["qosClass"] == "BestEffort"


def test_readiness_gate_conditions_belong_to_the_virtual_side() -> None:
    vpod = realistic_pod(readinessGates=[{"conditionType": "example.com/ready"}])
    gate = {"type": "example.com/ready", "status": "True"}
    vpod["status"]["conditions"] = [gate]
    host = created(vpod)
    host["status"] = running_status()
    host["status"]["conditions"].append({"type": "example.com/ready", "status": "False"})
    status = virtual_status_update(vpod, host)
    assert status is not None and gate in status["conditions"]
    assert {"type": "example.com/ready", "status": "False"} not in status["conditions"]
    patch = host_status_update(vpod, host)
    assert patch is not None
    assert patch["status"]["conditions"][-1] == gate
    assert [c["type"] for c in patch["status"]["conditions"]] == [
        "PodScheduled",
        "Ready",
        "example.com/ready",
    ]
    assert host_status_update(vpod, apply_merge_patch(host, patch)) is None
    assert host_status_update(realistic_pod(), host) is None


def test_host_names_do_not_leak_into_virtual_status() -> None:
    vpod = pod_with_references()
    host = created(vpod)
    host_pod = host["metadata"]["name"]
    host["status"] = {
        "phase": "Pending",
        "message": f"Pod team-a/{host_pod} was rejected",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "message": 'persistentvolumeclaim "data-x-default-x-vc1" not found',
            }
        ],
        "containerStatuses": [
            {
                "name": "web",
                "state": {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": 'configmap "cfg-x-default-x-vc1" not found',
                    }
                },
                "lastState": {"terminated": {"message": f"killed {host_pod}"}},
            }
        ],
    }
    status = virtual_status_update(vpod, host)
    text = json.dumps(status)
    assert "-x-default-x-vc1" not in text and "team-a" not in text
    assert status is not None and status["message"] == "Pod default/web-7d9c8b6f5d-x2x9k was rejected"
    assert 'configmap \\"cfg\\" not found' in text
