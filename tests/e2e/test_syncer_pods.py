"""The syncer end to end: what a user of the virtual cluster sees, and what lands on the host.

A real virtual control plane and a real host cluster; the syncer runs as its own process with only
its Role in the host namespace; every action goes through the real kubectl.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from controlplane.local.tenant import LocalVirtualCluster
from syncer.translate.names import host_name
from tests.support import Kubectl, eventually, unique_name

pytestmark = pytest.mark.e2e

POD_WITH_REFS = """
apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config, namespace: {ns}}}
data: {{greeting: hello}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-secret, namespace: {ns}}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: web, tier: front}}
  annotations: {{team: blue}}
spec:
  containers:
  - name: app
    image: registry.invalid/app:1
    env:
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: app-config, key: greeting}}}}
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    volumeMounts:
    - {{name: secret, mountPath: /etc/secret}}
  volumes:
  - name: secret
    secret: {{secretName: app-secret}}
"""


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any] | None:
    out = kubectl("get", *args, "-o", "json", check=False)
    if out.returncode != 0:
        if "NotFound" in out.stderr or "not found" in out.stderr:
            return None
        raise AssertionError(out.stderr)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def host_pod(
    host_kubectl: Kubectl, vcluster: LocalVirtualCluster, name: str, ns: str
) -> dict[str, Any] | None:
    return get_json(host_kubectl, "pod", host_name(name, ns, vcluster.name), "-n", vcluster.namespace)


def wait_running(kubectl: Kubectl, name: str, ns: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pod = get_json(kubectl, "pod", name, "-n", ns)
        if pod and pod.get("status", {}).get("phase") == "Running" and pod["status"].get("podIP"):
            return pod
        return None

    return eventually(running, timeout=60, what=f"virtual pod {ns}/{name} Running")  # type: ignore[return-value]


def test_pod_runs_with_host_ip_and_translated_host_copy(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("apply", "-f", "-", stdin=POD_WITH_REFS.format(ns=vns, name="web"))
    vpod = wait_running(vc_kubectl, "web", vns)
    hpod = host_pod(host_kubectl, vcluster, "web", vns)
    assert hpod is not None
    # Status flows back: same IP, Ready condition, bound to a node of the host's name.
    assert vpod["status"]["podIP"] == hpod["status"]["podIP"]
    assert {c["type"]: c["status"] for c in vpod["status"]["conditions"]}["Ready"] == "True"
    assert vpod["spec"]["nodeName"] == hpod["spec"]["nodeName"]
    # Host copy: labels verbatim + marker, object-* annotations, tenant annotations.
    labels, annotations = hpod["metadata"]["labels"], hpod["metadata"]["annotations"]
    assert labels["app"] == "web" and labels["vcluster.loft.sh/managed-by"] == vcluster.name
    assert labels["vcluster.loft.sh/namespace"] == vns
    assert annotations["vcluster.loft.sh/object-name"] == "web"
    assert annotations["vcluster.loft.sh/object-namespace"] == vns
    assert annotations["team"] == "blue"
    spec = hpod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    kube_ip = get_json(host_kubectl, "service", "vcluster", "-n", vcluster.namespace)["spec"]["clusterIP"]  # type: ignore[index]
    assert env["KUBERNETES_SERVICE_HOST"]["value"] == kube_ip
    assert env["GREETING"]["valueFrom"]["configMapKeyRef"]["name"] == host_name(
        "app-config", vns, vcluster.name
    )
    assert "vcluster.loft.sh/" in env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert {
        "ip": kube_ip,
        "hostnames": ["kubernetes", "kubernetes.default", "kubernetes.default.svc"],
    }.items() <= {
        "ip": spec["hostAliases"][0]["ip"],
        "hostnames": spec["hostAliases"][0]["hostnames"][:3],
    }.items()
    # DNS: the host ClusterIP of the virtual kube-dns service.
    dns_svc = get_json(
        host_kubectl, "service", host_name("kube-dns", "kube-system", vcluster.name), "-n", vcluster.namespace
    )
    assert dns_svc is not None
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"]["nameservers"] == [dns_svc["spec"]["clusterIP"]]
    assert spec["dnsConfig"]["searches"][0] == f"{vns}.svc.cluster.local"
    # Secret volume renamed; the SA token comes from a host Secret, never an annotation.
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["secret"]["secret"]["secretName"] == host_name("app-secret", vns, vcluster.name)
    assert not any("token" in k and "vcluster.loft.sh" in k for k in annotations)
    token_sources = [
        s["secret"]["name"]
        for v in spec["volumes"]
        for s in (v.get("projected") or {}).get("sources", [])
        if "secret" in s
    ]
    assert token_sources, "the kube-api-access token must come from a host Secret"
    token_secret = get_json(host_kubectl, "secret", token_sources[0], "-n", vcluster.namespace)
    assert (
        token_secret is not None
        and token_secret["metadata"]["ownerReferences"][0]["name"] == hpod["metadata"]["name"]
    )
    # The tokens are minted again before they expire: the Secret says when.
    refresh_after = float(token_secret["metadata"]["annotations"]["vcluster.loft.sh/token-refresh-after"])
    assert time.time() < refresh_after


def test_configmap_and_secret_follow_their_pod(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("apply", "-f", "-", stdin=POD_WITH_REFS.format(ns=vns, name="web"))
    wait_running(vc_kubectl, "web", vns)
    cm_name, secret_name = (
        host_name("app-config", vns, vcluster.name),
        host_name("app-secret", vns, vcluster.name),
    )
    cm = eventually(
        lambda: get_json(host_kubectl, "configmap", cm_name, "-n", vcluster.namespace), what="host configmap"
    )
    assert cm["data"] == {"greeting": "hello"}  # type: ignore[index]
    secret = eventually(
        lambda: get_json(host_kubectl, "secret", secret_name, "-n", vcluster.namespace), what="host secret"
    )
    assert secret["data"]["password"]  # type: ignore[index]
    # An update reaches the host copy.
    vc_kubectl(
        "patch", "configmap", "app-config", "-n", vns, "--type=merge", "-p", '{"data":{"greeting":"hi"}}'
    )
    eventually(
        lambda: (
            (get_json(host_kubectl, "configmap", cm_name, "-n", vcluster.namespace) or {}).get("data")
            == {"greeting": "hi"}
        ),
        what="configmap update on the host",
    )
    vc_kubectl("delete", "pod", "web", "-n", vns, "--wait=false")
    eventually(
        lambda: get_json(host_kubectl, "configmap", cm_name, "-n", vcluster.namespace) is None,
        what="cm removed",
    )
    eventually(
        lambda: get_json(host_kubectl, "secret", secret_name, "-n", vcluster.namespace) is None,
        what="secret removed",
    )
    # The virtual objects themselves are untouched.
    assert get_json(vc_kubectl, "configmap", "app-config", "-n", vns) is not None


def test_host_events_appear_on_the_virtual_pod_without_host_names(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("run", "ev", "--image=registry.invalid/app:1", "-n", vns)
    wait_running(vc_kubectl, "ev", vns)

    def scheduled() -> list[dict[str, Any]]:
        items = json.loads(vc_kubectl("get", "events", "-n", vns, "-o", "json").stdout)["items"]
        return [e for e in items if e["involvedObject"]["name"] == "ev" and e["reason"] == "Scheduled"]

    events = eventually(scheduled, timeout=30, what="Scheduled event on the virtual pod")
    hname = host_name("ev", vns, vcluster.name)
    for event in events:  # type: ignore[union-attr]
        assert hname not in event["message"]
        assert event["involvedObject"]["namespace"] == vns


SOLO_NODE = """
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}, type: kwok}}
  annotations: {{kwok.x-k8s.io/node: fake}}
