"""Services, endpoints and ingresses end to end, and turning resources off with vcluster's flags."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.local.host import HostCluster
from controlplane.local.tenant import LocalVirtualCluster
from syncer.translate.names import host_name
from tests.e2e.routed_network import ROUTED_NETWORK_TAINT, routed_network, routed_node
from tests.e2e.test_syncer_pods import get_json, wait_running
from tests.support import Kubectl, eventually, kubectl_for, unique_name

pytestmark = pytest.mark.e2e

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: registry.invalid/web:1, ports: [{{containerPort: 8080}}]}}]
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      tolerations: [{{key: {taint[key]}, value: "{taint[value]}", effect: {taint[effect]}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


@pytest.fixture
def routed_kwok_node(host_kubectl: Kubectl) -> Iterator[tuple[str, ipaddress.IPv4Network]]:
    """A host node whose pods get non-loopback IPs, routed into a network namespace of this test run."""
    with (
        routed_network() as net,
        routed_node(host_kubectl, unique_name("kwok-routed"), net.pod_cidr) as node,
    ):
        yield node, net.pod_cidr


def endpoint_slices(
    kubectl: Kubectl, namespace: str, service: str
) -> tuple[list[tuple[str, bool]], list[str]]:
    """The addresses (each with its `ready` condition) and the ports of a Service's EndpointSlices."""
    slices = json.loads(
        kubectl(
            "get",
            "endpointslices",
            "-n",
            namespace,
            "-l",
            f"kubernetes.io/service-name={service}",
            "-o",
            "json",
        ).stdout
    )["items"]
    addresses = sorted(
        (address, bool((endpoint.get("conditions") or {}).get("ready")))
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        for address in endpoint["addresses"]
    )
    ports = sorted(json.dumps(p, sort_keys=True) for s in slices for p in s.get("ports") or [])
    return addresses, ports


def pod_ips(kubectl: Kubectl, namespace: str, query: str) -> set[str]:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", query, "-o", "json").stdout)["items"]
    return {p["status"]["podIP"] for p in pods if p.get("status", {}).get("podIP")}


def test_service_has_the_same_cluster_ip_and_selects_only_tenant_pods(
    vcluster: LocalVirtualCluster,
    vc_kubectl: Kubectl,
    host_kubectl: Kubectl,
    vns: str,
    routed_kwok_node: tuple[str, ipaddress.IPv4Network],
) -> None:
    node, pod_cidr = routed_kwok_node
    hns = vcluster.namespace
    vc_kubectl("apply", "-f", "-", stdin=WEB.format(ns=vns, node=node, taint=ROUTED_NETWORK_TAINT))
    # A host pod with the same app label that is NOT the tenant's must not be selected.
    decoy = unique_name("decoy")
    host_kubectl("run", decoy, "-n", hns, "--image=registry.invalid/other:1", "--labels=app=web")
    vsvc = get_json(vc_kubectl, "service", "web", "-n", vns)
    assert vsvc is not None
    hname = host_name("web", vns, vcluster.name)
    hsvc = eventually(
        lambda: get_json(host_kubectl, "service", hname, "-n", hns), timeout=60, what="host service"
    )
    assert hsvc["spec"]["clusterIP"] == vsvc["spec"]["clusterIP"]  # type: ignore[index]
    selector = hsvc["spec"]["selector"]  # type: ignore[index]
    assert selector["app"] == "web" and selector["vcluster.loft.sh/managed-by"] == vcluster.name
    assert selector["vcluster.loft.sh/namespace"] == vns
    label_query = ",".join(f"{k}={v}" for k, v in selector.items())
    selected = json.loads(host_kubectl("get", "pods", "-n", hns, "-l", label_query, "-o", "json").stdout)[
        "items"
    ]
    assert decoy not in {p["metadata"]["name"] for p in selected}

    # EndpointSlice validation refuses loopback addresses, so the tenant's pods run on a node whose
    # pod CIDR is a documentation range routed into a network namespace of this test run (see
    # tests/e2e/routed_network.py): real slices on both sides, and nothing can leave the machine.
    # Only kubectl talks here; no socket is ever opened to a pod IP or a ClusterIP.
    def same_endpoints() -> set[str]:
        virtual_pods = pod_ips(vc_kubectl, vns, "app=web")
        host_pods = pod_ips(host_kubectl, hns, label_query)
        host_addresses, host_ports = endpoint_slices(host_kubectl, hns, hname)
        virtual_addresses, virtual_ports = endpoint_slices(vc_kubectl, vns, "web")
        # Each pod IP exactly once, ready, on both sides (duplicates would survive a set comparison).
        expected = sorted((ip, True) for ip in virtual_pods)
        if (
            len(virtual_pods) == 2
            and virtual_pods == host_pods
            and host_addresses == virtual_addresses == expected
            and host_ports == virtual_ports != []
        ):
            return virtual_pods
        raise AssertionError(  # `eventually` reports the last one on timeout
            f"pod IPs virtual {virtual_pods}, host {host_pods}; slices host {host_addresses} "
            f"{host_ports}, virtual {virtual_addresses} {virtual_ports}"
        )

    ips = eventually(same_endpoints, timeout=90, what="the same 2 ready pod IPs in both sides' slices")
    assert all(ipaddress.IPv4Address(ip) in pod_cidr for ip in ips)  # type: ignore[attr-defined]
    decoy_pod = get_json(host_kubectl, "pod", decoy, "-n", hns)
    assert decoy_pod is not None and decoy_pod.get("status", {}).get("podIP") not in ips  # type: ignore[operator]
    _, ports = endpoint_slices(host_kubectl, hns, hname)
    assert [json.loads(p) for p in ports] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    host_kubectl("delete", "pod", decoy, "-n", hns, "--wait=false")


