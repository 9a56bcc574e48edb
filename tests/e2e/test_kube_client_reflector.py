"""The kube client and the reflector against a real kube-apiserver (the local host cluster).

What the API server really does, as checked here (k8s 1.37):

* A watch from a resourceVersion older than the watch cache's window is answered `200` with one
  `ERROR` event carrying a `Status` of code 410, reason `Expired` ("too old resource version").
  Built-in types are a poor way to get one on a fresh cluster: their caches were filled from etcd
  revision 1, so "1" is still inside the window. A custom resource's cache starts when its CRD is
  established, so a watch of custom resources from "1" does get the 410.
* Updating a CRD's spec tears its storage down: open watches end about a second later, requests meet
  `429 storage is (re)initializing` for a moment, and then every resourceVersion from before the
  update is 410 Expired. That is the real-world path (an operator upgrade rewrites its CRDs) on which
  the reflector's relist is tested.
* Bookmarks are sent about 2 s before a watch's `timeoutSeconds` runs out, and only when the cache's
  resourceVersion has moved past what the watcher has seen (a quiet cluster sends none).

Tests wait on conditions with deadlines, never on bare sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from prometheus_client import REGISTRY

from syncer.cache.store import Store
from syncer.kube.client import ApiError, JsonObj, KubeClient
from syncer.kube.reflector import Reflector
from syncer.kube.resources import CONFIGMAPS, CRDS, PODS, SERVICE_ACCOUNTS, ResourceType

pytestmark = pytest.mark.e2e

CLUSTER = "e2e-host"  # the `cluster` label of this module's clients: keeps metric deltas our own
BOUND = 30.0  # deadline for anything that should happen "soon"
ROLES = ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")


class Cluster(Protocol):
    """What this module needs of the `host_cluster` fixture."""

    kubeconfig: Path

    @property
    def server(self) -> str: ...


# ------------------------------------------------------------------------------------------ helpers


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def writes(kind: str, verb: str) -> float:
    return metric("vcluster_writes_total", cluster=CLUSTER, kind=kind, verb=verb)


async def eventually(condition: Callable[[], object], *, what: str, within: float = BOUND) -> None:
    """Poll a cheap in-process condition until it holds; fail with `what` at the deadline.

    Only for state that offers nothing to await (a metric, the reflector's resourceVersion).
    """
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 (no event exists for these values; polling is cheap)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None


def cm(name: str, namespace: str, **data: str) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def name_of(obj: JsonObj | None) -> str | None:
    return None if obj is None else str(obj["metadata"]["name"])


class Changes:
    """Records `on_change` calls and lets a test await the next ones."""

    def __init__(self) -> None:
        self.seen: list[tuple[JsonObj | None, JsonObj | None]] = []
        self._queue: asyncio.Queue[tuple[JsonObj | None, JsonObj | None]] = asyncio.Queue()

    def __call__(self, old: JsonObj | None, new: JsonObj | None) -> None:
        self.seen.append((old, new))
        self._queue.put_nowait((old, new))

    async def next(self, within: float = BOUND) -> tuple[JsonObj | None, JsonObj | None]:
        return await asyncio.wait_for(self._queue.get(), within)

    async def until(
        self, predicate: Callable[[JsonObj | None, JsonObj | None], bool], within: float = BOUND
    ) -> tuple[JsonObj | None, JsonObj | None]:
        async with asyncio.timeout(within):
            while True:
                old, new = await self._queue.get()
                if predicate(old, new):
                    return old, new


@contextlib.asynccontextmanager
async def running(reflector: Reflector) -> AsyncIterator[Reflector]:
    """Run the reflector in a task owned by the test; wait for its first sync; always cancel it."""
    task = asyncio.create_task(reflector.run(), name=f"reflector-{reflector.name}")
    try:
        await asyncio.wait_for(reflector.synced.wait(), BOUND)
        yield reflector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def client(host_cluster: Cluster) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(host_cluster.kubeconfig, name=CLUSTER) as kube:
        yield kube


@pytest.fixture
async def widgets(client: KubeClient, namespace: str) -> AsyncIterator[ResourceType]:
    """A namespaced custom resource type of its own for this test (CRDs are cluster-scoped)."""
    group = f"{namespace}.e2e.vcluster-py.dev"
    rt = ResourceType(group, "v1", "widgets", "Widget")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    await client.create(CRDS, crd)
    try:
        established: dict[str, bool] = {}

        async def check() -> None:
            got = await client.get(CRDS, f"widgets.{group}")
            conditions = (got.get("status") or {}).get("conditions") or []
            established["ok"] = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        async with asyncio.timeout(BOUND):
            while not established.get("ok"):
                await check()
                if not established.get("ok"):
                    await asyncio.sleep(0.05)
        # Established means the API is served; the first write can still race the handler's storage.
        async with asyncio.timeout(BOUND):
            while True:
                try:
                    await client.list(rt, namespace)
                    break
                except ApiError as exc:
                    if exc.status not in (404, 429, 503):
                        raise
                    await asyncio.sleep(0.05)
        yield rt
    finally:
        await client.delete(CRDS, f"widgets.{group}", missing_ok=True)


def widget(name: str, rt: ResourceType, **spec: Any) -> JsonObj:
    return {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {"name": name}, "spec": spec}


# ------------------------------------------------------------------------------------------- client


async def test_crud_round_trip_counts_each_write_once(client: KubeClient, namespace: str) -> None:
    before = {verb: writes("ConfigMap", verb) for verb in ("create", "update", "patch", "delete")}

    dry = await client.create(CONFIGMAPS, cm("c", namespace, a="1"), dry_run=True)
    assert dry["metadata"]["name"] == "c"
    with pytest.raises(ApiError) as missing:
        await client.get(CONFIGMAPS, "c", namespace)
    assert missing.value.not_found  # a dry run writes nothing...

    created = await client.create(CONFIGMAPS, cm("c", namespace, a="1"))
    assert created["metadata"]["uid"] and created["data"] == {"a": "1"}
    got = await client.get(CONFIGMAPS, "c", namespace)
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    got["data"]["b"] = "2"
    replaced = await client.replace(CONFIGMAPS, got)
    assert replaced["data"] == {"a": "1", "b": "2"}

    merged = await client.patch(CONFIGMAPS, "c", {"data": {"a": None, "m": "3"}}, namespace)
    assert merged["data"] == {"b": "2", "m": "3"}
    strategic = await client.patch(
        CONFIGMAPS, "c", {"metadata": {"labels": {"s": "1"}}}, namespace, patch_type="strategic"
    )
    assert strategic["metadata"]["labels"] == {"s": "1"}
    jsonpatched = await client.patch(
        CONFIGMAPS,
        "c",
        [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": strategic["metadata"]["resourceVersion"],
            },
            {"op": "add", "path": "/data/j", "value": "4"},
        ],
        namespace,
        patch_type="json",
    )
    assert jsonpatched["data"]["j"] == "4"
    applied = await client.patch(
        CONFIGMAPS,
        "c",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"ssa": "5"}},
        namespace,
        patch_type="apply",
        field_manager="e2e-test",
        force=True,
    )
    assert applied["data"]["ssa"] == "5"
    assert any(entry["manager"] == "e2e-test" for entry in applied["metadata"]["managedFields"])

    deleted = await client.delete(CONFIGMAPS, "c", namespace)
    assert deleted is not None
    assert await client.delete(CONFIGMAPS, "c", namespace, missing_ok=True) is None

    assert writes("ConfigMap", "create") - before["create"] == 1  # not the dry run
    assert writes("ConfigMap", "update") - before["update"] == 1
    assert writes("ConfigMap", "patch") - before["patch"] == 4
    assert writes("ConfigMap", "delete") - before["delete"] == 1  # not the missing_ok 404


async def test_errors_map_to_api_error_helpers(client: KubeClient, namespace: str) -> None:
    with pytest.raises(ApiError) as err:
        await client.get(CONFIGMAPS, "nope", namespace)
    assert err.value.not_found and err.value.status == 404 and err.value.reason == "NotFound"
    assert err.value.body["kind"] == "Status"

    first = await client.create(CONFIGMAPS, cm("dup", namespace))
    with pytest.raises(ApiError) as err:
        await client.create(CONFIGMAPS, cm("dup", namespace))
    assert err.value.already_exists and not err.value.conflict and err.value.status == 409

    await client.patch(CONFIGMAPS, "dup", {"data": {"x": "1"}}, namespace)
    with pytest.raises(ApiError) as err:
        await client.replace(CONFIGMAPS, first)  # carries the stale resourceVersion
    assert err.value.conflict and not err.value.already_exists

    with pytest.raises(ApiError) as err:
        await client.delete(CONFIGMAPS, "dup", namespace, preconditions={"uid": str(uuid.uuid4())})
    assert err.value.conflict
    await client.delete(CONFIGMAPS, "dup", namespace, preconditions={"uid": first["metadata"]["uid"]})

    with pytest.raises(ApiError) as err:
        await client.create(CONFIGMAPS, cm("Not_A_Valid_Name", namespace))
    assert err.value.invalid and err.value.status == 422

    with pytest.raises(ApiError) as err:
        await client.delete(CONFIGMAPS, "gone-already", namespace)
    assert err.value.not_found


async def test_list_follows_pagination(client: KubeClient, namespace: str) -> None:
    for i in range(7):
        obj = cm(f"page-{i}", namespace)
        obj["metadata"]["labels"] = {"set": "paged"}
        await client.create(CONFIGMAPS, obj)
    pages_before = metric("vcluster_kube_requests_total", cluster=CLUSTER, verb="list", code_class="2xx")

    listing = await client.list(CONFIGMAPS, namespace, label_selector="set=paged", limit=2)

    assert sorted(str(name_of(o)) for o in listing["items"]) == [f"page-{i}" for i in range(7)]
    assert (
        metric("vcluster_kube_requests_total", cluster=CLUSTER, verb="list", code_class="2xx") - pages_before
        == 4
    )
    assert listing["metadata"]["resourceVersion"]
    # Items of built-in lists come without apiVersion/kind on the wire; the client fills them in.
    assert all(o["apiVersion"] == "v1" and o["kind"] == "ConfigMap" for o in listing["items"])
    unpaged = await client.list(CONFIGMAPS, namespace, field_selector="metadata.name=page-3")
    assert [name_of(o) for o in unpaged["items"]] == ["page-3"]


async def test_watch_streams_raw_events_including_huge_lines(client: KubeClient, namespace: str) -> None:
    start = (await client.list(CONFIGMAPS, namespace))["metadata"]["resourceVersion"]
    big = "x" * (300 * 1024)  # one JSON line of > 128 KiB: aiohttp's readline() would refuse it

    await client.create(CONFIGMAPS, cm("w", namespace))
    await client.patch(CONFIGMAPS, "w", {"data": {"big": big}}, namespace)
    await client.delete(CONFIGMAPS, "w", namespace)

    events: list[JsonObj] = []
    async with asyncio.timeout(BOUND):
        async with contextlib.aclosing(
            client.watch(CONFIGMAPS, namespace, resource_version=start, timeout_seconds=20)
        ) as stream:
            async for event in stream:
                if event["type"] == "BOOKMARK" or name_of(event["object"]) != "w":
                    continue
                events.append(event)
                if event["type"] == "DELETED":
                    break
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["data"]["big"] == big
    assert events[0]["object"]["kind"] == "ConfigMap"


async def test_watch_from_a_too_old_version_yields_a_410_error_event(
    client: KubeClient, namespace: str, widgets: ResourceType
) -> None:
    async with asyncio.timeout(BOUND):
        async with contextlib.aclosing(
            client.watch(widgets, namespace, resource_version="1", timeout_seconds=10)
        ) as stream:
            first = await anext(stream)
    assert first["type"] == "ERROR"
    error = ApiError.from_status(first["object"])
    assert error.gone and error.reason == "Expired"
    assert "too old resource version" in error.message


async def test_token_file_is_reread_after_rotation_and_rbac_maps_to_forbidden(
    client: KubeClient, host_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    await client.create(SERVICE_ACCOUNTS, {"metadata": {"name": "reader"}}, namespace)
    token_writes = writes("ServiceAccount/token", "create")
    request = await client.create_subresource(
        SERVICE_ACCOUNTS,
        "reader",
        namespace,
        "token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )
    token = request["status"]["token"]
    assert writes("ServiceAccount/token", "create") - token_writes == 1

    admin = yaml.safe_load(host_cluster.kubeconfig.read_text())
    ca_data = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    (tmp_path / "token").write_text("not-a-valid-token")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": host_cluster.server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],  # relative to the kubeconfig
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": namespace}}],
        "current-context": "x",
    }
    path = tmp_path / "reader.kubeconfig"
    path.write_text(yaml.safe_dump(config))

    async with KubeClient.from_kubeconfig(path, name=CLUSTER) as reader:
        assert reader.namespace == namespace
        with pytest.raises(ApiError) as err:
            await reader.list(CONFIGMAPS, namespace)
        assert err.value.unauthorized

        (tmp_path / "token").write_text(token + "\n")  # the "rotation": a 401 makes the client re-read
        assert reader.auth_headers() == {"Authorization": f"Bearer {token}"}
        with pytest.raises(ApiError) as err:
            await reader.list(CONFIGMAPS, namespace)
        assert err.value.forbidden and err.value.status == 403

        await client.create(
            ROLES,
            {
                "metadata": {"name": "read-cm"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
            },
            namespace,
        )
        await client.create(
            ROLE_BINDINGS,
            {
                "metadata": {"name": "read-cm"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
            namespace,
        )
        listing: dict[str, JsonObj] = {}

        async def can_list() -> None:
            try:
                listing["ok"] = await reader.list(CONFIGMAPS, namespace)
            except ApiError as exc:  # RBAC caches take a moment to see the new binding
                if not exc.forbidden:
                    raise

        async with asyncio.timeout(BOUND):
            while "ok" not in listing:
                await can_list()
                if "ok" not in listing:
                    await asyncio.sleep(0.1)
        with pytest.raises(ApiError) as err:
            await reader.list(PODS, namespace)
        assert err.value.forbidden


async def test_in_cluster_and_insecure_configurations(
    host_cluster: Cluster, client: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await client.create(SERVICE_ACCOUNTS, {"metadata": {"name": "pod-sa"}}, namespace)
    request = await client.create_subresource(
        SERVICE_ACCOUNTS,
        "pod-sa",
        namespace,
        "token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    admin = yaml.safe_load(host_cluster.kubeconfig.read_text())
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(request["status"]["token"])
    (sa_dir / "ca.crt").write_bytes(
        base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    (sa_dir / "namespace").write_text(namespace)
    host, port = host_cluster.server.removeprefix("https://").rsplit(":", 1)
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}

    async with KubeClient.in_cluster(name=CLUSTER, sa_dir=sa_dir, environ=env) as pod_client:
        assert pod_client.namespace == namespace
        # Authenticated as the ServiceAccount: it may do nothing, which proves who it is.
        with pytest.raises(ApiError) as err:
            await pod_client.get(CONFIGMAPS, "kube-root-ca.crt", namespace)
        assert err.value.forbidden
        assert f"system:serviceaccount:{namespace}:pod-sa" in err.value.message

    insecure = {
        **admin,
        "clusters": [{"name": admin["clusters"][0]["name"], "cluster": {"server": host_cluster.server}}],
    }
    insecure["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    async with KubeClient.from_kubeconfig_dict(insecure, name=CLUSTER) as unverified:
        got = await unverified.get(CONFIGMAPS, "kube-root-ca.crt", namespace)
        assert got["metadata"]["name"] == "kube-root-ca.crt"


# ---------------------------------------------------------------------------------------- reflector


async def test_reflector_syncs_then_follows_adds_updates_and_deletes(
    client: KubeClient, namespace: str
) -> None:
    await client.create(CONFIGMAPS, cm("pre-1", namespace))
    await client.create(CONFIGMAPS, cm("pre-2", namespace))
    store = Store()
    changes = Changes()
    reflector = Reflector(client, CONFIGMAPS, store, namespace=namespace, on_change=changes, page_size=1)

    async with running(reflector):
        # The initial list is complete (paged one by one) and reported as additions.
        # (kube-root-ca.crt may not exist yet: kcm publishes it into new namespaces asynchronously.)
        assert {"pre-1", "pre-2"} <= {name_of(o) for o in store.list()}
        assert {name_of(new) for old, new in changes.seen if old is None} >= {"pre-1", "pre-2"}

        created = await client.create(CONFIGMAPS, cm("live", namespace, v="1"))
        old, new = await changes.until(lambda o, n: name_of(n) == "live")
        assert old is None and new is not None
        assert new["metadata"]["uid"] == created["metadata"]["uid"]

        await client.patch(CONFIGMAPS, "live", {"data": {"v": "2"}}, namespace)
        old, new = await changes.until(lambda o, n: name_of(n) == "live")
        assert old is not None and new is not None
        assert (old["data"]["v"], new["data"]["v"]) == ("1", "2")
        assert store.get(f"{namespace}/live") == new

        await client.delete(CONFIGMAPS, "pre-1", namespace)
        old, new = await changes.until(lambda o, n: n is None)
        assert name_of(old) == "pre-1"
        assert f"{namespace}/pre-1" not in store


async def test_reflector_relists_after_410_and_reports_what_it_missed(
    client: KubeClient, namespace: str, widgets: ResourceType
) -> None:
    await client.create(widgets, widget("a", widgets), namespace)
    await client.create(widgets, widget("b", widgets), namespace)
    store = Store()
    changes = Changes()
    reflector = Reflector(client, widgets, store, namespace=namespace, on_change=changes)
    gone_before = metric(
        "vcluster_reflector_watch_restarts_total", cluster=CLUSTER, resource=widgets.resource, reason="gone"
    )
    relists_before = metric("vcluster_reflector_relists_total", cluster=CLUSTER, resource=widgets.resource)

    async with running(reflector):
        assert sorted(store.keys()) == [f"{namespace}/a", f"{namespace}/b"]
        # Make the cache disagree with the server, as if events had been missed while blind:
        # a ghost the server does not have, and a real object the cache lost.
        ghost = widget("ghost", widgets)
        ghost["metadata"].update(namespace=namespace, resourceVersion="1")
        store.upsert(ghost)
        store.delete(f"{namespace}/a")

        # Rewriting the CRD's spec tears its storage down: the watch ends, the new cache starts at a
        # newer resourceVersion, and resuming from ours is answered 410.
        crd = await client.get(CRDS, f"widgets.{widgets.group}")
        crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
            {"name": "Colour", "type": "string", "jsonPath": ".spec.colour"}
        ]
        await client.replace(CRDS, crd)

        removed = await changes.until(lambda o, n: n is None, within=60)
        assert name_of(removed[0]) == "ghost"
        # One relist emits all its deltas at once: the re-added "a" is already recorded, "b" (unchanged)
        # produced none.
        relist = changes.seen[changes.seen.index(removed) - 1 :]
        assert [(name_of(old), name_of(new)) for old, new in relist] == [(None, "a"), ("ghost", None)]
        assert sorted(store.keys()) == [f"{namespace}/a", f"{namespace}/b"]
        assert (
            metric(
                "vcluster_reflector_watch_restarts_total",
                cluster=CLUSTER,
                resource=widgets.resource,
                reason="gone",
            )
            - gone_before
            >= 1
        )
        assert (
            metric("vcluster_reflector_relists_total", cluster=CLUSTER, resource=widgets.resource)
            - relists_before
            >= 2
        )

        # ... and it goes on watching.
        await client.create(widgets, widget("c", widgets, colour="red"), namespace)
        _, new = await changes.until(lambda o, n: name_of(n) == "c")
        assert new is not None and new["spec"] == {"colour": "red"}


async def test_bookmarks_move_the_resource_version_without_events(client: KubeClient, namespace: str) -> None:
    store = Store()
    changes = Changes()
    # Server-side timeout 5 s: the API server sends a bookmark ~2 s before it, if its version moved.
    reflector = Reflector(
        client,
        CONFIGMAPS,
        store,
        namespace=namespace,
        label_selector="watched=yes",
        on_change=changes,
        watch_timeout=5,
    )
    bookmarks_before = metric(
        "vcluster_reflector_events_total", cluster=CLUSTER, resource=CONFIGMAPS.resource, type="BOOKMARK"
    )
    async with running(reflector):
        assert len(store) == 0
        unwatched = await client.create(CONFIGMAPS, cm("unwatched", namespace))  # moves the global version
        target = int(unwatched["metadata"]["resourceVersion"])  # etcd versions are integers (test-only)

        await eventually(
            lambda: int(reflector.resource_version) >= target, what="a bookmark past the unwatched object"
        )
        assert (
            metric(
                "vcluster_reflector_events_total",
                cluster=CLUSTER,
                resource=CONFIGMAPS.resource,
                type="BOOKMARK",
            )
            > bookmarks_before
        )
        assert changes.seen == []  # bookmarks are not changes

        # The re-watch after the server-side timeout resumes from the bookmark and still sees events.
        watched = cm("watched", namespace)
        watched["metadata"]["labels"] = {"watched": "yes"}
        await client.create(CONFIGMAPS, watched)
        _, new = await changes.until(lambda o, n: name_of(n) == "watched")
        assert new is not None


async def test_reflector_reconnects_when_the_stream_goes_silent(client: KubeClient, namespace: str) -> None:
    store = Store()
    changes = Changes()
    reflector = Reflector(
        client,
        CONFIGMAPS,
        store,
        namespace=namespace,
        on_change=changes,
        inactivity_timeout=0.5,
        watch_timeout=300,
    )
    labels = {"cluster": CLUSTER, "resource": CONFIGMAPS.resource}
    inactive_before = metric("vcluster_reflector_watch_restarts_total", reason="inactivity", **labels)
    relists_before = metric("vcluster_reflector_relists_total", **labels)
    async with running(reflector):
        await eventually(
            lambda: (
                metric("vcluster_reflector_watch_restarts_total", reason="inactivity", **labels)
                - inactive_before
                >= 2
            ),
            what="two inactivity reconnects",
        )
        # Reconnecting is a re-watch from the last version, not a relist.
        assert metric("vcluster_reflector_relists_total", **labels) - relists_before == 1
        await client.create(CONFIGMAPS, cm("after-silence", namespace))
        _, new = await changes.until(lambda o, n: name_of(n) == "after-silence")
        assert new is not None
