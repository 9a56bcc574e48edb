"""Virtual pod → host pod, host status → virtual status. Pure functions over plain dicts.

The host pod must behave, from inside its containers, like the virtual pod would on a real node of
the virtual cluster: same API server (the syncer's host Service, via env, hostAliases and DNS), same
cluster DNS (the virtual CoreDNS, through its synced service), same names in the downward API, the
virtual service account's tokens, and the tenant's configmaps/secrets/PVCs under their host names.
And it must not escape the tenant: no host service-account token, service links computed from the
virtual services only, affinity and spread selectors scoped to the tenant's own pods.

Differences from vcluster v0.4/v0.5, on purpose:

* Virtual SA tokens live in a host Secret (``ctx.token_secret_name``) projected in place of each
  ``serviceAccountToken`` source, never in a pod annotation readable by anyone who can get pods.
* ``priority`` and ``preemptionPolicy`` are always dropped: the host Priority admission plugin computes
  them from the class and rejects a pod whose values disagree. ``overhead`` likewise (RuntimeClass
  admission). ``ephemeralContainers`` cannot be set on create; see :func:`host_ephemeral_containers`.
* ``matchLabelKeys``/``mismatchLabelKeys`` are folded into the selectors (recent API servers merge them
  at creation and reject a second merge of the same key), so the host pod is version-independent.
* ``subdomain`` is dropped rather than rewriting ``/etc/hosts`` with an init container: on the host it
  would name a host service that does not exist and give the pod a host FQDN. DNS names of the pod
  still resolve through the virtual CoreDNS; only ``hostname -f`` loses the domain part.
* Generated env vars never duplicate (v0.4.5 appended them twice).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from syncer.translate.metadata import (
    host_metadata,
    metadata_patch,
    selector_matches,
    translate_label_selector,
)
from syncer.translate.names import (
    ANN_POD_LABELS,
    ANN_POD_NAME,
    ANN_POD_NAMESPACE,
    ANN_POD_SCHEDULING_GATES,
    ANN_POD_SERVICE_ACCOUNT,
    ANN_POD_UID,
    MARKER_LABEL,
    host_cluster_name,
    host_name,
    redact_host_names,
)

Pod = Mapping[str, Any]
Json = dict[str, Any]

SERVICE_ACCOUNT_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_VOLUME_PREFIX = "kube-api-access-"
KUBE_ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600
# What the ServiceAccount admission plugin asks for (3600 + 7 s marks a token the API server may extend).
ADMISSION_TOKEN_EXPIRATION_SECONDS = 3607
# API validation limits for dnsPolicy None (apis/core/validation: MaxDNSNameservers, MaxDNSSearchPaths,
# MaxDNSSearchListChars); kubelet truncates for ClusterFirst, the API server rejects for None.
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
MAX_HOSTNAME_LENGTH = 63

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_WORKLOAD_CONTROLLERS = {
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
}
# Volume types whose secret reference lives in the pod's namespace: (volume field, reference field).
_VOLUME_SECRET_REFS = (
    ("iscsi", "secretRef"),
    ("rbd", "secretRef"),
    ("flexVolume", "secretRef"),
    ("cinder", "secretRef"),
    ("cephfs", "secretRef"),
    ("scaleIO", "secretRef"),
    ("storageos", "secretRef"),
    ("csi", "nodePublishSecretRef"),
)
# Downward-API fields whose host value would be the host pod's: read the virtual value from annotations.
_FIELD_PATH_REWRITES = {
    "metadata.name": ANN_POD_NAME,
    "metadata.namespace": ANN_POD_NAMESPACE,
    "metadata.uid": ANN_POD_UID,
    "metadata.labels": ANN_POD_LABELS,
    "spec.serviceAccountName": ANN_POD_SERVICE_ACCOUNT,
}


class TranslationError(Exception):
    """The pod cannot be translated yet; the caller emits a Warning event and retries."""


class DnsNotReady(TranslationError):
    """The pod needs cluster DNS but the virtual kube-dns service has no host ClusterIP yet."""


class TokenSecretNotReady(TranslationError):
    """The pod projects service-account tokens but no host token Secret was named."""


@dataclass(frozen=True, kw_only=True)
class PodContext:
    """Everything about the environment a pod translation needs (no globals, no I/O).

    ``kube_service_ip``: ClusterIP of the syncer's host Service (what virtual ``default/kubernetes``
    points at). ``kube_service_port``: the port the virtual ``kubernetes`` service exposes.
    ``dns_ip``: host ClusterIP of the synced virtual ``kube-system/kube-dns`` service, ``None`` while
    it does not exist. ``service_env``: the virtual Services of the pod's namespace (for service-link
    env vars). ``token_secret_name``: the host Secret holding this pod's virtual SA tokens under the
    keys of :func:`token_requests`. ``host_service_account``: host SA for the pod (``None`` = the host
    namespace default; its token is never mounted either way). ``namespace_labels``: labels of the
    virtual namespaces, to resolve ``namespaceSelector`` in affinity terms (missing = not selected).
    """

    vcluster: str
    host_namespace: str
    kube_service_ip: str
    kube_service_port: int = 443
    cluster_domain: str = "cluster.local"
    dns_ip: str | None = None
    service_env: Sequence[Mapping[str, Any]] = ()
    token_secret_name: str | None = None
    host_service_account: str | None = None
    sync_priority_classes: bool = False
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class TokenRequestSpec(NamedTuple):
    """One token to mint by TokenRequest in the virtual cluster, bound to the virtual pod.

    ``key``: the data key in the host token Secret. ``audience``: ``None`` = the API server's default
    audiences. The SA is the virtual pod's ``spec.serviceAccountName``.
    """

    key: str
    audience: str | None
    expiration_seconds: int


# --- walking a pod spec ----------------------------------------------------------------------------


def _containers(spec: Mapping[str, Any], lists: Sequence[str] = CONTAINER_LISTS) -> Iterator[Json]:
    for list_name in lists:
        yield from spec.get(list_name) or []


def _projected_sources(spec: Mapping[str, Any]) -> Iterator[Json]:
    for volume in spec.get("volumes") or []:
        yield from (volume.get("projected") or {}).get("sources") or []


class _Renamers(NamedTuple):
    configmap: Callable[[str], str]
    secret: Callable[[str], str]
    pvc: Callable[[str], str]


def _rename_field(holder: Json | None, key: str, rename: Callable[[str], str]) -> None:
    if holder and holder.get(key):
        holder[key] = rename(holder[key])


def _visit_container_references(container: Json, renamers: _Renamers) -> None:
    for env in container.get("env") or []:
        value_from = env.get("valueFrom") or {}
        _rename_field(value_from.get("configMapKeyRef"), "name", renamers.configmap)
        _rename_field(value_from.get("secretKeyRef"), "name", renamers.secret)
    for env_from in container.get("envFrom") or []:
        _rename_field(env_from.get("configMapRef"), "name", renamers.configmap)
        _rename_field(env_from.get("secretRef"), "name", renamers.secret)


def _visit_volume_references(volume: Json, renamers: _Renamers) -> None:
    _rename_field(volume.get("configMap"), "name", renamers.configmap)
    _rename_field(volume.get("secret"), "secretName", renamers.secret)
    _rename_field(volume.get("persistentVolumeClaim"), "claimName", renamers.pvc)
    _rename_field(volume.get("azureFile"), "secretName", renamers.secret)
    for volume_type, reference in _VOLUME_SECRET_REFS:
        _rename_field((volume.get(volume_type) or {}).get(reference), "name", renamers.secret)
    for source in (volume.get("projected") or {}).get("sources") or []:
        _rename_field(source.get("configMap"), "name", renamers.configmap)
        _rename_field(source.get("secret"), "name", renamers.secret)


def _visit_references(spec: Json, renamers: _Renamers) -> None:
    """Apply the renamers to every configmap/secret/PVC name a pod spec references, in place.

    The single walk behind both the rewrite and ``referenced_*``, so what is renamed is exactly what
    is reported as needing a host copy.
    """
    for volume in spec.get("volumes") or []:
        _visit_volume_references(volume, renamers)
    for container in _containers(spec):
        _visit_container_references(container, renamers)
    for pull_secret in spec.get("imagePullSecrets") or []:
        _rename_field(pull_secret, "name", renamers.secret)


def _ephemeral_volumes_to_claims(pod_name: str, spec: Json) -> None:
    """Generic ephemeral volumes → references to the PVC the *virtual* controller creates.

    The virtual ephemeral-volume controller creates ``<pod>-<volume>`` in the virtual namespace and the
    PVC syncer copies it; letting the host controller create a second claim would provision twice and
    hide the claim from the tenant.
    """
    for volume in spec.get("volumes") or []:
        if "ephemeral" in volume:
            del volume["ephemeral"]
            volume["persistentVolumeClaim"] = {"claimName": f"{pod_name}-{volume['name']}"}


def _collect(vpod: Pod, kind: str) -> set[str]:
    found: set[str] = set()

    def record(name: str) -> str:
        found.add(name)
        return name

    def keep(name: str) -> str:
        return name

    # No deep copy: these renamers write back the very string they read, so the only structural change
    # is the ephemeral-volume rewrite, done on shallow copies of the volumes. (This runs for several
    # indexes on every pod event; a deep copy here was a tenth of the syncer's CPU in the benchmark.)
    spec = dict(vpod.get("spec") or {})
    if any("ephemeral" in volume for volume in spec.get("volumes") or []):
        spec["volumes"] = [dict(volume) for volume in spec["volumes"]]
        _ephemeral_volumes_to_claims(vpod["metadata"]["name"], spec)
    _visit_references(
        spec, _Renamers(**{name: record if name == kind else keep for name in _Renamers._fields})
    )
    return found


def referenced_configmaps(vpod: Pod) -> set[str]:
    """Virtual names of the configmaps (in the pod's namespace) the pod needs on the host."""
    return _collect(vpod, "configmap")


def referenced_secrets(vpod: Pod) -> set[str]:
    """Virtual names of the secrets the pod needs on the host (volumes, env, imagePullSecrets...)."""
    return _collect(vpod, "secret")


def referenced_pvcs(vpod: Pod) -> set[str]:
    """Virtual names of the PVCs the pod mounts, including ``<pod>-<volume>`` of ephemeral volumes."""
    return _collect(vpod, "pvc")


# --- service-account tokens ------------------------------------------------------------------------


def token_key(audience: str | None, expiration_seconds: int) -> str:
    """Data key of a token in the host token Secret: ``token-`` + 16 hex of sha256(audience, expiry).

    Content-addressed rather than positional: stable across resyncs, identical requests (same audience
    and lifetime, e.g. two volumes of the same pod) share one token, and the key is always a valid
    Secret key whatever characters the audience (usually a URL) contains. An empty audience means the
    API server's default, like an absent one.
    """
    digest = hashlib.sha256(f"{audience or ''}\n{expiration_seconds}".encode()).hexdigest()[:16]
    return f"token-{digest}"


def _token_request(source: Mapping[str, Any]) -> TokenRequestSpec:
    audience = source.get("audience") or None
    expiration = int(source.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION_SECONDS)
    return TokenRequestSpec(token_key(audience, expiration), audience, expiration)


def token_requests(vpod: Pod) -> list[TokenRequestSpec]:
    """The tokens the caller must mint (TokenRequest, virtual SA, bound to the virtual pod) and store
    in the host token Secret before the host pod can start, one per distinct key, in pod order.

    The caller refreshes them before ``expiration_seconds`` run out (kubelet refreshes its own
    projected tokens at 80 % of their life); the kubelet picks up Secret changes by itself.
    """
    requests: dict[str, TokenRequestSpec] = {}
    for source in _projected_sources(vpod.get("spec") or {}):
        token_source = source.get("serviceAccountToken")
        if token_source is not None:
            request = _token_request(token_source)
            requests.setdefault(request.key, request)
    return list(requests.values())


def _replace_token_sources(spec: Json, token_secret_name: str | None) -> None:
    for volume in spec.get("volumes") or []:
        sources = (volume.get("projected") or {}).get("sources") or []
        for index, source in enumerate(sources):
            token_source = source.get("serviceAccountToken")
            if token_source is None:
                continue
            if not token_secret_name:
                raise TokenSecretNotReady(
                    f"volume {volume.get('name')!r} projects a service-account token, "
                    "but there is no host token secret yet"
                )
            key = _token_request(token_source).key
            sources[index] = {
                "secret": {"name": token_secret_name, "items": [{"key": key, "path": token_source["path"]}]}
            }


def _service_account_volume(name: str) -> Json:
    """The volume the ServiceAccount admission plugin adds (kube-api-access-*), in virtual terms."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {
                    "serviceAccountToken": {
                        "expirationSeconds": ADMISSION_TOKEN_EXPIRATION_SECONDS,
                        "path": "token",
                    }
                },
                {
                    "configMap": {
                        "name": KUBE_ROOT_CA_CONFIGMAP,
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def with_service_account_token_volume(vpod: Pod) -> Json:
    """A copy of the virtual pod as the ServiceAccount admission plugin would have left it.

    Not part of :func:`translate_pod` on purpose. A pod read from the virtual API server has already been
    through that plugin: it has its ``kube-api-access-xxxxx`` volume mounted in every container, and
    then this function changes nothing. A pod *without* one either opted out through its ServiceAccount
    (``automountServiceAccountToken: false`` on the SA, which a pod translation cannot see) or came from
    an API server running without the plugin. Only the caller knows which, so the caller applies this
    (before :func:`token_requests`, ``referenced_*`` and :func:`translate_pod`) when the SA allows
    automounting. Like the plugin: the pod's own ``automountServiceAccountToken: false`` wins, a
    container that already mounts the path is left alone, ephemeral containers are not touched.
    """
    pod = copy.deepcopy(dict(vpod))
    spec = pod.setdefault("spec", {})
    if spec.get("automountServiceAccountToken") is False:
        return pod
    volumes = spec.get("volumes") or []
    existing = next(
        (v["name"] for v in volumes if v.get("name", "").startswith(SERVICE_ACCOUNT_VOLUME_PREFIX)), None
    )
    volume_name = existing or f"{SERVICE_ACCOUNT_VOLUME_PREFIX}vcluster"
    needs_volume = False
    for container in _containers(spec, ("initContainers", "containers")):
        mounts = container.setdefault("volumeMounts", [])
        if any(mount.get("mountPath") == SERVICE_ACCOUNT_MOUNT_PATH for mount in mounts):
            continue
        mounts.append({"name": volume_name, "readOnly": True, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH})
        needs_volume = True
    if needs_volume and existing is None:
        spec["volumes"] = [*volumes, _service_account_volume(volume_name)]
    return pod


# --- downward API ------------------------------------------------------------------------------------


def _rewrite_field_ref(holder: Mapping[str, Any]) -> None:
    field_ref = holder.get("fieldRef")
    if field_ref and field_ref.get("fieldPath") in _FIELD_PATH_REWRITES:
        field_ref["fieldPath"] = f"metadata.annotations['{_FIELD_PATH_REWRITES[field_ref['fieldPath']]}']"


def _rewrite_field_refs(spec: Json) -> None:
    """Downward-API references to name/namespace/uid/labels/serviceAccountName → our annotations.

    ``metadata.labels['k']`` and ``metadata.annotations['k']`` need nothing: tenant labels and
    annotations are copied verbatim (reserved keys excepted, which the tenant cannot meaningfully read).
    """
    for container in _containers(spec):
        for env in container.get("env") or []:
            _rewrite_field_ref(env.get("valueFrom") or {})
    for volume in spec.get("volumes") or []:
        for item in (volume.get("downwardAPI") or {}).get("items") or []:
            _rewrite_field_ref(item)
    for source in _projected_sources(spec):
        for item in (source.get("downwardAPI") or {}).get("items") or []:
            _rewrite_field_ref(item)


# --- environment -------------------------------------------------------------------------------------


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_link_env(service: Mapping[str, Any]) -> list[Json]:
    """The env vars kubelet derives from one service (``FOO_SERVICE_HOST``, docker links...).

    Same names and values as kubelet's, so programs reading them cannot tell. Services without a
    ClusterIP (headless, ExternalName) give none, as in kubelet.
    """
    spec = service.get("spec") or {}
    ip, ports = spec.get("clusterIP") or "", spec.get("ports") or []
    if ip in ("", "None") or not ports:
        return []
    prefix = _env_name(service["metadata"]["name"])
    env = [(f"{prefix}_SERVICE_HOST", ip), (f"{prefix}_SERVICE_PORT", str(ports[0]["port"]))]
    env += [(f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}", str(p["port"])) for p in ports if p.get("name")]
    for index, port in enumerate(ports):
        protocol = port.get("protocol") or "TCP"
        url = f"{protocol.lower()}://{_host_port(ip, port['port'])}"
        if index == 0:
            env.append((f"{prefix}_PORT", url))
        port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
        env += [
            (port_prefix, url),
            (f"{port_prefix}_PROTO", protocol.lower()),
            (f"{port_prefix}_PORT", str(port["port"])),
            (f"{port_prefix}_ADDR", ip),
        ]
    return [{"name": name, "value": value} for name, value in env]


def _kubernetes_service(ctx: PodContext) -> Json:
    return {
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {
            "clusterIP": ctx.kube_service_ip,
            "ports": [{"name": "https", "port": ctx.kube_service_port, "protocol": "TCP"}],
        },
    }


def _generated_env(virtual_namespace: str, ctx: PodContext, service_links: bool) -> list[Json]:
    """``KUBERNETES_*`` always, plus the namespace's service links if the virtual pod wanted them.

    The host pod runs with ``enableServiceLinks: false`` (its host namespace's services are not the
    tenant's), but the host kubelet still injects the *host* ``kubernetes`` service's vars; explicit env
    entries override them. Kubelet's rule is kept: a service named ``kubernetes`` in the pod's own
    namespace overrides the master one, except in ``default`` where it *is* the master one (and ctx is
    the authority on where it lives).
    """
    services: dict[str, Mapping[str, Any]] = {"kubernetes": _kubernetes_service(ctx)}
    if service_links:
        for service in sorted(ctx.service_env, key=lambda s: s["metadata"]["name"]):
            meta = service["metadata"]
            if meta.get("namespace", virtual_namespace) != virtual_namespace:
                continue
            if virtual_namespace == "default" and meta["name"] == "kubernetes":
                continue
            services[meta["name"]] = service
    generated: dict[str, Json] = {}
    for service in services.values():
        for env in service_link_env(service):
            generated.setdefault(env["name"], env)
    return list(generated.values())


def _with_generated_env(user_env: list[Json] | None, generated: list[Json]) -> list[Json]:
    """Generated vars first (so the tenant's ``$(VAR)`` references expand), names the tenant set win.

    Known difference: in kubelet, ``envFrom`` keys also beat service vars; here generated vars are
    explicit ``env`` entries, which beat ``envFrom``. Only keys that look like service vars are affected.
    """
    user_env = user_env or []
    user_names = {env.get("name") for env in user_env}
    return [copy.deepcopy(env) for env in generated if env["name"] not in user_names] + user_env


# --- spec rewrites -----------------------------------------------------------------------------------


def _dedupe(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _fit_searches(searches: list[str]) -> list[str]:
    kept: list[str] = []
    for search in searches[:MAX_DNS_SEARCH_PATHS]:
        if len(" ".join([*kept, search])) > MAX_DNS_SEARCH_LIST_CHARS:
            break
        kept.append(search)
    return kept


def _merge_dns_options(ours: list[Json], theirs: list[Json]) -> list[Json]:
    merged: dict[str, Json] = {}
    for option in [*ours, *theirs]:
        merged[option["name"]] = dict(option)
    return list(merged.values())


def _translate_dns(spec: Json, virtual_namespace: str, ctx: PodContext) -> None:
    """ClusterFirst → dnsPolicy None with the virtual cluster's DNS, as kubelet would build it.

    ``ClusterFirst`` with hostNetwork means the node's DNS in kubelet, so it is left to the host kubelet;
    ``Default`` and ``None`` are the tenant's own choice and are kept.
    """
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    wants_cluster_dns = policy == "ClusterFirstWithHostNet" or (
        policy == "ClusterFirst" and spec.get("hostNetwork") is not True
    )
    if not wants_cluster_dns:
        return
    if not ctx.dns_ip:
        raise DnsNotReady("waiting for the host ClusterIP of the virtual kube-system/kube-dns service")
    tenant = spec.get("dnsConfig") or {}
    domain = ctx.cluster_domain
    searches = [f"{virtual_namespace}.svc.{domain}", f"svc.{domain}", domain, *(tenant.get("searches") or [])]
    spec["dnsPolicy"] = "None"
    spec["dnsConfig"] = {
        "nameservers": _dedupe([ctx.dns_ip, *(tenant.get("nameservers") or [])])[:MAX_DNS_NAMESERVERS],
        "searches": _fit_searches(_dedupe(searches)),
        "options": _merge_dns_options([{"name": "ndots", "value": "5"}], tenant.get("options") or []),
    }


def _kubernetes_host_alias(ctx: PodContext) -> Json:
    names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{ctx.cluster_domain}",
    ]
    return {"ip": ctx.kube_service_ip, "hostnames": names}


def default_hostname(pod_name: str) -> str:
    """What kubelet would use as hostname for the *virtual* pod: its name, as a valid DNS label.

    Dots become dashes and the name is cut at 63; a cut that ends in ``-`` is trimmed (vcluster's plain
    cut could produce an invalid hostname the API server rejects).
    """
    return pod_name.replace(".", "-")[:MAX_HOSTNAME_LENGTH].rstrip("-")


def _translate_service_account(spec: Json, ctx: PodContext) -> None:
    spec["automountServiceAccountToken"] = False
    spec.pop("serviceAccount", None)
    spec.pop("serviceAccountName", None)
    if ctx.host_service_account:
        spec["serviceAccountName"] = ctx.host_service_account


def _translate_priority(spec: Json, ctx: PodContext) -> None:
    spec.pop("priority", None)
    spec.pop("preemptionPolicy", None)
    class_name = spec.pop("priorityClassName", None)
    if class_name and ctx.sync_priority_classes:
        spec["priorityClassName"] = host_cluster_name(class_name, ctx.host_namespace, ctx.vcluster)


def _selector_keys(selector: Mapping[str, Any]) -> set[str]:
    keys = set(selector.get("matchLabels") or {})
    keys.update(requirement.get("key") for requirement in selector.get("matchExpressions") or [])
    return keys


def _fold_label_keys(
    selector: Mapping[str, Any] | None,
    match_keys: Sequence[str] | None,
    mismatch_keys: Sequence[str] | None,
    pod_labels: Mapping[str, str],
) -> Json | None:
    """Turn matchLabelKeys/mismatchLabelKeys into ``In``/``NotIn`` requirements on the pod's values.

    A key already in the selector was merged by the virtual API server (1.31+) and is left alone; a
    key the pod has no label for is ignored, as the scheduler does.
    """
    if selector is None:
        return None
    folded = copy.deepcopy(dict(selector))
    present = _selector_keys(folded)
    expressions = folded.get("matchExpressions") or []
    for keys, operator in ((match_keys, "In"), (mismatch_keys, "NotIn")):
        for key in keys or []:
            if key in pod_labels and key not in present:
                expressions.append({"key": key, "operator": operator, "values": [pod_labels[key]]})
                present.add(key)
    if expressions:
        folded["matchExpressions"] = expressions
    return folded


def _set_or_drop(holder: Json, key: str, value: Any) -> None:
    if value is None:
        holder.pop(key, None)
    else:
        holder[key] = value


def _translate_affinity_term(
    term: Json, virtual_namespace: str, ctx: PodContext, pod_labels: Mapping[str, str]
) -> None:
    """Scope one PodAffinityTerm to the tenant's pods in the namespaces it names.

    Kubernetes semantics: no namespaces and no namespaceSelector = the pod's namespace; an empty
    namespaceSelector = all namespaces; otherwise the union of the list and the selected namespaces.
    On the host everything lives in one namespace, so the term loses both fields and gains the
    marker and namespace-label requirements instead.
    """
    selector = _fold_label_keys(
        term.get("labelSelector"),
        term.pop("matchLabelKeys", None),
        term.pop("mismatchLabelKeys", None),
        pod_labels,
    )
    namespaces: list[str] = term.pop("namespaces", None) or []
    namespace_selector = term.pop("namespaceSelector", None)
    vc = ctx.vcluster
    if namespace_selector is not None and not _selector_keys(namespace_selector):
        translated = translate_label_selector(selector, vc, virtual_namespace, all_namespaces=True)
    elif namespace_selector is None and not namespaces:
        translated = translate_label_selector(selector, vc, virtual_namespace)
    else:
        chosen = set(namespaces)
        if namespace_selector is not None:
            chosen |= {
                ns
                for ns, labels in ctx.namespace_labels.items()
                if selector_matches(namespace_selector, labels)
            }
        translated = translate_label_selector(selector, vc, virtual_namespace, namespaces=chosen)
    _set_or_drop(term, "labelSelector", translated)


def _translate_affinity(
    spec: Json, virtual_namespace: str, ctx: PodContext, pod_labels: Mapping[str, str]
) -> None:
    affinity = spec.get("affinity") or {}
    for section_name in ("podAffinity", "podAntiAffinity"):
        section = affinity.get(section_name) or {}
        for term in section.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
            _translate_affinity_term(term, virtual_namespace, ctx, pod_labels)
        for weighted in section.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
            if weighted.get("podAffinityTerm"):
                _translate_affinity_term(weighted["podAffinityTerm"], virtual_namespace, ctx, pod_labels)


def _translate_topology_spread(
    spec: Json, virtual_namespace: str, ctx: PodContext, pod_labels: Mapping[str, str]
) -> None:
    """Spread constraints count pods of the pod's own namespace: scope them to the tenant's in it."""
    for constraint in spec.get("topologySpreadConstraints") or []:
        selector = _fold_label_keys(
            constraint.get("labelSelector"), constraint.pop("matchLabelKeys", None), None, pod_labels
        )
        _set_or_drop(
            constraint, "labelSelector", translate_label_selector(selector, ctx.vcluster, virtual_namespace)
        )


def _translate_container_lists(spec: Json, virtual_namespace: str, ctx: PodContext) -> None:
    """Rewrites that apply container by container: references, downward API, generated env."""
    vc = ctx.vcluster

    def rename(name: str) -> str:
        return host_name(name, virtual_namespace, vc)

    _visit_references(spec, _Renamers(rename, rename, rename))
    _replace_token_sources(spec, ctx.token_secret_name)
    _rewrite_field_refs(spec)
    generated = _generated_env(virtual_namespace, ctx, spec.get("enableServiceLinks") is not False)
    for container in _containers(spec):
        container["env"] = _with_generated_env(container.get("env"), generated)


# --- metadata ----------------------------------------------------------------------------------------


def _controlled_by_workload(meta: Mapping[str, Any]) -> bool:
    return any(
        ref.get("controller") and (ref.get("apiVersion"), ref.get("kind")) in _WORKLOAD_CONTROLLERS
        for ref in meta.get("ownerReferences") or []
    )


def format_labels(labels: Mapping[str, str] | None) -> str:
    """Labels as kubelet writes the downward-API ``metadata.labels`` file: sorted ``k="v"`` lines.

    Kubelet quotes with Go's %q; label values are limited to ``[A-Za-z0-9._-]``, which %q never escapes.
    """
    return "\n".join(f'{key}="{value}"' for key, value in sorted((labels or {}).items()))


def _host_pod_metadata(vpod: Pod, ctx: PodContext) -> Json:
    """Host pod metadata: generic host metadata plus what the rewritten downward API reads.

    ``safe-to-evict`` tells a host cluster-autoscaler that a workload-controlled pod may be moved even
    though its host copy has no owner; a tenant's own value of that annotation wins.
    """
    meta = vpod["metadata"]
    spec = vpod.get("spec") or {}
    tenant_annotations = dict(meta.get("annotations") or {})
    if _controlled_by_workload(meta):
        tenant_annotations.setdefault(SAFE_TO_EVICT_ANNOTATION, "true")
    host_meta = host_metadata(
        vpod,
        vcluster=ctx.vcluster,
        host_namespace=ctx.host_namespace,
        kind="Pod",
        annotations=tenant_annotations,
    )
    annotations = host_meta["annotations"]
    annotations[ANN_POD_NAME] = meta["name"]
    annotations[ANN_POD_NAMESPACE] = meta["namespace"]
    annotations[ANN_POD_UID] = meta.get("uid", "")
    annotations[ANN_POD_SERVICE_ACCOUNT] = spec.get("serviceAccountName") or ""
    annotations[ANN_POD_LABELS] = format_labels(meta.get("labels"))
    gates = [gate["name"] for gate in spec.get("schedulingGates") or []]
    if gates:
        annotations[ANN_POD_SCHEDULING_GATES] = "\n".join(gates)
    return host_meta


# --- the translation ---------------------------------------------------------------------------------


def translate_pod(vpod: Pod, ctx: PodContext) -> Json:
    """The host pod to create for a virtual pod (see the module docstring for every rewrite).

    Raises :class:`DnsNotReady` when the pod needs cluster DNS and ``ctx.dns_ip`` is unknown, and
    :class:`TokenSecretNotReady` when it projects SA tokens and ``ctx.token_secret_name`` is unset.
    Kept verbatim: containers (images included), nodeName, nodeSelector, node affinity, tolerations,
    security contexts, schedulingGates (see :func:`host_pod_update`), resources, restartPolicy.
    """
    meta = vpod["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    pod_labels: Mapping[str, str] = meta.get("labels") or {}
    spec: Json = copy.deepcopy(dict(vpod.get("spec") or {}))

    _ephemeral_volumes_to_claims(name, spec)
    spec.pop("ephemeralContainers", None)  # forbidden on create; see host_ephemeral_containers
    _translate_container_lists(spec, namespace, ctx)
    spec["enableServiceLinks"] = False
    _translate_service_account(spec, ctx)
    _translate_priority(spec, ctx)
    spec.pop("overhead", None)
    _translate_dns(spec, namespace, ctx)
    spec["hostAliases"] = [*(spec.get("hostAliases") or []), _kubernetes_host_alias(ctx)]
    if not spec.get("hostname"):
        spec["hostname"] = default_hostname(name)
    spec.pop("subdomain", None)
    _translate_affinity(spec, namespace, ctx, pod_labels)
    _translate_topology_spread(spec, namespace, ctx, pod_labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _host_pod_metadata(vpod, ctx), "spec": spec}


def host_ephemeral_containers(vpod: Pod, hpod: Pod, ctx: PodContext) -> list[Json] | None:
    """The host pod's complete ``ephemeralContainers`` list once the tenant added some (``kubectl debug``),
    for the ``ephemeralcontainers`` subresource; ``None`` when the host already has them all.

    Existing host entries are kept as they are (they cannot change); new ones get the same rewrites as
    containers. Raises :class:`TokenSecretNotReady` like :func:`translate_pod` would.
    """
    host_list: list[Json] = list((hpod.get("spec") or {}).get("ephemeralContainers") or [])
    present = {container.get("name") for container in host_list}
    missing = [
        c for c in (vpod.get("spec") or {}).get("ephemeralContainers") or [] if c.get("name") not in present
    ]
    if not missing:
        return None
    vspec = vpod.get("spec") or {}
    partial: Json = {
        "ephemeralContainers": copy.deepcopy(missing),
        "enableServiceLinks": vspec.get("enableServiceLinks"),
    }
    _translate_container_lists(partial, vpod["metadata"]["namespace"], ctx)
    translated: list[Json] = partial["ephemeralContainers"]
    return host_list + translated


# --- updates of an existing host pod -------------------------------------------------------------------


def _updated_images(virtual: list[Json] | None, host: list[Json] | None) -> list[Json] | None:
    images = {container["name"]: container.get("image") for container in virtual or []}
    updated, changed = [], False
    for container in host or []:
        wanted = images.get(container["name"], container.get("image"))
        if wanted != container.get("image"):
            container = {**container, "image": wanted}
            changed = True
        updated.append(container)
    return updated if changed else None


def _lowered_deadline(virtual: int | None, host: int | None) -> int | None:
    if virtual is not None and (host is None or virtual < host):
        return virtual
    return None


def _added_tolerations(virtual: list[Json] | None, host: list[Json] | None) -> list[Json] | None:
    host = host or []
    missing = [toleration for toleration in virtual or [] if toleration not in host]
    return [*host, *missing] if missing else None


def _remaining_gates(
    vspec: Mapping[str, Any], hspec: Mapping[str, Any], recorded: str | None
) -> list[Json] | None:
    """Host gates minus the virtual gates the tenant removed (recorded at creation, see metadata)."""
    wanted = {gate["name"] for gate in vspec.get("schedulingGates") or []}
    removed = {name for name in (recorded or "").split("\n") if name and name not in wanted}
    host_gates = hspec.get("schedulingGates") or []
    remaining = [gate for gate in host_gates if gate["name"] not in removed]
    return remaining if len(remaining) != len(host_gates) else None


def host_pod_update(vpod: Pod, hpod_current: Pod, ctx: PodContext) -> Json | None:
    """JSON merge-patch (``application/merge-patch+json``) for an existing host pod, or ``None``.

    Only what Kubernetes lets one change on a pod: container and init-container images,
    activeDeadlineSeconds (set or lower), added tolerations, removed scheduling gates, labels and
    annotations (owned keys only; host-only keys survive). Lists are sent complete, built from the
    host's own entries, because a merge patch replaces lists. Needs no DNS or token state, so it works
    while those are unavailable. ``None`` on a no-op: resyncs must not write.
    """
    vspec: Mapping[str, Any] = vpod.get("spec") or {}
    hspec: Mapping[str, Any] = hpod_current.get("spec") or {}
    current_meta: Mapping[str, Any] = hpod_current.get("metadata") or {}
    spec_patch: Json = {}
    for list_name in ("containers", "initContainers"):
        _set_or_drop(spec_patch, list_name, _updated_images(vspec.get(list_name), hspec.get(list_name)))
    _set_or_drop(
        spec_patch,
        "activeDeadlineSeconds",
        _lowered_deadline(vspec.get("activeDeadlineSeconds"), hspec.get("activeDeadlineSeconds")),
    )
    _set_or_drop(
        spec_patch, "tolerations", _added_tolerations(vspec.get("tolerations"), hspec.get("tolerations"))
    )
    recorded_gates = (current_meta.get("annotations") or {}).get(ANN_POD_SCHEDULING_GATES)
    _set_or_drop(spec_patch, "schedulingGates", _remaining_gates(vspec, hspec, recorded_gates))

    patch: Json = {}
    _set_or_drop(patch, "metadata", metadata_patch(_host_pod_metadata(vpod, ctx), current_meta))
    if spec_patch:
        patch["spec"] = spec_patch
    return patch or None


# --- status ------------------------------------------------------------------------------------------


def _readiness_gate_types(vpod: Pod) -> list[str]:
    return [gate["conditionType"] for gate in (vpod.get("spec") or {}).get("readinessGates") or []]


def _host_to_virtual_names(vpod: Pod, hpod: Pod) -> tuple[dict[str, str], str | None]:
    vmeta, hmeta = vpod["metadata"], hpod.get("metadata") or {}
    vname, vns = vmeta["name"], vmeta["namespace"]
    hname, hns = hmeta.get("name", ""), hmeta.get("namespace", "")
    names = {hname: vname, f"{hns}/{hname}": f"{vns}/{vname}"}
    vcluster = (hmeta.get("labels") or {}).get(MARKER_LABEL)
    if vcluster:
        referenced = referenced_configmaps(vpod) | referenced_secrets(vpod) | referenced_pvcs(vpod)
        names.update({host_name(ref, vns, vcluster): ref for ref in referenced})
    return names, vcluster


def _redact_status(status: Json, names: Mapping[str, str], vcluster: str | None) -> None:
    def redact(holder: Json | None) -> None:
        if holder and isinstance(holder.get("message"), str):
            holder["message"] = redact_host_names(holder["message"], names, vcluster=vcluster)

    redact(status)
    for condition in status.get("conditions") or []:
        redact(condition)
    for list_name in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for container_status in status.get(list_name) or []:
            for state_name in ("state", "lastState"):
                for state in (container_status.get(state_name) or {}).values():
                    redact(state)


def virtual_status_update(vpod: Pod, hpod: Pod) -> Json | None:
    """The virtual pod's new ``status`` from the host pod's, or ``None`` when nothing changed.

    The host is authoritative for the status (phase, conditions, IPs, container statuses, startTime...)
    with three exceptions. Readiness-gate conditions are set by the tenant's controllers in the virtual
    cluster: the virtual ones are kept (and copied to the host by :func:`host_status_update`).
    ``qosClass`` is immutable and computed by the virtual API server: kept when set. observedGeneration
    counts host pod generations, meaningless for the virtual pod: dropped. Host names in messages
    (the pod's, its configmaps'/secrets'/PVCs', ``<host ns>/<host pod>``) are mapped back.
    """
    status = copy.deepcopy(dict(hpod.get("status") or {}))
    virtual_status: Mapping[str, Any] = vpod.get("status") or {}
    status.pop("observedGeneration", None)
    gate_types = set(_readiness_gate_types(vpod))
    virtual_gates = [c for c in virtual_status.get("conditions") or [] if c.get("type") in gate_types]
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in gate_types]
    for condition in conditions:
        condition.pop("observedGeneration", None)
    conditions += copy.deepcopy(virtual_gates)
    _set_or_drop(status, "conditions", conditions or None)
    if virtual_status.get("qosClass"):
        status["qosClass"] = virtual_status["qosClass"]
    names, vcluster = _host_to_virtual_names(vpod, hpod)
    _redact_status(status, names, vcluster)
    return None if status == virtual_status else status


def host_status_update(vpod: Pod, hpod: Pod) -> Json | None:
    """JSON merge-patch of the host pod's status carrying the virtual readiness-gate conditions.

    The host pod keeps the tenant's ``readinessGates`` and the host kubelet only reports Ready when
    the gate conditions are true in the *host* status, which no host controller sets. The conditions
    list is sent complete (host order, gates replaced in place, new ones appended). ``None``: no-op.
    """
    gate_types = _readiness_gate_types(vpod)
    if not gate_types:
        return None
    virtual_gates = {
        c["type"]: c
        for c in (vpod.get("status") or {}).get("conditions") or []
        if c.get("type") in gate_types
    }
    host_conditions: list[Json] = (hpod.get("status") or {}).get("conditions") or []
    conditions = [virtual_gates.get(c.get("type", ""), c) for c in host_conditions]
    present = {c.get("type") for c in host_conditions}
    conditions += [condition for kind, condition in virtual_gates.items() if kind not in present]
    if conditions == host_conditions:
        return None
    return {"status": {"conditions": copy.deepcopy(conditions)}}
