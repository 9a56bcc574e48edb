"""Instances follow their templates as Loft's documents say: synced once, then again only on request.

"SyncOnce tells the controller to sync the instance once with the template. This is useful if you want to
sync an instance after a template was changed. To automatically sync an instance with a template, use
'x.x.x' as version instead." An edit of a template therefore leaves its instances as they are (their
TemplateSynced condition turns False, TemplateChangesAvailable: the proof that the controller saw the edit);
`spec.templateRef.syncOnce: true` applies it once and is reset; an x version follows newer versions.

One controller subprocess serves the module; the tests run in order and each cleans up what it made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.local.host import HostCluster
from tests.e2e.controlplane_support import (
    PNS,
    PROJECT,
    ControlPlane,
    controlplane_fixture,
    ensure_project,
    get_json,
    status_of,
    wait_phase,
)
from tests.support import Kubectl, eventually, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SI = "spaceinstances.management.loft.sh"
VCI = "virtualclusterinstances.management.loft.sh"


@pytest.fixture(scope="module")
def controlplane(
    host_cluster: HostCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    yield from controlplane_fixture(host_cluster, tmp_path_factory.mktemp("controlplane-templates"))


@pytest.fixture(scope="module")
def hk(host_kubectl: Kubectl, controlplane: ControlPlane) -> Kubectl:
    ensure_project(host_kubectl)
    return host_kubectl


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def wait_condition(
    hk: Kubectl, cp: ControlPlane, kind: str, name: str, type_: str, status: str, reason: str = ""
) -> dict[str, Any]:
    """The instance's status once condition `type_` has `status` (and `reason`, when given)."""

    def check() -> dict[str, Any] | None:
        st = status_of(hk, name, kind)
        cond = condition(st, type_)
        ok = cond.get("status") == status and (not reason or cond.get("reason") == reason)
        return st if ok else None

    try:
        return eventually(check, timeout=120, interval=0.5, what=f"{name}: {type_}={status} {reason}")  # type: ignore[return-value]
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nstatus: {status_of(hk, name, kind)}\ncontroller log:\n{cp.log_tail()}"
        ) from None


def ns_labels(hk: Kubectl, ns: str) -> dict[str, str]:
    return dict(get_json(hk, "namespace", ns)["metadata"].get("labels") or {})


def set_sync_once(hk: Kubectl, resource: str, name: str) -> None:
    hk("patch", resource, name, "-n", PNS, "--type=merge", "-p", '{"spec":{"templateRef":{"syncOnce":true}}}')


def synced_once(hk: Kubectl, resource: str, name: str, ns: str, label: str, want: str) -> bool:
    """The sync asked for is done: the namespace shows it and the controller has reset syncOnce."""
    spec = get_json(hk, resource, name, "-n", PNS)["spec"]
    return ns_labels(hk, ns).get(label) == want and not spec["templateRef"].get("syncOnce")