NODEPORT = """
apiVersion: v1
kind: Service
metadata: {{name: np, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app: np}}
  externalIPs: [192.0.2.10]  # documentation range: a value in the spec, never dialled (no kube-proxy)
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


def test_node_ports_are_equal_and_external_ips_are_not_synced(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("apply", "-f", "-", stdin=NODEPORT.format(ns=vns))
    hname = host_name("np", vns, vcluster.name)
    hsvc = eventually(
        lambda: get_json(host_kubectl, "service", hname, "-n", vcluster.namespace), timeout=60, what="host"
    )
    vsvc = get_json(vc_kubectl, "service", "np", "-n", vns)
    assert vsvc is not None
    assert hsvc["spec"]["ports"][0]["nodePort"] == vsvc["spec"]["ports"][0]["nodePort"]  # type: ignore[index]
    assert not hsvc["spec"].get("externalIPs")  # type: ignore[index]

    def warned() -> bool:
        items = json.loads(vc_kubectl("get", "events", "-n", vns, "-o", "json").stdout)["items"]
        return any(e["reason"] == "SyncError" and "externalIPs" in e["message"] for e in items)

    eventually(warned, timeout=30, what="a Warning event about externalIPs")


SELECTORLESS = """
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: {ns}}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: ext, namespace: {ns}}}
subsets:
- addresses: [{{ip: {ip}, targetRef: {{kind: Pod, name: {pod}, namespace: {ns}}}}}]
  ports: [{{name: http, port: 8080}}]
"""


def test_endpoints_of_a_selectorless_service_are_copied_with_target_refs_renamed(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("run", "backend", "--image=registry.invalid/app:1", "-n", vns)
    wait_running(vc_kubectl, "backend", vns)
    # Endpoints validation refuses loopback addresses (all pod IPs here): a documentation-range
    # address stands in; it is a value in a spec, nothing dials it. The targetRef is what matters.
    ip = "192.0.2.20"
    vc_kubectl("apply", "-f", "-", stdin=SELECTORLESS.format(ns=vns, ip=ip, pod="backend"))
    hname = host_name("ext", vns, vcluster.name)
    eps = eventually(
        lambda: get_json(host_kubectl, "endpoints", hname, "-n", vcluster.namespace), timeout=60, what="ep"
    )
    address = eps["subsets"][0]["addresses"][0]  # type: ignore[index]
    assert address["ip"] == ip
    assert address["targetRef"]["name"] == host_name("backend", vns, vcluster.name)
    assert address["targetRef"]["namespace"] == vcluster.namespace


INGRESS = """
apiVersion: v1
kind: Secret
metadata: {{name: tls-cert, namespace: {ns}}}
type: kubernetes.io/tls
data: {{tls.crt: Y2VydA==, tls.key: a2V5}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: {ns}
  annotations: {{cert-manager.io/cluster-issuer: letsencrypt}}
spec:
  ingressClassName: nginx
  tls: [{{hosts: [web.example.com], secretName: tls-cert}}]
  rules:
  - host: web.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: web, port: {{number: 80}}}}}}
