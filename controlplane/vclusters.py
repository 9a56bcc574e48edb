"""The Loft-style CLI: create/list/use/delete/import vcluster, sleep/wakeup.

Every command talks to the management cluster (the host) through a kubeconfig: `--kubeconfig`, else
$KUBECONFIG, else ~/.kube/config. `use` adds a context `vcluster-py_<name>_<project>` to that same file
and switches to it; the context remembers the context it replaced, which later commands keep using to
reach the management cluster, and `delete` removes it again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from syncer.kube.client import ApiError, KubeClient

from . import templates as tpl
from .objects import imported_instance, read_kubeconfig
from .resources import (
    ANNOTATION_SLEEP_FORCE,
    API_VERSION,
    PHASE_FAILED,
    PHASE_READY,
    PHASE_SLEEPING,
    VIRTUAL_CLUSTER_INSTANCES,
    VIRTUAL_CLUSTER_TEMPLATES,
    project_namespace,
)

CONTEXT_PREFIX = "vcluster-py_"
EXTENSION = "vcluster-py"


class CliError(RuntimeError):
    user_facing = True


def kubeconfig_path(args: argparse.Namespace) -> Path:
    if args.kubeconfig:
        return Path(args.kubeconfig)
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def load_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [], "users": []}
    loaded = yaml.safe_load(path.read_text()) or {}
    return loaded if isinstance(loaded, dict) else {}


def save_config(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def context_name(name: str, project: str) -> str:
    return f"{CONTEXT_PREFIX}{name}_{project}"


def management_context(config: dict[str, Any], explicit: str | None) -> str | None:
    """The context that reaches the management cluster (never one of ours)."""
    if explicit:
        return explicit
    current = config.get("current-context")
    seen: set[str] = set()
    while current and current.startswith(CONTEXT_PREFIX) and current not in seen:
        seen.add(current)
        entry = next((c for c in config.get("contexts") or [] if c.get("name") == current), None)
        ext = {
            e.get("name"): e.get("extension")
            for e in ((entry or {}).get("context") or {}).get("extensions") or []
        }
        current = (ext.get(EXTENSION) or {}).get("previous-context")
    return current


def client_for(args: argparse.Namespace) -> KubeClient:
    path = kubeconfig_path(args)
    config = load_config(path)
    context = management_context(config, args.context)
    return KubeClient.from_kubeconfig_dict(config, context=context, name="management", base_dir=path.parent)


def _common(p: argparse.ArgumentParser, *, project: bool = True) -> None:
    p.add_argument("--kubeconfig", default=None, help="kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", default=None, help="context of the management (host) cluster")
    if project:
        p.add_argument("--project", "-p", default="default")


def register(commands: Any) -> None:
    for verb, helptext, handler in (
        ("create", "create a virtual cluster instance", _create),
        ("list", "list virtual cluster instances", _list),
        ("use", "add a kube-context for a virtual cluster and switch to it", _use),
        ("delete", "delete a virtual cluster instance and its kube-context", _delete),
        ("import", "adopt an existing virtual cluster into a project", _import),
        ("sleep", "put a virtual cluster to sleep (scale to zero)", _sleep),
        ("wakeup", "wake a sleeping virtual cluster", _wakeup),
    ):
        p = commands.add_parser(verb, help=helptext)
        kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
        k = kinds.add_parser("vcluster", aliases=["vclusters"], help="virtual cluster instances")
        _common(k)
        if verb != "list":
            k.add_argument("name")
        if verb == "create":
            k.add_argument("--template", default=None, help="VirtualClusterTemplate name")
            k.add_argument("--template-version", default="")
            k.add_argument("--set", action="append", default=[], help="parameter variable=value")
            k.add_argument("--values", default=None, help="helm values file for an instance without template")
        if verb in ("create", "sleep", "wakeup", "import", "delete"):
            k.add_argument("--wait", action="store_true", help="wait for the outcome, showing progress")
            k.add_argument("--timeout", type=float, default=300.0)
        if verb in ("create", "import"):
            k.add_argument("--no-use", action="store_true", help="do not add a kube-context")
        if verb == "import":
            k.add_argument("--namespace", "-n", required=True, help="host namespace of the virtual cluster")
            k.add_argument("--importname", default=None, help="instance name in the project")
            k.add_argument("--cluster", default="local")
        k.set_defaults(run=lambda a, h=handler: asyncio.run(h(a)))


async def _wait(
    client: KubeClient, args: argparse.Namespace, name: str, want: tuple[str, ...]
) -> dict[str, Any]:
    ns = project_namespace(args.project)
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        obj = await client.get(VIRTUAL_CLUSTER_INSTANCES, name, ns)
        st = obj.get("status") or {}
        line = f"{st.get('phase') or 'Pending'}: {st.get('reason') or ''} {st.get('message') or ''}".strip()
        if line != last:
            print(f"[{name}] {line}", file=sys.stderr, flush=True)
            last = line
        if st.get("phase") in want:
            return obj
        if st.get("phase") == PHASE_FAILED:
            raise CliError(f"virtual cluster {name} failed: {st.get('reason')}: {st.get('message')}")
        if time.monotonic() > deadline:
            raise CliError(f"timed out waiting for {name}: {line}")
        await asyncio.sleep(1.0)


async def _create(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        spec: dict[str, Any] = {"displayName": args.name}
        if args.template:
            template = await client.get(VIRTUAL_CLUSTER_TEMPLATES, args.template)
            _, definitions, _ = tpl.select_template(template.get("spec") or {}, args.template_version)
            given = tpl.parse_set_flags(args.set, definitions)
            try:
                tpl.validate_parameters(definitions, given)
            except tpl.TemplateError as err:
                raise CliError(err.message) from None
            spec["templateRef"] = {"name": args.template, "version": args.template_version}
            if given:
                spec["parameters"] = yaml.safe_dump(given)
        else:
            if args.set:
                raise CliError("--set needs --template (parameters belong to a template)")
            values = await asyncio.to_thread(Path(args.values).read_text) if args.values else ""
            spec["template"] = {"helmRelease": {"values": values}}
        obj = {
            "apiVersion": API_VERSION,
            "kind": "VirtualClusterInstance",
            "metadata": {"name": args.name, "namespace": project_namespace(args.project)},
            "spec": spec,
        }
        await client.create(VIRTUAL_CLUSTER_INSTANCES, obj)
        print(f"virtual cluster {args.name} created in project {args.project}")
        if args.wait:
            await _wait(client, args, args.name, (PHASE_READY,))
            print(f"virtual cluster {args.name} is Ready")
            if not args.no_use:
                await _add_context(client, args, args.name)
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        items = (await client.list(VIRTUAL_CLUSTER_INSTANCES))["items"]
    print(f"{'NAME':<24} {'PROJECT':<16} {'PHASE':<10} {'HOST NAMESPACE':<32} REASON")
    for obj in items:
        st, meta = obj.get("status") or {}, obj["metadata"]
        project = meta["namespace"].removeprefix("loft-p-")
        ns = ((obj.get("spec") or {}).get("clusterRef") or {}).get("namespace", "")
        print(f"{meta['name']:<24} {project:<16} {st.get('phase', ''):<10} {ns:<32} {st.get('reason', '')}")
    return 0


async def _add_context(client: KubeClient, args: argparse.Namespace, name: str) -> str:
    obj = await client.get(VIRTUAL_CLUSTER_INSTANCES, name, project_namespace(args.project))
    ref = (obj.get("spec") or {}).get("clusterRef") or {}
    text = await read_kubeconfig(client, ref.get("virtualCluster") or name, ref.get("namespace") or "")
    if text is None:
        raise CliError(
            f"virtual cluster {name} has no kubeconfig yet (phase {(obj.get('status') or {}).get('phase')})"
        )
    virtual = yaml.safe_load(text)
    path = kubeconfig_path(args)
    config = load_config(path)
    ctx = context_name(name, args.project)
    previous = management_context(config, args.context)
    vctx = virtual["contexts"][0]["context"]
    vcluster = next(c for c in virtual["clusters"] if c["name"] == vctx["cluster"])["cluster"]
    vuser = next(u for u in virtual["users"] if u["name"] == vctx["user"])["user"]
    for section, entry in (
        ("clusters", {"name": ctx, "cluster": vcluster}),
        ("users", {"name": ctx, "user": vuser}),
        (
            "contexts",
            {
                "name": ctx,
                "context": {
                    "cluster": ctx,
                    "user": ctx,
                    "extensions": [{"name": EXTENSION, "extension": {"previous-context": previous}}],
                },
            },
        ),
    ):
        config[section] = [e for e in config.get(section) or [] if e.get("name") != ctx] + [entry]
    config["current-context"] = ctx
    save_config(path, config)
    print(f"switched to context {ctx} in {path}")
    return ctx


def _remove_context(args: argparse.Namespace, name: str) -> None:
    path = kubeconfig_path(args)
    if not path.exists():
        return
    config = load_config(path)
    ctx = context_name(name, args.project)
    previous = management_context(config, None) if config.get("current-context") == ctx else None
    for section in ("clusters", "users", "contexts"):
        config[section] = [e for e in config.get(section) or [] if e.get("name") != ctx]
    if config.get("current-context") == ctx:
        config["current-context"] = previous or ""
    save_config(path, config)


async def _use(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        await _add_context(client, args, args.name)
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        ns = project_namespace(args.project)
        try:
            await client.delete(VIRTUAL_CLUSTER_INSTANCES, args.name, ns)
        except ApiError as err:
            if not err.not_found:
                raise
        _remove_context(args, args.name)
        print(f"virtual cluster {args.name} deleted")
        if args.wait:
            deadline = time.monotonic() + args.timeout
            while True:
                try:
                    await client.get(VIRTUAL_CLUSTER_INSTANCES, args.name, ns)
                except ApiError as err:
                    if err.not_found:
                        break
                    raise
                if time.monotonic() > deadline:
                    raise CliError(f"timed out waiting for {args.name} to go away")
                await asyncio.sleep(1.0)
    return 0


async def _import(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        obj = imported_instance(
            args.project,
            {
                "name": args.name,
                "namespace": args.namespace,
                "cluster": args.cluster,
                "importName": args.importname,
            },
        )
        await client.create(VIRTUAL_CLUSTER_INSTANCES, obj)
        name = obj["metadata"]["name"]
        print(f"virtual cluster {args.name} imported into project {args.project} as {name}")
        if args.wait:
            await _wait(client, args, name, (PHASE_READY,))
            print(f"virtual cluster {name} is Ready")
            if not args.no_use:  # as `create` does: an imported cluster is one to use
                await _add_context(client, args, name)
    return 0


async def _sleep(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        patch = {"metadata": {"annotations": {ANNOTATION_SLEEP_FORCE: "true"}}}
        await client.patch(VIRTUAL_CLUSTER_INSTANCES, args.name, patch, project_namespace(args.project))
        if args.wait:
            await _wait(client, args, args.name, (PHASE_SLEEPING,))
    return 0


async def _wakeup(args: argparse.Namespace) -> int:
    async with client_for(args) as client:
        patch = {"metadata": {"annotations": {ANNOTATION_SLEEP_FORCE: None}}}
        await client.patch(VIRTUAL_CLUSTER_INSTANCES, args.name, patch, project_namespace(args.project))
        if args.wait:
            await _wait(client, args, args.name, (PHASE_READY,))
    return 0