def test_space_instance_synced_once_then_on_sync_once(hk: Kubectl, controlplane: ControlPlane) -> None:
    tname, name = unique_name("st"), unique_name("space")
    space_ns = f"loft-{PROJECT}-s-{name}"
    tmpl = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "SpaceTemplate",
        "metadata": {"name": tname},
        "spec": {
            "parameters": [{"variable": "team", "required": True}],
            "template": {"metadata": {"labels": {"flavour": "one", "team": "{{ .Values.team }}"}}},
        },
    }
    inst = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "SpaceInstance",
        "metadata": {"name": name, "namespace": PNS},
        "spec": {"templateRef": {"name": tname}, "parameters": "team: a"},
    }
    hk("create", "-f", "-", stdin=json.dumps(tmpl))
    hk("create", "-f", "-", stdin=json.dumps(inst))
    try:
        st = wait_phase(hk, controlplane, name, "Ready", timeout=120, kind="spaceinstances")
        assert condition(st, "TemplateSynced")["status"] == "True", st
        assert st["syncedTemplate"]["name"] == tname
        assert st["syncedTemplate"]["template"] == tmpl["spec"]["template"]  # recorded before rendering
        assert st["space"]["metadata"]["labels"] == {"flavour": "one", "team": "a"}  # rendered
        assert ns_labels(hk, space_ns)["flavour"] == "one"

        # the template changes: the instance keeps what it was synced with, and says so
        hk(
            "patch",
            "spacetemplate",
            tname,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"template": {"metadata": {"labels": {"flavour": "two"}}}}}),
        )
        st = wait_condition(
            hk, controlplane, "spaceinstances", name, "TemplateSynced", "False", "TemplateChangesAvailable"
        )
        assert "syncOnce" in condition(st, "TemplateSynced")["message"]
        assert condition(st, "TemplateSynced")["severity"] == "Info"
        assert st["phase"] == "Ready", st
        assert st["space"]["metadata"]["labels"]["flavour"] == "one"
        assert st["syncedTemplate"]["template"]["metadata"]["labels"]["flavour"] == "one"
        assert ns_labels(hk, space_ns)["flavour"] == "one"

        # the instance's own parameters still apply at once, rendered into the recorded template
        hk("patch", SI, name, "-n", PNS, "--type=merge", "-p", '{"spec":{"parameters":"team: b"}}')
        eventually(
            lambda: ns_labels(hk, space_ns).get("team") == "b", timeout=60, what="parameter change applied"
        )
        assert ns_labels(hk, space_ns)["flavour"] == "one"

        # syncOnce: synced with the template as it is now, then reset by the controller
        set_sync_once(hk, SI, name)
        eventually(
            lambda: synced_once(hk, SI, name, space_ns, "flavour", "two"),
            timeout=60,
            what="syncOnce applied and reset",
        )
        st = wait_condition(hk, controlplane, "spaceinstances", name, "TemplateSynced", "True")
        assert st["syncedTemplate"]["template"]["metadata"]["labels"]["flavour"] == "two"
        assert st["space"]["metadata"]["labels"] == {"flavour": "two", "team": "b"}
    finally:
        hk("delete", SI, name, "-n", PNS, "--ignore-not-found", "--wait=true", timeout=120)
        hk("delete", "spacetemplate", tname, "--ignore-not-found")


def test_space_instance_x_version_follows_newer_matching_versions(
    hk: Kubectl, controlplane: ControlPlane
) -> None:
    tname, name = unique_name("stv"), unique_name("follow")
    space_ns = f"loft-{PROJECT}-s-{name}"

    def version(v: str, flavour: str) -> dict[str, Any]:
        return {"version": v, "template": {"metadata": {"labels": {"flavour": flavour}}}}

    tmpl = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "SpaceTemplate",
        "metadata": {"name": tname},
        "spec": {"versions": [version("1.0.0", "one")]},
    }
    inst = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "SpaceInstance",
        "metadata": {"name": name, "namespace": PNS},
        "spec": {"templateRef": {"name": tname, "version": "1.x.x"}},
    }
    hk("create", "-f", "-", stdin=json.dumps(tmpl))
    hk("create", "-f", "-", stdin=json.dumps(inst))
    try:
        st = wait_phase(hk, controlplane, name, "Ready", timeout=120, kind="spaceinstances")
        assert st["syncedTemplate"]["version"] == "1.0.0"
        assert ns_labels(hk, space_ns)["flavour"] == "one"

        # a newer 1.x version arrives: followed without being asked
        add = [{"op": "add", "path": "/spec/versions/-", "value": version("1.1.0", "eleven")}]
        hk("patch", "spacetemplate", tname, "--type=json", "-p", json.dumps(add))
        eventually(
            lambda: ns_labels(hk, space_ns).get("flavour") == "eleven", timeout=60, what="1.1.0 followed"
        )
        st = wait_condition(hk, controlplane, "spaceinstances", name, "TemplateSynced", "True")
        assert st["syncedTemplate"]["version"] == "1.1.0"

        # 2.0.0 is outside 1.x.x, and an edit of 1.1.0 in place is no newer version: neither is taken
        edit = [
            {"op": "add", "path": "/spec/versions/-", "value": version("2.0.0", "two")},
            {"op": "replace", "path": "/spec/versions/1/template/metadata/labels/flavour", "value": "edited"},
        ]
        hk("patch", "spacetemplate", tname, "--type=json", "-p", json.dumps(edit))
        st = wait_condition(
            hk, controlplane, "spaceinstances", name, "TemplateSynced", "False", "TemplateChangesAvailable"
        )
        assert st["syncedTemplate"]["version"] == "1.1.0"
        assert ns_labels(hk, space_ns)["flavour"] == "eleven"
    finally:
        hk("delete", SI, name, "-n", PNS, "--ignore-not-found", "--wait=true", timeout=120)
        hk("delete", "spacetemplate", tname, "--ignore-not-found")


