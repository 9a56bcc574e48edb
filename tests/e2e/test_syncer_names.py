"""Long (> 63 characters) and ambiguous (`-x-`) names for configmaps, secrets, ingresses and endpoints.

(Pods, services and PVCs have their own cases in test_syncer_pods/services/volumes.)
"""

from __future__ import annotations

import json

import pytest

from controlplane.local.tenant import LocalVirtualCluster
from syncer.translate.names import host_name
from tests.e2e.test_syncer_pods import get_json, wait_running
from tests.support import Kubectl, eventually, unique_name

pytestmark = pytest.mark.e2e

LONG = "a-rather-long-object-name-to-force-the-hashed-form"

OBJECTS = """
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}, namespace: {ns}}}
data: {{k: v}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {ns}}}
stringData: {{k: v}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: {name}, namespace: {ns}}}
subsets: [{{addresses: [{{ip: 192.0.2.30}}], ports: [{{port: 80}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: {ns}}}
spec:
  tls: [{{secretName: {name}}}]
  defaultBackend: {{service: {{name: {name}, port: {{number: 80}}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: user, namespace: {ns}}}
spec:
  containers:
  - name: c
    image: registry.invalid/app:1
    envFrom: [{{configMapRef: {{name: {name}}}}}, {{secretRef: {{name: {name}}}}}]
"""

KINDS = ("configmap", "secret", "endpoints", "ingress")


def sync_errors(kubectl: Kubectl, ns: str) -> list[dict[str, object]]:
    items = json.loads(kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    return [e for e in items if e["reason"] == "SyncError"]


def test_long_names_are_hashed_for_every_kind(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl, vns: str
) -> None:
    vc_kubectl("apply", "-f", "-", stdin=OBJECTS.format(name=LONG, ns=vns))
    hname = host_name(LONG, vns, vcluster.name)
    assert len(hname) == 63 and len(f"{LONG}-x-{vns}-x-{vcluster.name}") > 63
    for kind in KINDS:
        copy = eventually(
            lambda k=kind: get_json(host_kubectl, k, hname, "-n", vcluster.namespace),
            timeout=60,
            what=f"host {kind}",
        )
        assert copy["metadata"]["annotations"]["vcluster.loft.sh/object-name"] == LONG  # type: ignore[index]


def test_ambiguous_names_are_refused_for_every_kind_and_a_pod_cannot_borrow_the_other_copy(
    vcluster: LocalVirtualCluster, vc_kubectl: Kubectl, host_kubectl: Kubectl
) -> None:
    suffix = unique_name("amb")
    first_ns, second_ns = f"team-{suffix}", f"prod-x-team-{suffix}"
    for ns in (first_ns, second_ns):
        vc_kubectl("create", "namespace", ns)
    vc_kubectl("apply", "-f", "-", stdin=OBJECTS.format(name="cfg-x-prod", ns=first_ns))
    wait_running(vc_kubectl, "user", first_ns)
    shared = host_name("cfg-x-prod", first_ns, vcluster.name)
    assert shared == host_name("cfg", second_ns, vcluster.name)
    before = {}
    for kind in KINDS:
        before[kind] = eventually(
            lambda k=kind: get_json(host_kubectl, k, shared, "-n", vcluster.namespace),
            timeout=60,
            what=f"first {kind}",
        )
    vc_kubectl("apply", "-f", "-", stdin=OBJECTS.format(name="cfg", ns=second_ns))

    def refused() -> set[str]:
        kinds = {str(e["involvedObject"]["kind"]) for e in sync_errors(vc_kubectl, second_ns)}  # type: ignore[index]
        return kinds if {"ConfigMap", "Secret", "Endpoints", "Ingress", "Pod"} <= kinds else set()

    eventually(refused, timeout=90, what="SyncError for every colliding object and the pod that uses them")
    for kind in KINDS:
        after = get_json(host_kubectl, kind, shared, "-n", vcluster.namespace)
        assert after is not None
        assert after["metadata"]["uid"] == before[kind]["metadata"]["uid"]  # type: ignore[index]
        assert after["metadata"]["annotations"]["vcluster.loft.sh/object-namespace"] == first_ns
    # The second namespace's pod never reached the host (it would have read the first one's data).
    assert (
        get_json(host_kubectl, "pod", host_name("user", second_ns, vcluster.name), "-n", vcluster.namespace)
        is None
    )