spec:
  taints: [{{key: dedicated, value: fake-node-test, effect: NoSchedule}}]
status:
  capacity: {{cpu: "4", memory: 8Gi, pods: "10"}}
  allocatable: {{cpu: "4", memory: 8Gi, pods: "10"}}
"""

SOLO_POD = """
apiVersion: v1
kind: Pod
metadata: {{name: n1, namespace: {ns}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{key: dedicated, value: fake-node-test, effect: NoSchedule}}]
  containers: [{{name: c, image: registry.invalid/app:1}}]
"""


def test_fake_node_exists_while_a_pod_is_bound(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    # A host node of its own (tainted), so no other pod — CoreDNS, other tests' pods — keeps it in use.
    node = unique_name("solo-node")
    host_kubectl("apply", "-f", "-", stdin=SOLO_NODE.format(name=node))
    try:
        vc_kubectl("apply", "-f", "-", stdin=SOLO_POD.format(ns=vns, node=node))
        assert wait_running(vc_kubectl, "n1", vns)["spec"]["nodeName"] == node
        fake = get_json(vc_kubectl, "node", node)
        assert fake is not None and fake["metadata"]["labels"]["vcluster.loft.sh/fake-node"] == "true"
        assert {c["type"]: c["status"] for c in fake["status"]["conditions"]}["Ready"] == "True"
        vc_kubectl("delete", "pod", "n1", "-n", vns, "--wait=false")
        eventually(
            lambda: get_json(vc_kubectl, "node", node) is None, timeout=90, what=f"fake node {node} deleted"
        )
    finally:
        host_kubectl("delete", "node", node, "--wait=false", check=False)


def test_deleting_either_side_deletes_the_other(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("run", "a", "--image=registry.invalid/app:1", "-n", vns)
    vc_kubectl("run", "b", "--image=registry.invalid/app:1", "-n", vns)
    wait_running(vc_kubectl, "a", vns)
    wait_running(vc_kubectl, "b", vns)
    vc_kubectl("delete", "pod", "a", "-n", vns, "--wait=false")
    eventually(
        lambda: host_pod(host_kubectl, vcluster, "a", vns) is None, timeout=60, what="host pod a deleted"
    )
    eventually(
        lambda: get_json(vc_kubectl, "pod", "a", "-n", vns) is None, timeout=60, what="virtual pod a gone"
    )
    # Deleted on the host after it started (an eviction): the virtual pod goes, no resurrection.
    host_kubectl(
        "delete", "pod", host_name("b", vns, vcluster.name), "-n", vcluster.namespace, "--wait=false"
    )
    eventually(
        lambda: get_json(vc_kubectl, "pod", "b", "-n", vns) is None, timeout=60, what="virtual pod b deleted"
    )
    assert host_pod(host_kubectl, vcluster, "b", vns) is None


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"hostNetwork": True}, "hostNetwork"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}, "hostPath"),
        (
            {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]},
            "privileged",
        ),
        (
            {
                "containers": [
                    {"name": "c", "image": "x", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
                ]
            },
            "SYS_ADMIN",
        ),
        (
            {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}]},
            "hostPort",
        ),
    ],
)
def test_pod_security_refusals(
    vcluster: LocalVirtualCluster,
    vc_kubectl: Kubectl,
    host_kubectl: Kubectl,
    vns: str,
    patch: dict[str, Any],
    expected: str,
) -> None:
    name = unique_name("bad")
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}
    spec.update(patch)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": vns}, "spec": spec}
    vc_kubectl("apply", "-f", "-", stdin=json.dumps(pod))

    def refused() -> list[dict[str, Any]]:
        items = json.loads(vc_kubectl("get", "events", "-n", vns, "-o", "json").stdout)["items"]
        return [
            e
            for e in items
            if e["involvedObject"]["name"] == name and e["reason"] == "SyncError" and e["type"] == "Warning"
        ]

    events = eventually(refused, timeout=30, what="SyncError event")
    assert re.search(expected, events[0]["message"], re.IGNORECASE)  # type: ignore[index]
    assert host_pod(host_kubectl, vcluster, name, vns) is None


def test_ambiguous_names_are_refused_and_the_first_copy_untouched(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    suffix = unique_name("amb")
    first_ns, second_ns = f"team-{suffix}", f"prod-x-team-{suffix}"
    vc_kubectl("create", "namespace", first_ns)
    vc_kubectl("create", "namespace", second_ns)
    # web-x-prod in team-S  and  web in prod-x-team-S  map to the same host name.
    vc_kubectl("run", "web-x-prod", "--image=registry.invalid/app:1", "-n", first_ns)
    wait_running(vc_kubectl, "web-x-prod", first_ns)
    assert host_name("web-x-prod", first_ns, vcluster.name) == host_name("web", second_ns, vcluster.name)
    before = host_pod(host_kubectl, vcluster, "web-x-prod", first_ns)
    assert before is not None
    vc_kubectl("run", "web", "--image=registry.invalid/app:1", "-n", second_ns)

    def refused() -> bool:
        items = json.loads(vc_kubectl("get", "events", "-n", second_ns, "-o", "json").stdout)["items"]
        return any(e["reason"] == "SyncError" and e["involvedObject"]["name"] == "web" for e in items)

    eventually(refused, timeout=30, what="SyncError for the colliding pod")
    after = host_pod(host_kubectl, vcluster, "web-x-prod", first_ns)
    assert after is not None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["annotations"]["vcluster.loft.sh/object-namespace"] == first_ns
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
