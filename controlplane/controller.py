"""The control plane's controller: one reconcile per VirtualClusterInstance, SpaceInstance and Project.

Reflectors keep stores of every management.loft.sh object; changes go into work queues (one per kind)
drained by `run_workers`. Each reconcile reads the object fresh, moves it one step further and writes
what it found into `status` (phase, reason, message, conditions): errors are on the object, not only
in this process's log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syncer.cache.queue import WorkQueue, run_workers
from syncer.cache.store import Store
from syncer.kube.client import ApiError, KubeClient, KubeError
from syncer.kube.reflector import Reflector
from syncer.kube.resources import NAMESPACES, ResourceType

from . import templates as tpl
from .crds import install_crds
from .drivers import Deployment, Driver
from .objects import Obj, apply_objects, detect_service_cidr, read_kubeconfig, set_condition
from .resources import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_DRIVER,
    ANNOTATION_IMPORTED,
    ANNOTATION_PRESERVE_NAMESPACE,
    ANNOTATION_SKIP_HELM_DEPLOY,
    ANNOTATION_SLEEP_FORCE,
    ANNOTATION_SLEEP_TYPE,
    ANNOTATION_SLEEPING_SINCE,
    COND_DEPLOYED,
    COND_OBJECTS,
    COND_READY,
    COND_SPACE_READY,
    COND_TEMPLATE_RESOLVED,
    COND_TEMPLATE_SYNCED,
    FINALIZER,
    LABEL_INSTANCE_NAME,
    LABEL_INSTANCE_NAMESPACE,
    LABEL_INSTANCE_PROJECT,
    LABEL_PROJECT,
    LABEL_SPACE_INSTANCE_NAME,
    LABEL_SPACE_INSTANCE_NAMESPACE,
    PHASE_FAILED,
    PHASE_PENDING,
    PHASE_READY,
    PHASE_SLEEPING,
    PROJECTS,
    SPACE_INSTANCES,
    SPACE_TEMPLATES,
    STATUS_SYNCED_TEMPLATE,
    VIRTUAL_CLUSTER_INSTANCES,
    VIRTUAL_CLUSTER_TEMPLATES,
    default_host_namespace,
    project_namespace,
    project_of,
)

log = logging.getLogger(__name__)

ANNOTATION_CLUSTER_REF = "vcluster-py.loft.sh/cluster-ref"
CHART_VALUES = Path(__file__).resolve().parents[1] / "charts" / "vcluster" / "values.yaml"
POLL_SECONDS = 2.0


class _Stop(Exception):
    """Reconcile ends here; status already written."""


def chart_defaults(path: Path = CHART_VALUES) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


@dataclass
class Controller:
    client: KubeClient
    drivers: dict[str, Driver]
    default_driver: str = "local"
    workers: int = 4
    chart_values: dict[str, Any] = field(default_factory=chart_defaults)
    service_cidr: str = ""

    def __post_init__(self) -> None:
        self.stores: dict[str, Store] = {}
        self.reflectors: list[Reflector] = []
        self.vci_queue: WorkQueue[str] = WorkQueue("virtualclusterinstances")
        self.si_queue: WorkQueue[str] = WorkQueue("spaceinstances")
        self.project_queue: WorkQueue[str] = WorkQueue("projects")
        self.started = asyncio.Event()

    # --- plumbing

    def _reflect(self, rt: ResourceType, on_change: Any) -> Store:
        store = Store()
        reflector = Reflector(self.client, rt, store, on_change=on_change, name=f"controlplane/{rt.plural}")
        self.stores[rt.plural] = store
        self.reflectors.append(reflector)
        return store

    @staticmethod
    def _key(obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace') or ''}/{meta['name']}"

    def _enqueue(self, queue: WorkQueue[str]) -> Any:
        def on_change(old: Obj | None, new: Obj | None) -> None:
            obj = new or old
            if obj is not None:
                queue.add(self._key(obj))

        return on_change

    def _template_changed(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        name = obj["metadata"]["name"]
        kind_store, queue = (
            ("virtualclusterinstances", self.vci_queue)
            if obj.get("kind") == "VirtualClusterTemplate"
            else ("spaceinstances", self.si_queue)
        )
        store = self.stores.get(kind_store)
        for inst in store.list() if store else []:
            if ((inst.get("spec") or {}).get("templateRef") or {}).get("name") == name:
                queue.add(self._key(inst))

    def ready(self) -> tuple[bool, str]:
        if not self.started.is_set():
            return False, "starting"
        missing = [r.name for r in self.reflectors if not r.synced.is_set()]
        return (not missing, "ok" if not missing else f"waiting for {', '.join(missing)}")

    async def run(self) -> None:
        await install_crds(self.client)
        if not self.service_cidr:
            self.service_cidr = await detect_service_cidr(self.client)
        log.info("control plane starting", extra={"serviceCIDR": self.service_cidr})
        self._reflect(VIRTUAL_CLUSTER_INSTANCES, self._enqueue(self.vci_queue))
        self._reflect(SPACE_INSTANCES, self._enqueue(self.si_queue))
        self._reflect(PROJECTS, self._enqueue(self.project_queue))
        self._reflect(VIRTUAL_CLUSTER_TEMPLATES, self._template_changed)
        self._reflect(SPACE_TEMPLATES, self._template_changed)
        self.started.set()
        try:
            async with asyncio.TaskGroup() as tg:
                for reflector in self.reflectors:
                    tg.create_task(reflector.run())
                tg.create_task(run_workers(self.vci_queue, self.reconcile_vci, workers=self.workers))
                tg.create_task(run_workers(self.si_queue, self.reconcile_space, workers=2))
                tg.create_task(run_workers(self.project_queue, self.reconcile_project, workers=1))
        finally:
            for queue in (self.vci_queue, self.si_queue, self.project_queue):
                queue.shutdown()
            for driver in self.drivers.values():
                await asyncio.shield(driver.close())

    # --- status

    async def _status(self, rt: ResourceType, obj: Obj, **changes: Any) -> Obj:
        """Write `status` with `changes` (a None value removes the field), unless nothing changes.

        The whole status is replaced (JSON patch), not merged: a merge patch would keep keys that a
        smaller rendered or recorded template no longer has. This controller is status's only writer.
        """
        status = {k: v for k, v in {**(obj.get("status") or {}), **changes}.items() if v is not None}
        if status == (obj.get("status") or {}):
            return obj
        meta = obj["metadata"]
        try:
            updated = await self.client.patch(
                rt,
                meta["name"],
                [{"op": "add", "path": "/status", "value": status}],
                meta.get("namespace"),
                patch_type="json",
                subresource="status",
            )
        except ApiError as err:
            if err.not_found:
                raise _Stop() from None
            raise
        obj["status"] = updated.get("status") or status
        return obj

    async def _fail(
        self,
        rt: ResourceType,
        obj: Obj,
        condition: str,
        reason: str,
        message: str,
        *,
        also: tuple[str, ...] = (),
    ) -> None:
        """Phase Failed, the reason on `condition` and on those in `also`; ends the reconcile (_Stop)."""
        conditions = list((obj.get("status") or {}).get("conditions") or [])
        for type_ in (condition, *also):
            conditions = set_condition(conditions, type_, False, reason, message)
        log.warning("instance failed", extra={"key": self._key(obj), "reason": reason, "detail": message})
        await self._status(rt, obj, phase=PHASE_FAILED, reason=reason, message=message, conditions=conditions)
        raise _Stop()

    # --- templates

    def _resolve(self, obj: Obj, template_rt: ResourceType, builtins: dict[str, Any]) -> tpl.Resolution:
        """What the instance renders from: its recorded template unless a sync is due (TemplateError
        on a problem with nothing recorded to fall back on). The decision is tpl.resolve_instance's."""
        spec = obj.get("spec") or {}
        name = str((spec.get("templateRef") or {}).get("name") or "")
        store = self.stores.get(template_rt.plural)
        template = store.get(name) if name and store else None
        return tpl.resolve_instance(
            spec,
            (obj.get("status") or {}).get(STATUS_SYNCED_TEMPLATE),
            None if template is None else (template.get("spec") or {}),
            builtins,
            template_rt.kind,
        )

    async def _record_template(
        self, rt: ResourceType, obj: Obj, resolved: tpl.Resolution, conditions: list[Obj], rendered_field: str
    ) -> tuple[Obj, list[Obj]]:
        """Write TemplateSynced and the synced template to status now; then reset syncOnce.

        The status goes first: were syncOnce reset before the new template is recorded, a reconcile that
        fails later (a deploy, say) would come back to the old record with nothing asking to sync again.
        Written here rather than with the phase, so the condition is on the object even when a later
        step fails the instance.
        """
        info = resolved.reason == tpl.TEMPLATE_CHANGES_AVAILABLE
        conditions = set_condition(
            conditions,
            COND_TEMPLATE_SYNCED,
            not resolved.reason,
            resolved.reason,
            resolved.message,
            severity="Info" if info else "",
        )
        changes: dict[str, Any] = {"conditions": conditions}
        if resolved.synced is not None:
            changes[STATUS_SYNCED_TEMPLATE] = resolved.synced.to_status()
        elif STATUS_SYNCED_TEMPLATE in (obj.get("status") or {}):
            changes[STATUS_SYNCED_TEMPLATE] = None  # inline template now: nothing recorded to follow
        if resolved.newly_synced:
            changes[rendered_field] = resolved.rendered
            log.info(
                "instance synced with its template",
                extra={"key": self._key(obj), "template": resolved.synced and resolved.synced.describe()},
            )
        obj = await self._status(rt, obj, **changes)
        ref = (obj.get("spec") or {}).get("templateRef") or {}
        if resolved.newly_synced and ref.get("syncOnce"):
            meta = obj["metadata"]
            await self.client.patch(
                rt, meta["name"], {"spec": {"templateRef": {"syncOnce": False}}}, meta.get("namespace")
            )
        return obj, conditions

    # --- VirtualClusterInstance

    async def reconcile_vci(self, key: str) -> float | None:
        namespace, _, name = key.partition("/")
        try:
            obj = await self.client.get(VIRTUAL_CLUSTER_INSTANCES, name, namespace)
        except ApiError as err:
            if err.not_found:
                return None
            raise
        try:
            return await self._reconcile_vci(obj)
        except _Stop:
            return 30.0  # failed: look again later (a missing template may appear, for one)

    def _driver_for(self, obj: Obj) -> Driver:
        wanted = ((obj["metadata"].get("annotations") or {}).get(ANNOTATION_DRIVER)) or self.default_driver
        return self.drivers.get(wanted) or self.drivers[self.default_driver]

    async def _reconcile_vci(self, obj: Obj) -> float | None:
        rt = VIRTUAL_CLUSTER_INSTANCES
        meta = obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        annotations = dict(meta.get("annotations") or {})
        project = project_of(namespace)
        status = dict(obj.get("status") or {})
        conditions = list(status.get("conditions") or [])
        driver = self._driver_for(obj)
        imported = (
            annotations.get(ANNOTATION_IMPORTED) == "true"
            or annotations.get(ANNOTATION_SKIP_HELM_DEPLOY) == "true"
        )

        # deletion
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                await self._cleanup_vci(obj, driver, imported)
            return None

        # finalizer, clusterRef default (then immutable)
        if FINALIZER not in (meta.get("finalizers") or []):
            obj = await self.client.patch(
                rt,
                name,
                [
                    {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                    {
                        "op": "add",
                        "path": "/metadata/finalizers",
                        "value": [*(meta.get("finalizers") or []), FINALIZER],
                    },
                ],
                namespace,
                patch_type="json",
            )
            meta = obj["metadata"]
        spec = obj.get("spec") or {}
        ref = dict(spec.get("clusterRef") or {})
        recorded = annotations.get(ANNOTATION_CLUSTER_REF)
        if recorded is None:
            ref["cluster"] = ref.get("cluster") or "local"
            ref["namespace"] = ref.get("namespace") or default_host_namespace(project, name)
            ref["virtualCluster"] = ref.get("virtualCluster") or name
            obj = await self.client.patch(
                rt,
                name,
                {
                    "metadata": {"annotations": {ANNOTATION_CLUSTER_REF: json.dumps(ref, sort_keys=True)}},
                    "spec": {"clusterRef": ref},
                },
                namespace,
            )
            meta = obj["metadata"]
        else:
            fixed = json.loads(recorded)
            current = {k: ref.get(k) or "" for k in fixed}
            if current != fixed:
                await self._fail(
                    rt,
                    obj,
                    COND_TEMPLATE_RESOLVED,
                    "ClusterRefImmutable",
                    f"spec.clusterRef is immutable after creation: it was {fixed}, now {current}",
                )
            ref = fixed
        host_ns, vc_name = ref["namespace"], ref["virtualCluster"]

        # template
        builtins = {
            "project": project,
            "name": name,
            "virtualClusterName": vc_name,
            "virtualClusterNamespace": host_ns,
            "cluster": ref.get("cluster", ""),
        }
        if not imported or spec.get("template") or spec.get("templateRef"):
            try:
                resolved = self._resolve(obj, VIRTUAL_CLUSTER_TEMPLATES, builtins)
                values_layer = tpl.parse_values((resolved.rendered.get("helmRelease") or {}).get("values"))
            except tpl.TemplateError as err:
                await self._fail(
                    rt, obj, COND_TEMPLATE_RESOLVED, err.reason, err.message, also=(COND_TEMPLATE_SYNCED,)
                )
                raise  # unreachable
        else:
            resolved, values_layer = tpl.Resolution({}, None), {}
        rendered = resolved.rendered
        conditions = set_condition(conditions, COND_TEMPLATE_RESOLVED, True)
        obj, conditions = await self._record_template(rt, obj, resolved, conditions, "virtualCluster")

        values = tpl.merge_values(self.chart_values, {"serviceCIDR": self.service_cidr}, values_layer)
        try:
            extra_args = tpl.syncer_extra_args(values)
            tpl.validate_syncer_args(extra_args)
        except tpl.TemplateError as err:
            await self._fail(rt, obj, COND_TEMPLATE_RESOLVED, err.reason, err.message)
        status_changes: dict[str, Any] = {"virtualCluster": rendered}

        # host namespace ("space")
        space = rendered.get("spaceTemplate") or {}
        try:
            await self._ensure_namespace(
                host_ns,
                labels={
                    LABEL_INSTANCE_NAME: name,
                    LABEL_INSTANCE_NAMESPACE: namespace,
                    LABEL_INSTANCE_PROJECT: project,
                    **((space.get("metadata") or {}).get("labels") or {}),
                },
                annotations=(space.get("metadata") or {}).get("annotations") or {},
                create=not imported,
            )
            if space.get("objects"):
                await apply_objects(self.client, str(space["objects"]), host_ns)
        except (ApiError, ValueError) as err:
            await self._fail(rt, obj, COND_SPACE_READY, "SpaceError", str(err))
        conditions = set_condition(conditions, COND_SPACE_READY, True)
        deployment = Deployment(vc_name, host_ns, values, tuple(extra_args))

        # sleep / wake
        sleeping = annotations.get(ANNOTATION_SLEEP_FORCE) == "true"
        if sleeping:
            if status.get("phase") != PHASE_SLEEPING:
                await driver.sleep(vc_name, host_ns)
                await self.client.patch(
                    rt,
                    name,
                    {
                        "metadata": {
                            "annotations": {
                                ANNOTATION_SLEEPING_SINCE: str(int(asyncio.get_running_loop().time())),
                                ANNOTATION_SLEEP_TYPE: "forcedSleep",
                            }
                        }
                    },
                    namespace,
                )
            conditions = set_condition(conditions, COND_READY, False, "", "sleeping")
            await self._status(
                rt,
                obj,
                phase=PHASE_SLEEPING,
                reason="Sleeping",
                message="sleep mode: scaled to zero",
                conditions=conditions,
                **status_changes,
            )
            return None
        woke = False
        if status.get("phase") == PHASE_SLEEPING:
            await self._status(
                rt, obj, phase=PHASE_PENDING, reason="WakingUp", message="waking up", conditions=conditions
            )
            if annotations.get(ANNOTATION_SLEEPING_SINCE) or annotations.get(ANNOTATION_SLEEP_TYPE):
                await self.client.patch(
                    rt,
                    name,
                    {
                        "metadata": {
                            "annotations": {ANNOTATION_SLEEPING_SINCE: None, ANNOTATION_SLEEP_TYPE: None}
                        }
                    },
                    namespace,
                )
            if not imported:
                await driver.wake(deployment)
                woke = True

        # deploy when the values changed (or nothing is running)
        deploy_hash = tpl.values_hash({"values": values, "driver": driver.name})
        if not imported:
            if woke:
                pass
            elif status.get("deployHash") != deploy_hash or not await driver.installed(vc_name, host_ns):
                await self._status(
                    rt,
                    obj,
                    phase=PHASE_PENDING,
                    reason="Deploying",
                    message=f"deploying with the {driver.name} driver",
                    conditions=set_condition(conditions, COND_DEPLOYED, False, "", "deploying"),
                    **status_changes,
                )
                try:
                    await driver.deploy(deployment)
                except Exception as err:  # any driver failure belongs on the object
                    await self._fail(rt, obj, COND_DEPLOYED, "DeployFailed", str(err)[-2000:])
            conditions = set_condition(conditions, COND_DEPLOYED, True)
            status_changes["deployHash"] = deploy_hash
        else:
            conditions = set_condition(conditions, COND_DEPLOYED, True, "", "imported")

        # ready
        if imported:
            ok = await read_kubeconfig(self.client, vc_name, host_ns) is not None
            why = "" if ok else f"waiting for Secret vc-{vc_name} in {host_ns}"
        else:
            ok, why = await driver.ready(vc_name, host_ns)
        if not ok:
            conditions = set_condition(conditions, COND_READY, False, "", why)
            await self._status(
                rt,
                obj,
                phase=PHASE_PENDING,
                reason="WaitingForVirtualCluster",
                message=why,
                conditions=conditions,
                **status_changes,
            )
            return POLL_SECONDS
        conditions = set_condition(conditions, COND_READY, True)

        # objects inside the virtual cluster
        objects = str(rendered.get("objects") or "")
        applied = ((status.get("virtualClusterObjects") or {}).get("lastAppliedObjects")) or ""
        if objects and objects != applied:
            kubeconfig = await read_kubeconfig(self.client, vc_name, host_ns)
            unreachable = "" if kubeconfig else f"no kubeconfig yet (Secret vc-{vc_name} in {host_ns})"
            if kubeconfig:
                try:
                    async with KubeClient.from_kubeconfig_dict(
                        yaml.safe_load(kubeconfig), name="virtual"
                    ) as vclient:
                        await apply_objects(vclient, objects, "default")
                except ApiError as err:
                    await self._fail(rt, obj, COND_OBJECTS, "ErrorApplyingObjects", str(err))
                except (KubeError, ValueError, OSError) as err:
                    if driver.virtual_api:
                        await self._fail(rt, obj, COND_OBJECTS, "ErrorApplyingObjects", str(err))
                    unreachable = f"virtual API server not reachable: {err}"
            if unreachable and driver.virtual_api:
                await self._status(
                    rt,
                    obj,
                    phase=PHASE_PENDING,
                    reason="WaitingForKubeconfig",
                    message=unreachable,
                    conditions=conditions,
                    **status_changes,
                )
                return POLL_SECONDS
            if unreachable:
                # The driver's readiness stands on its own (helm: the pod is Ready); the objects
                # wait for a virtual API this controller can reach, without holding the phase back.
                conditions = set_condition(
                    conditions, COND_OBJECTS, False, "WaitingForVirtualAPI", unreachable
                )
                await self._status(
                    rt, obj, phase=PHASE_READY, reason="", message="", conditions=conditions, **status_changes
                )
                return 30.0
            status_changes["virtualClusterObjects"] = {"lastAppliedObjects": objects}
        if objects:
            conditions = set_condition(conditions, COND_OBJECTS, True)
        await self._status(
            rt, obj, phase=PHASE_READY, reason="", message="", conditions=conditions, **status_changes
        )
        return None

    async def _ensure_namespace(
        self,
        name: str,
        *,
        labels: dict[str, str],
        annotations: dict[str, str],
        create: bool,
        owner: Obj | None = None,
    ) -> None:
        try:
            await self.client.get(NAMESPACES, name)
        except ApiError as err:
            if not err.not_found:
                raise
            if not create:
                raise
            meta: Obj = {
                "name": name,
                "labels": labels,
                "annotations": {**annotations, ANNOTATION_CREATED_BY: "true"},
            }
            if owner is not None:
                meta["ownerReferences"] = [owner]
            try:
                await self.client.create(
                    NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
                )
            except ApiError as err2:
                if not err2.already_exists:
                    raise
            return
        await self.client.patch(NAMESPACES, name, {"metadata": {"labels": labels}})

    async def _delete_namespace(self, name: str, preserve: bool) -> None:
        if preserve:
            return
        try:
            ns = await self.client.get(NAMESPACES, name)
        except ApiError as err:
            if err.not_found:
                return
            raise
        if (ns["metadata"].get("annotations") or {}).get(ANNOTATION_CREATED_BY) == "true":
            await self.client.delete(NAMESPACES, name, missing_ok=True)

    async def _drop_finalizer(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        try:
            await self.client.patch(
                rt,
                meta["name"],
                [
                    {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                    {"op": "replace", "path": "/metadata/finalizers", "value": finalizers},
                ],
                meta.get("namespace"),
                patch_type="json",
            )
        except ApiError as err:
            if not err.not_found:
                raise

    async def _cleanup_vci(self, obj: Obj, driver: Driver, imported: bool) -> None:
        meta = obj["metadata"]
        ref = (obj.get("spec") or {}).get("clusterRef") or {}
        host_ns = ref.get("namespace") or default_host_namespace(project_of(meta["namespace"]), meta["name"])
        vc_name = ref.get("virtualCluster") or meta["name"]
        preserve = (meta.get("annotations") or {}).get(ANNOTATION_PRESERVE_NAMESPACE) == "true"
        if not imported:
            try:
                await driver.uninstall(vc_name, host_ns)
            except Exception as err:
                await self._status(
                    VIRTUAL_CLUSTER_INSTANCES,
                    obj,
                    phase=PHASE_FAILED,
                    reason="UninstallFailed",
                    message=str(err)[-2000:],
                )
                raise
            await self._delete_namespace(host_ns, preserve)
        log.info("instance deleted", extra={"key": self._key(obj)})
        await self._drop_finalizer(VIRTUAL_CLUSTER_INSTANCES, obj)

    # --- SpaceInstance

    async def reconcile_space(self, key: str) -> float | None:
        namespace, _, name = key.partition("/")
        try:
            obj = await self.client.get(SPACE_INSTANCES, name, namespace)
        except ApiError as err:
            if err.not_found:
                return None
            raise
        try:
            return await self._reconcile_space(obj)
        except _Stop:
            return 30.0

    async def _reconcile_space(self, obj: Obj) -> float | None:
        rt = SPACE_INSTANCES
        meta = obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        project = project_of(namespace)
        conditions = list((obj.get("status") or {}).get("conditions") or [])
        ref = dict((obj.get("spec") or {}).get("clusterRef") or {})
        space_ns = ref.get("namespace") or f"loft-{project}-s-{name}"
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                preserve = (meta.get("annotations") or {}).get(ANNOTATION_PRESERVE_NAMESPACE) == "true"
                await self._delete_namespace(space_ns, preserve)
                await self._drop_finalizer(rt, obj)
            return None
        if FINALIZER not in (meta.get("finalizers") or []) or not ref.get("namespace"):
            obj = await self.client.patch(
                rt,
                name,
                {
                    "metadata": {"finalizers": sorted({*(meta.get("finalizers") or []), FINALIZER})},
                    "spec": {"clusterRef": {"cluster": ref.get("cluster") or "local", "namespace": space_ns}},
                },
                namespace,
            )
        builtins = {"project": project, "name": name, "space": space_ns, "cluster": ref.get("cluster", "")}
        try:
            resolved = self._resolve(obj, SPACE_TEMPLATES, builtins)
        except tpl.TemplateError as err:
            await self._fail(
                rt, obj, COND_TEMPLATE_RESOLVED, err.reason, err.message, also=(COND_TEMPLATE_SYNCED,)
            )
            raise  # unreachable
        rendered = resolved.rendered
        conditions = set_condition(conditions, COND_TEMPLATE_RESOLVED, True)
        obj, conditions = await self._record_template(rt, obj, resolved, conditions, "space")
        md = rendered.get("metadata") or {}
        try:
            await self._ensure_namespace(
                space_ns,
                labels={
                    LABEL_SPACE_INSTANCE_NAME: name,
                    LABEL_SPACE_INSTANCE_NAMESPACE: namespace,
                    LABEL_PROJECT: project,
                    **(md.get("labels") or {}),
                },
                annotations=md.get("annotations") or {},
                create=True,
            )
            if rendered.get("objects"):
                await apply_objects(self.client, str(rendered["objects"]), space_ns)
        except (ApiError, ValueError) as err:
            await self._fail(rt, obj, COND_SPACE_READY, "SpaceError", str(err))
        conditions = set_condition(conditions, COND_SPACE_READY, True)
        await self._status(
            rt,
            obj,
            phase=PHASE_READY,
            reason="",
            message="",
            conditions=conditions,
            space=rendered,
            spaceObjects={"lastAppliedObjects": str(rendered.get("objects") or "")},
        )
        return None

    # --- Project

    async def reconcile_project(self, key: str) -> float | None:
        name = key.partition("/")[2]
        try:
            project = await self.client.get(PROJECTS, name)
        except ApiError as err:
            if err.not_found:
                return None
            raise
        if project["metadata"].get("deletionTimestamp"):
            return None
        owner = {
            "apiVersion": PROJECTS.api_version,
            "kind": PROJECTS.kind,
            "name": name,
            "uid": project["metadata"]["uid"],
        }
        await self._ensure_namespace(
            project_namespace(name), labels={LABEL_PROJECT: name}, annotations={}, create=True, owner=owner
        )
        if (project.get("status") or {}).get("phase") != PHASE_READY:
            await self._status(PROJECTS, project, phase=PHASE_READY)
        return None
