"""The Helm chart (charts/vcluster), rendered by the real `helm` binary (built by hack/build-k8s.sh).

`helm lint`, then `helm template` with the defaults and with each documented option: the k3s
args, the syncer args (parsed by the syncer's own CLI, so a flag the syncer lacks fails here), the
Role (exactly syncer.host_rbac.HOST_ROLE_RULES), storage, Services, and the schema refusing wrong
types with a message that names the key. The k3s wrapper script is run with /bin/sh.

Without a built helm these tests are skipped (unit tests run without the Kubernetes binaries);
hack/test builds it first, so CI always runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import cli as vcluster_cli
from controlplane.local.binaries import cache_root
from syncer import cli as syncer_cli
from syncer.host_rbac import HOST_ROLE_RULES, STORAGE_CLASS_CLUSTER_RULES
from syncer.options import DEFAULT_ENABLED
from tests.support import eventually

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vcluster"
RELEASE = "my-vc"
NAMESPACE = "team-a"

Manifest = dict[str, Any]


def helm_binary() -> Path | None:
    explicit = os.environ.get("VCLUSTER_PY_BIN_DIR")
    path = (Path(explicit) if explicit else cache_root() / "bin") / "helm"
    return path if path.is_file() else None


def helm_env(home: Path) -> dict[str, str]:
    """Helm's cache/config/data dirs in `home`: the tests never read or write the user's Helm state."""
    env = dict(os.environ)
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[var] = str(home / sub)
    return env


def run_helm(
    helm: Path, home: Path, *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=timeout, env=helm_env(home), cwd=REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


@pytest.fixture(scope="module")
def helm() -> Path:
    found = helm_binary()
    if found is None:
        pytest.skip("helm is not built yet: run hack/build-k8s.sh (hack/test does)")
    return found


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


Render = Callable[..., list[Manifest]]


@pytest.fixture(scope="module")
def render(helm: Path, helm_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """`helm template` with `values` given as a values file (so commas and types survive as written)."""
    counter = iter(range(1_000_000))

    def run(
        values: dict[str, Any] | None = None,
        *extra: str,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
    ) -> list[Manifest]:
        args = ["template", release, str(CHART), "--namespace", namespace]
        if values:
            path = tmp_path_factory.getbasetemp() / f"values-{next(counter)}.json"
            path.write_text(json.dumps(values))
            args += ["--values", str(path)]
        out = run_helm(helm, helm_home, *args, *extra).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    return run


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in found]}"
    )
    return found[0]


def kinds(manifests: list[Manifest]) -> set[tuple[str, str]]:
    return {(m["kind"], m["metadata"]["name"]) for m in manifests}


def pod_spec(manifests: list[Manifest]) -> Manifest:
    spec: Manifest = find(manifests, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def container(manifests: list[Manifest], name: str) -> Manifest:
    (found,) = [c for c in pod_spec(manifests)["containers"] if c["name"] == name]
    return found


def k3s_args(manifests: list[Manifest]) -> list[str]:
    args: list[str] = container(manifests, "vcluster")["args"]
    return args


def syncer_args(manifests: list[Manifest]) -> list[str]:
    args: list[str] = container(manifests, "syncer")["args"]
    return args


def parse_syncer(args: list[str]) -> Any:
    """The chart's syncer command line, parsed by the real `vcluster-py` CLI (unknown flags fail)."""
    ns = vcluster_cli.build_parser().parse_args(args)
    assert ns.command == "syncer"
    return syncer_cli.options_from_args(ns)


# ---------------------------------------------------------------------------------------------------
# lint and defaults


def test_helm_lint_strict(helm: Path, helm_home: Path) -> None:
    out = run_helm(helm, helm_home, "lint", "--strict", str(CHART)).stdout
    assert "0 chart(s) failed" in out


def test_chart_is_helm3_apiversion_v2() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "vcluster"


def test_defaults_render_exactly_these_objects(render: Render) -> None:
    assert kinds(render()) == {
        ("ServiceAccount", "vc-my-vc"),
        ("Role", "vc-my-vc"),
        ("RoleBinding", "vc-my-vc"),
        ("Service", "my-vc"),
        ("Service", "my-vc-headless"),
        ("StatefulSet", "my-vc"),
    }
    for manifest in render():
        assert manifest["metadata"]["namespace"] == NAMESPACE