"""


def test_ingress_is_translated_with_its_tls_secret_and_status_flows_back(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("apply", "-f", "-", stdin=INGRESS.format(ns=vns))
    hns, vc = vcluster.namespace, vcluster.name
    hname = host_name("web", vns, vc)
    ing = eventually(
        lambda: get_json(host_kubectl, "ingress", hname, "-n", hns), timeout=60, what="host ingress"
    )
    spec = ing["spec"]  # type: ignore[index]
    assert spec["ingressClassName"] == "nginx"
    assert spec["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == host_name("web", vns, vc)
    assert spec["tls"][0]["secretName"] == host_name("tls-cert", vns, vc)
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"  # type: ignore[index]
    eventually(
        lambda: get_json(host_kubectl, "secret", host_name("tls-cert", vns, vc), "-n", hns),
        timeout=60,
        what="tls",
    )
    # An ingress controller on the host publishes an address: the tenant sees it.
    host_kubectl(
        "patch",
        "ingress",
        hname,
        "-n",
        hns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.77"}]}}}',
    )
    eventually(
        lambda: (
            ((get_json(vc_kubectl, "ingress", "web", "-n", vns) or {}).get("status") or {})
            .get("loadBalancer", {})
            .get("ingress")
            == [{"ip": "127.0.0.77"}]
        ),
        timeout=60,
        what="ingress status on the virtual side",
    )


def test_virtual_kubernetes_service_points_at_the_syncer(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    host_ip = get_json(host_kubectl, "service", "vcluster", "-n", vcluster.namespace)["spec"]["clusterIP"]  # type: ignore[index]
    eventually(
        lambda: (
            (get_json(vc_kubectl, "service", "kubernetes", "-n", "default") or {})
            .get("spec", {})
            .get("clusterIP")
            == host_ip
        ),
        timeout=60,
        what="virtual default/kubernetes ClusterIP = the syncer's host Service ClusterIP",
    )


def test_long_and_ambiguous_service_names(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    suffix = unique_name("s")
    long_ns = f"a-rather-long-namespace-name-{suffix}"
    vc_kubectl("create", "namespace", long_ns)
    long_name = "a-service-name-that-is-quite-long-too"
    vc_kubectl("create", "service", "clusterip", long_name, "--tcp=80:80", "-n", long_ns)
    hname = host_name(long_name, long_ns, vcluster.name)
    assert len(hname) == 63 and len(f"{long_name}-x-{long_ns}-x-{vcluster.name}") > 63
    eventually(
        lambda: get_json(host_kubectl, "service", hname, "-n", vcluster.namespace),
        timeout=60,
        what="hashed name",
    )
    first_ns, second_ns = f"team-{suffix}", f"prod-x-team-{suffix}"
    vc_kubectl("create", "namespace", first_ns)
    vc_kubectl("create", "namespace", second_ns)
    vc_kubectl("create", "service", "clusterip", "api-x-prod", "--tcp=80:80", "-n", first_ns)
    shared = host_name("api-x-prod", first_ns, vcluster.name)
    before = eventually(
        lambda: get_json(host_kubectl, "service", shared, "-n", vcluster.namespace), timeout=60, what="first"
    )
    vc_kubectl("create", "service", "clusterip", "api", "--tcp=80:80", "-n", second_ns)

    def refused() -> bool:
        items = json.loads(vc_kubectl("get", "events", "-n", second_ns, "-o", "json").stdout)["items"]
        return any(e["reason"] == "SyncError" and e["involvedObject"]["name"] == "api" for e in items)

    eventually(refused, timeout=60, what="SyncError for the second service")
    after = get_json(host_kubectl, "service", shared, "-n", vcluster.namespace)
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]  # type: ignore[index]
    assert after["metadata"]["annotations"]["vcluster.loft.sh/object-namespace"] == first_ns


@pytest.fixture(scope="module")
def no_ingress_vcluster(
    tmp_path_factory: pytest.TempPathFactory, host_cluster: HostCluster
) -> Iterator[LocalVirtualCluster]:
    cluster = LocalVirtualCluster(
        host_cluster,
        name="noing",
        namespace="noing-host",
        state_dir=tmp_path_factory.mktemp("noing"),
        syncer_args=("--disable-sync-resources=ingresses",),
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_disable_sync_resources_ingresses(
    no_ingress_vcluster: LocalVirtualCluster, host_kubectl: Kubectl, binaries: Any
) -> None:
    vc = no_ingress_vcluster
    kubectl = kubectl_for(binaries, vc.plane.admin_kubeconfig_path)
    ns = unique_name("v")
    kubectl("create", "namespace", ns)
    kubectl("apply", "-f", "-", stdin=INGRESS.format(ns=ns))
    kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    eventually(
        lambda: get_json(host_kubectl, "service", host_name("web", ns, vc.name), "-n", vc.namespace),
        timeout=60,
        what="services still sync",
    )
    # A drift pass has run since (the service proves the syncer saw this namespace): nothing else came.
    assert get_json(host_kubectl, "ingress", host_name("web", ns, vc.name), "-n", vc.namespace) is None
    assert get_json(host_kubectl, "secret", host_name("tls-cert", ns, vc.name), "-n", vc.namespace) is None
    metrics = vc.metrics()
    assert 'vcluster_syncer_resource_enabled{resource="services"} 1.0' in metrics
    assert 'resource="ingresses"' not in metrics


def test_unknown_resource_name_stops_start_up_with_the_valid_list(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "controlplane",
            "syncer",
            "--target-namespace=x",
            "--disable-sync-resources=ingress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "unknown resource 'ingress'" in out.stderr
    assert "persistentvolumeclaims" in out.stderr and "storageclasses" in out.stderr