def test_virtual_cluster_instance_synced_once_then_on_sync_once(
    hk: Kubectl, controlplane: ControlPlane
) -> None:
    tname, name = unique_name("vt"), unique_name("vc")
    host_ns = f"loft-{PROJECT}-v-{name}"
    tmpl = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "VirtualClusterTemplate",
        "metadata": {"name": tname},
        "spec": {
            "versions": [
                {
                    "version": "1.0.0",
                    "template": {
                        "helmRelease": {
                            "values": 'syncer:\n  extraArgs: ["--disable-sync-resources=ingresses"]\n'
                        },
                        "spaceTemplate": {"metadata": {"labels": {"flavour": "one"}}},
                    },
                }
            ]
        },
    }
    inst = {
        "apiVersion": "management.loft.sh/v1",
        "kind": "VirtualClusterInstance",
        "metadata": {"name": name, "namespace": PNS},
        "spec": {"templateRef": {"name": tname, "version": "1.0.0"}},
    }
    hk("create", "-f", "-", stdin=json.dumps(tmpl))
    hk("create", "-f", "-", stdin=json.dumps(inst))
    try:
        st = wait_phase(hk, controlplane, name, "Ready")
        for cond in ("TemplateResolved", "TemplateSynced", "VirtualClusterReady"):
            assert condition(st, cond)["status"] == "True", st
        assert st["syncedTemplate"]["version"] == "1.0.0"
        deploy_hash = st["deployHash"]
        assert ns_labels(hk, host_ns)["flavour"] == "one"

        # edit version 1.0.0 in place: the running instance is left alone
        edit = [
            {
                "op": "replace",
                "path": "/spec/versions/0/template/spaceTemplate/metadata/labels/flavour",
                "value": "two",
            }
        ]
        hk("patch", "virtualclustertemplate", tname, "--type=json", "-p", json.dumps(edit))
        st = wait_condition(hk, controlplane, "virtualclusterinstances", name, "TemplateSynced", "False")
        assert condition(st, "TemplateSynced")["reason"] == "TemplateChangesAvailable", st
        assert st["phase"] == "Ready" and st["deployHash"] == deploy_hash, st
        assert st["virtualCluster"]["spaceTemplate"]["metadata"]["labels"]["flavour"] == "one"
        assert ns_labels(hk, host_ns)["flavour"] == "one"

        # syncOnce: the edit arrives, syncOnce goes back to false
        set_sync_once(hk, VCI, name)
        eventually(
            lambda: synced_once(hk, VCI, name, host_ns, "flavour", "two"),
            timeout=120,
            what="syncOnce applied and reset",
        )
        st = wait_condition(hk, controlplane, "virtualclusterinstances", name, "TemplateSynced", "True")
        assert st["virtualCluster"]["spaceTemplate"]["metadata"]["labels"]["flavour"] == "two"
        assert st["deployHash"] == deploy_hash  # a label is no reason to deploy again
        assert get_json(hk, VCI, name, "-n", PNS)["spec"]["templateRef"]["syncOnce"] is False
    finally:
        hk("delete", VCI, name, "-n", PNS, "--ignore-not-found", "--wait=true", timeout=180)
        hk("delete", "virtualclustertemplate", tname, "--ignore-not-found")