DEFAULT_K3S_ARGS = [
    "server",
    "--data-dir=/data",
    "--write-kubeconfig=/data/k3s-config/kube-config.yaml",
    "--disable-agent",
    "--disable-scheduler",
    "--disable-cloud-controller",
    "--flannel-backend=none",
    "--disable-network-policy",
    "--disable=traefik,servicelb,metrics-server,local-storage,coredns",
    "--service-cidr=10.96.0.0/12",
    "--kube-controller-manager-arg=controllers=*,-nodeipam,-nodelifecycle,-persistentvolume-binder,"
    "-attachdetach,-persistentvolume-expander,-cloud-node-lifecycle",
    "--egress-selector-mode=disabled",
    "--kube-apiserver-arg=endpoint-reconciler-type=none",
]


def test_default_k3s_container(render: Render) -> None:
    manifests = render()
    k3s = container(manifests, "vcluster")
    assert k3s["image"] == "rancher/k3s:v1.29.0-k3s1"
    assert k3s["command"][:2] == ["/bin/sh", "-c"]
    assert k3s["command"][3] == "/bin/k3s"  # $0 of the wrapper script
    assert k3s["args"] == DEFAULT_K3S_ARGS
    assert k3s["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert "ports" not in k3s  # nothing reaches k3s except through the syncer's proxy


DEFAULT_SYNCER_ARGS = [
    "--log-level=info",
    "--log-format=json",
    "syncer",
    "--name=my-vc",
    "--target-namespace=team-a",
    "--service-name=my-vc",
    "--virtual-kubeconfig=/data/server/cred/admin.kubeconfig",
    "--server-ca-cert=/data/server/tls/server-ca.crt",
    "--server-ca-key=/data/server/tls/server-ca.key",
    "--client-ca-cert=/data/server/tls/client-ca.crt",
    "--proxy-port=8443",
    "--health-address=0.0.0.0:8080",
    "--out-kube-config-secret=vc-my-vc",
]


def test_default_syncer_container(render: Render) -> None:
    manifests = render()
    syncer = container(manifests, "syncer")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert syncer["image"] == f"vcluster-py:{chart['appVersion']}"
    assert syncer["command"] == ["vcluster-py"]
    assert syncer["args"] == DEFAULT_SYNCER_ARGS
    assert syncer["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert {p["name"]: p["containerPort"] for p in syncer["ports"]} == {"https": 8443, "health": 8080}
    assert syncer["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert syncer["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_syncer_args_are_flags_the_syncer_has(render: Render) -> None:
    options = parse_syncer(syncer_args(render()))
    assert options.name == RELEASE
    assert options.target_namespace == NAMESPACE
    assert options.service_name == RELEASE
    assert options.virtual_kubeconfig == "/data/server/cred/admin.kubeconfig"
    assert options.server_ca_cert == "/data/server/tls/server-ca.crt"
    assert options.server_ca_key == "/data/server/tls/server-ca.key"
    assert options.client_ca_cert == "/data/server/tls/client-ca.crt"
    assert options.out_kube_config_secret == "vc-my-vc"
    assert options.health_address == "0.0.0.0:8080"
    assert options.proxy_port == 8443
    assert options.resources == DEFAULT_ENABLED
    # In a pod the syncer reaches the host with its ServiceAccount (in-cluster config).
    assert options.host_kubeconfig is None


def test_release_namespace_and_name_flow_into_every_name(render: Render) -> None:
    manifests = render(release="dev-7", namespace="ci-42")
    assert kinds(manifests) >= {("StatefulSet", "dev-7"), ("Service", "dev-7"), ("Role", "vc-dev-7")}
    options = parse_syncer(syncer_args(manifests))
    assert (options.name, options.target_namespace, options.service_name) == ("dev-7", "ci-42", "dev-7")
    assert options.out_kube_config_secret == "vc-dev-7"
    sts = find(manifests, "StatefulSet")
    assert sts["spec"]["serviceName"] == "dev-7-headless"
    assert pod_spec(manifests)["serviceAccountName"] == "vc-dev-7"


def test_role_is_exactly_the_syncers_host_rules(render: Render) -> None:
    manifests = render()
    role = find(manifests, "Role")
    assert role["rules"] == HOST_ROLE_RULES, (
        "charts/vcluster/templates/role.yaml must render syncer.host_rbac.HOST_ROLE_RULES exactly"
    )
    binding = find(manifests, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "vc-my-vc"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vc-my-vc", "namespace": NAMESPACE}]
    assert not [m for m in manifests if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_services(render: Render) -> None:
    manifests = render()
    service = find(manifests, "Service", "my-vc")
    selector = service["spec"]["selector"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]
    headless = find(manifests, "Service", "my-vc-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == selector
    pod_labels = find(manifests, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert find(manifests, "StatefulSet")["spec"]["selector"]["matchLabels"] == selector


def test_service_selector_cannot_be_matched_by_a_tenants_synced_pod(render: Render) -> None:
    """A tenant pod labelled like the control plane keeps those labels on the host, but never keys
    under vcluster.loft.sh/ (the syncer strips them): the selector needs one of those."""
    from syncer.translate.metadata import host_labels

    selector = find(render(), "Service", "my-vc")["spec"]["selector"]
    forged = host_labels(dict(selector), "my-vc", "default")
    assert not selector.items() <= forged.items()


def test_default_pod_runs_non_root_and_meets_restricted(render: Render) -> None:
    spec = pod_spec(render())
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == spec["securityContext"]["runAsGroup"] == 65532
    assert spec["securityContext"]["fsGroup"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in spec["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["enableServiceLinks"] is False


def test_default_storage_is_a_claim_template(render: Render) -> None:
    manifests = render()
    sts = find(manifests, "StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "5Gi"}}
    assert "storageClassName" not in claim["spec"]
    assert "volumes" not in pod_spec(manifests)
    assert "persistentVolumeClaimRetentionPolicy" not in sts["spec"]  # claims survive uninstall


# ---------------------------------------------------------------------------------------------------
# every documented option: (values, check). test_every_values_key_has_a_case keeps this complete.


def _check_k3s_image(m: list[Manifest]) -> None:
    k3s = container(m, "vcluster")
    assert (k3s["image"], k3s["imagePullPolicy"]) == ("example.test/k3s:v1.28.2-k3s1", "Always")


def _check_service_cidr(m: list[Manifest]) -> None:
    assert "--service-cidr=127.96.0.0/16" in k3s_args(m)
    assert not [a for a in k3s_args(m) if a.startswith("--service-cidr=") and "127.96" not in a]


def _check_long_controller_names(m: list[Manifest]) -> None:
    assert (
        "--kube-controller-manager-arg=controllers=*,-node-ipam-controller,-node-lifecycle-controller"
        in k3s_args(m)
    )


def _check_no_controllers_flag(m: list[Manifest]) -> None:
    assert not [a for a in k3s_args(m) if "controllers=" in a]


def _check_no_egress_flag(m: list[Manifest]) -> None:
    assert not [a for a in k3s_args(m) if a.startswith("--egress-selector-mode")]


def _check_k3s_extra_args(m: list[Manifest]) -> None:
    assert k3s_args(m)[-2:] == ["--kube-apiserver-arg=audit-log-path=-", "--debug"]
    assert k3s_args(m)[:-2] == DEFAULT_K3S_ARGS


def _check_k3s_env(m: list[Manifest]) -> None:
    assert container(m, "vcluster")["env"] == [{"name": "K3S_DEBUG", "value": "1"}]


def _check_k3s_resources(m: list[Manifest]) -> None:
    assert container(m, "vcluster")["resources"] == {"limits": {"memory": "3Gi"}}


def _check_syncer_image(m: list[Manifest]) -> None:
    syncer = container(m, "syncer")
    assert (syncer["image"], syncer["imagePullPolicy"]) == ("registry.test/team/vcluster-py:dev", "Never")


def _check_log_flags(m: list[Manifest]) -> None:
    assert syncer_args(m)[:3] == ["--log-level=debug", "--log-format=text", "syncer"]
    ns = vcluster_cli.build_parser().parse_args(syncer_args(m))
    assert (ns.log_level, ns.log_format) == ("debug", "text")


def _check_syncer_extra_args(m: list[Manifest]) -> None:
    args = syncer_args(m)
    assert args[: len(DEFAULT_SYNCER_ARGS)] == DEFAULT_SYNCER_ARGS
    assert args[len(DEFAULT_SYNCER_ARGS) :] == ["--disable-sync-resources=ingresses,events", "--workers=2"]
    options = parse_syncer(args)
    assert "ingresses" not in options.resources and "events" not in options.resources
    assert options.workers == 2


def _check_syncer_env(m: list[Manifest]) -> None:
    assert container(m, "syncer")["env"] == [{"name": "A", "value": "b"}]


def _check_no_liveness(m: list[Manifest]) -> None:
    assert "livenessProbe" not in container(m, "syncer")
    assert "readinessProbe" in container(m, "syncer")


def _check_no_readiness(m: list[Manifest]) -> None:
    assert "readinessProbe" not in container(m, "syncer")
    assert "livenessProbe" in container(m, "syncer")


def _check_syncer_resources(m: list[Manifest]) -> None:
    # Helm merges maps with the defaults; null deletes a default.
    assert container(m, "syncer")["resources"] == {"requests": {"cpu": "1", "memory": "128Mi"}}


def _check_empty_dir(m: list[Manifest]) -> None:
    assert "volumeClaimTemplates" not in find(m, "StatefulSet")["spec"]
    assert pod_spec(m)["volumes"] == [{"name": "data", "emptyDir": {}}]
    for c in pod_spec(m)["containers"]:
        assert [v["name"] for v in c["volumeMounts"]] == ["data"]


def _claim(m: list[Manifest]) -> Manifest:
    (claim,) = find(m, "StatefulSet")["spec"]["volumeClaimTemplates"]
    return claim


def _check_size(m: list[Manifest]) -> None:
    assert _claim(m)["spec"]["resources"]["requests"]["storage"] == "20Gi"


def _check_class(m: list[Manifest]) -> None:
    assert _claim(m)["spec"]["storageClassName"] == "fast-ssd"


def _check_delete_on_uninstall(m: list[Manifest]) -> None:
    policy = find(m, "StatefulSet")["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Delete", "whenScaled": "Retain"}


def _service(m: list[Manifest]) -> Manifest:
    return find(m, "Service", RELEASE)


def _check_node_port_service(m: list[Manifest]) -> None:
    assert _service(m)["spec"]["type"] == "NodePort"
    assert "nodePort" not in _service(m)["spec"]["ports"][0]


def _check_fixed_node_port(m: list[Manifest]) -> None:
    assert _service(m)["spec"]["type"] == "LoadBalancer"
    assert _service(m)["spec"]["ports"][0]["nodePort"] == 30443


def _check_service_annotations(m: list[Manifest]) -> None:
    assert _service(m)["metadata"]["annotations"] == {"lb.example/internal": "true"}


def _check_existing_service_account(m: list[Manifest]) -> None:
    assert not [x for x in m if x["kind"] == "ServiceAccount"]
    assert pod_spec(m)["serviceAccountName"] == "platform-sa"
    assert find(m, "RoleBinding")["subjects"][0]["name"] == "platform-sa"


def _check_service_account_name(m: list[Manifest]) -> None:
    assert find(m, "ServiceAccount")["metadata"]["name"] == "custom"
    assert pod_spec(m)["serviceAccountName"] == "custom"


def _check_no_role(m: list[Manifest]) -> None:
    assert not [x for x in m if x["kind"] in ("Role", "RoleBinding")]


def _check_storage_classes(m: list[Manifest]) -> None:
    role = find(m, "ClusterRole", "vc-my-vc-team-a")
    assert role["rules"] == STORAGE_CLASS_CLUSTER_RULES
    binding = find(m, "ClusterRoleBinding", "vc-my-vc-team-a")
    assert binding["roleRef"]["name"] == "vc-my-vc-team-a"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vc-my-vc", "namespace": NAMESPACE}]
    assert "--sync=+storageclasses" in syncer_args(m)
    assert "storageclasses" in parse_syncer(syncer_args(m)).resources


def _check_pod_security_context(m: list[Manifest]) -> None:
    assert "securityContext" not in pod_spec(m)


def _check_container_security_context(m: list[Manifest]) -> None:
    for c in pod_spec(m)["containers"]:
        assert c["securityContext"] == {"readOnlyRootFilesystem": True}


def _check_pull_secrets(m: list[Manifest]) -> None:
    assert pod_spec(m)["imagePullSecrets"] == [{"name": "regcred"}]


def _check_node_selector(m: list[Manifest]) -> None:
    assert pod_spec(m)["nodeSelector"] == {"disk": "ssd"}


AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
        }
    }
}


def _check_affinity(m: list[Manifest]) -> None:
    assert pod_spec(m)["affinity"] == AFFINITY


def _check_tolerations(m: list[Manifest]) -> None:
    assert pod_spec(m)["tolerations"] == [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]


def _check_priority_class(m: list[Manifest]) -> None:
    assert pod_spec(m)["priorityClassName"] == "high"


def _check_labels(m: list[Manifest]) -> None:
    for manifest in m:
        assert manifest["metadata"]["labels"]["team"] == "a", manifest["kind"]


def _check_annotations(m: list[Manifest]) -> None:
    assert find(m, "StatefulSet")["metadata"]["annotations"] == {"owner": "platform"}


def _check_pod_labels(m: list[Manifest]) -> None:
    labels = find(m, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert labels["cost-center"] == "42"
    assert "cost-center" not in _service(m)["spec"]["selector"]


def _check_pod_annotations(m: list[Manifest]) -> None:
    meta = find(m, "StatefulSet")["spec"]["template"]["metadata"]
    assert meta["annotations"] == {"prometheus.io/scrape": "true"}


OPTION_CASES: dict[str, tuple[dict[str, Any], Callable[[list[Manifest]], None]]] = {
    "serviceCIDR": ({"serviceCIDR": "127.96.0.0/16"}, _check_service_cidr),
    "vcluster.image": (
        {
            "vcluster": {
                "image": {"repository": "example.test/k3s", "tag": "v1.28.2-k3s1", "pullPolicy": "Always"}
            }
        },
        _check_k3s_image,
    ),
    "vcluster.disabledControllers": (
        {"vcluster": {"disabledControllers": ["node-ipam-controller", "node-lifecycle-controller"]}},
        _check_long_controller_names,
    ),
    "vcluster.egressSelectorMode": ({"vcluster": {"egressSelectorMode": ""}}, _check_no_egress_flag),
    "vcluster.extraArgs": (
        {"vcluster": {"extraArgs": ["--kube-apiserver-arg=audit-log-path=-", "--debug"]}},
        _check_k3s_extra_args,
    ),
    "vcluster.env": ({"vcluster": {"env": [{"name": "K3S_DEBUG", "value": "1"}]}}, _check_k3s_env),
    "vcluster.resources": (
        {"vcluster": {"resources": {"requests": None, "limits": {"memory": "3Gi"}}}},
        _check_k3s_resources,
    ),
    "syncer.image": (
        {
            "syncer": {
                "image": {"repository": "registry.test/team/vcluster-py", "tag": "dev", "pullPolicy": "Never"}
            }
        },
        _check_syncer_image,
    ),
    "syncer.logLevel": ({"syncer": {"logLevel": "debug", "logFormat": "text"}}, _check_log_flags),
    "syncer.extraArgs": (
        {"syncer": {"extraArgs": ["--disable-sync-resources=ingresses,events", "--workers=2"]}},
        _check_syncer_extra_args,
    ),
    "syncer.env": ({"syncer": {"env": [{"name": "A", "value": "b"}]}}, _check_syncer_env),
    "syncer.livenessProbe.enabled": ({"syncer": {"livenessProbe": {"enabled": False}}}, _check_no_liveness),
    "syncer.readinessProbe.enabled": (
        {"syncer": {"readinessProbe": {"enabled": False}}},
        _check_no_readiness,
    ),
    "syncer.resources": (
        {"syncer": {"resources": {"requests": {"cpu": "1"}, "limits": None}}},
        _check_syncer_resources,
    ),
    "storage.persistence": ({"storage": {"persistence": False}}, _check_empty_dir),
    "storage.size": ({"storage": {"size": "20Gi"}}, _check_size),
    "storage.className": ({"storage": {"className": "fast-ssd"}}, _check_class),
    "storage.keepOnUninstall": ({"storage": {"keepOnUninstall": False}}, _check_delete_on_uninstall),
    "service.type": ({"service": {"type": "NodePort"}}, _check_node_port_service),
    "service.nodePort": ({"service": {"type": "LoadBalancer", "nodePort": 30443}}, _check_fixed_node_port),
    "service.annotations": (
        {"service": {"annotations": {"lb.example/internal": "true"}}},
        _check_service_annotations,
    ),
    "serviceAccount.create": (
        {"serviceAccount": {"create": False, "name": "platform-sa"}},
        _check_existing_service_account,
    ),
    "serviceAccount.name": ({"serviceAccount": {"name": "custom"}}, _check_service_account_name),
    "rbac.role.create": ({"rbac": {"role": {"create": False}}}, _check_no_role),
    "storageClasses.sync": ({"storageClasses": {"sync": True}}, _check_storage_classes),
    "podSecurityContext": ({"podSecurityContext": None}, _check_pod_security_context),
    "securityContext": (
        {
            "securityContext": {
                "allowPrivilegeEscalation": None,
                "capabilities": None,
                "readOnlyRootFilesystem": True,
            }
        },
        _check_container_security_context,
    ),
    "imagePullSecrets": ({"imagePullSecrets": [{"name": "regcred"}]}, _check_pull_secrets),
    "nodeSelector": ({"nodeSelector": {"disk": "ssd"}}, _check_node_selector),
    "affinity": ({"affinity": AFFINITY}, _check_affinity),
    "tolerations": (
        {"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]},
        _check_tolerations,
    ),
    "priorityClassName": ({"priorityClassName": "high"}, _check_priority_class),
    "labels": ({"labels": {"team": "a"}}, _check_labels),
    "annotations": ({"annotations": {"owner": "platform"}}, _check_annotations),
    "podLabels": ({"podLabels": {"cost-center": "42"}}, _check_pod_labels),
    "podAnnotations": ({"podAnnotations": {"prometheus.io/scrape": "true"}}, _check_pod_annotations),
}
# Keys covered by another key's case (the case sets them together).
COVERED_TOGETHER = {
    "syncer.logFormat": "syncer.logLevel",
}


@pytest.mark.parametrize("key", sorted(OPTION_CASES))
def test_documented_option(render: Render, key: str) -> None:
    values, check = OPTION_CASES[key]
    check(render(values))


def test_images_as_one_string_like_vclusters_own_chart(render: Render) -> None:
    manifests = render(
        {"vcluster": {"image": "rancher/k3s:v1.21.4-k3s1"}, "syncer": {"image": "reg.test/vcpy:9"}}
    )
    assert container(manifests, "vcluster")["image"] == "rancher/k3s:v1.21.4-k3s1"
    assert container(manifests, "syncer")["image"] == "reg.test/vcpy:9"
    assert {c["imagePullPolicy"] for c in pod_spec(manifests)["containers"]} == {"IfNotPresent"}


def test_syncer_image_tag_defaults_to_app_version(render: Render) -> None:
    manifests = render({"syncer": {"image": {"repository": "reg.test/vcpy"}}})
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container(manifests, "syncer")["image"] == f"reg.test/vcpy:{chart['appVersion']}"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _leaf_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Documented keys: recurse into objects whose schema fixes their keys, the rest are leaves."""
    for key, value in values.items():
        sub = schema["properties"][key]
        path = f"{prefix}{key}"
        if isinstance(value, dict) and sub.get("additionalProperties") is False and key != "resources":
            yield from _leaf_keys(value, sub, path + ".")
        else:
            yield path


def test_every_values_key_has_a_case_and_a_schema_description() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    leaves = set(_leaf_keys(values, _schema()))
    assert leaves == set(OPTION_CASES) | set(COVERED_TOGETHER)

    def node(path: str) -> dict[str, Any]:
        current = _schema()
        for part in path.split("."):
            current = current["properties"][part]
        return current

    for path in leaves:
        assert node(path).get("description"), f"{path} has no description in values.schema.json"


def test_values_yaml_documents_every_top_level_key() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            before = [x for x in lines[:i] if x.strip()]
            assert before and before[-1].lstrip().startswith("#"), f"undocumented key: {line}"


# ---------------------------------------------------------------------------------------------------
# --set as a user types it


def test_extra_args_with_set_arrive_verbatim(render: Render) -> None:
    manifests = render(
        None,
        "--set",
        "syncer.extraArgs={--disable-sync-resources=ingresses}",
        "--set",
        "serviceCIDR=127.96.0.0/16",
        "--set",
        "storage.persistence=false",
    )
    assert syncer_args(manifests)[-1] == "--disable-sync-resources=ingresses"
    assert "ingresses" not in parse_syncer(syncer_args(manifests)).resources
    assert "--service-cidr=127.96.0.0/16" in k3s_args(manifests)
    assert pod_spec(manifests)["volumes"] == [{"name": "data", "emptyDir": {}}]


def test_set_json_keeps_commas(render: Render) -> None:
    manifests = render(None, "--set-json", 'syncer.extraArgs=["--sync=-ingresses,-events"]')
    assert syncer_args(manifests)[-1] == "--sync=-ingresses,-events"


# ---------------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize(
    ("set_args", "where", "message"),
    [
        (["--set", "storage.persistence=yes"], "/storage/persistence", "want boolean"),
        (["--set", "syncer.extraArgs=--disable-sync-resources=ingresses"], "/syncer/extraArgs", "want array"),
        (["--set", "storage.size=5"], "/storage/size", "want string"),
        (["--set-json", "syncer.image=5"], "/syncer/image", "got number, want string"),
        (["--set", "service.type=Internal"], "/service/type", "must be one of 'ClusterIP', 'NodePort'"),
        (["--set", "serviceCIDR=10.96.0.0"], "/serviceCIDR", "does not match pattern"),
        (["--set", "syncer.logLevel=verbose"], "/syncer/logLevel", "must be one of 'debug', 'info'"),
        (["--set", "storag.size=1Gi"], "additional properties 'storag' not allowed", ""),
        (["--set-json", "syncer.extraArgs=[1, 2]"], "/syncer/extraArgs/0", "want string"),
    ],
)
def test_schema_rejects_wrong_values_naming_the_key(
    helm: Path, helm_home: Path, set_args: list[str], where: str, message: str
) -> None:
    proc = run_helm(helm, helm_home, "template", RELEASE, str(CHART), *set_args, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert where in proc.stderr and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("release", ["1st", "my.vc"])
def test_release_name_that_cannot_name_a_service_is_refused(
    helm: Path, helm_home: Path, release: str
) -> None:
    proc = run_helm(helm, helm_home, "template", release, str(CHART), check=False)
    assert proc.returncode != 0
    assert f'release name "{release}" cannot name a virtual cluster' in proc.stderr


# ---------------------------------------------------------------------------------------------------
# the k3s wrapper: k3s is not PID 1, gets the args verbatim, gets SIGTERM, and its status is kept

FAKE_K3S = """#!{python}
import json, signal, sys, pathlib
out = pathlib.Path({out!r})
def term(*_):
    out.with_suffix(".term").write_text("TERM")
    sys.exit(7)
signal.signal(signal.SIGTERM, term)
out.write_text(json.dumps(sys.argv[1:]))
signal.pause()
"""


def test_k3s_wrapper_passes_args_verbatim_and_forwards_sigterm(render: Render, tmp_path: Path) -> None:
    manifests = render({"vcluster": {"extraArgs": ["--node-label=a b", "--x=$HOME;`id`"]}})
    k3s = container(manifests, "vcluster")
    sh, dash_c, script, _k3s_path = k3s["command"]
    out = tmp_path / "argv.json"
    fake = tmp_path / "k3s"
    fake.write_text(FAKE_K3S.format(python=sys.executable, out=str(out)))
    fake.chmod(0o755)
    proc = subprocess.Popen(["/bin/sh", dash_c, script, str(fake), *k3s["args"]])
    try:
        eventually(out.exists, timeout=20, what="the fake k3s to start")
        assert json.loads(out.read_text()) == k3s["args"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 7
        assert (tmp_path / "argv.term").read_text() == "TERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sh == "/bin/sh"
