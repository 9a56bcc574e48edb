"""The management.loft.sh/v1 resource types and the names, labels and annotations the control plane uses."""

from __future__ import annotations

from syncer.kube.resources import ResourceType

GROUP = "management.loft.sh"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

VIRTUAL_CLUSTER_INSTANCES = ResourceType(GROUP, VERSION, "virtualclusterinstances", "VirtualClusterInstance")
SPACE_INSTANCES = ResourceType(GROUP, VERSION, "spaceinstances", "SpaceInstance")
VIRTUAL_CLUSTER_TEMPLATES = ResourceType(
    GROUP, VERSION, "virtualclustertemplates", "VirtualClusterTemplate", namespaced=False
)
SPACE_TEMPLATES = ResourceType(GROUP, VERSION, "spacetemplates", "SpaceTemplate", namespaced=False)
PROJECTS = ResourceType(GROUP, VERSION, "projects", "Project", namespaced=False)

BY_PLURAL: dict[str, ResourceType] = {
    rt.plural: rt
    for rt in (
        VIRTUAL_CLUSTER_INSTANCES,
        SPACE_INSTANCES,
        VIRTUAL_CLUSTER_TEMPLATES,
        SPACE_TEMPLATES,
        PROJECTS,
    )
}

FINALIZER = "loft.sh/cleanup"
PROJECT_NAMESPACE_PREFIX = "loft-p-"

# Labels on the host namespace, pointing back at the instance.
LABEL_INSTANCE_NAME = "loft.sh/vcluster-instance-name"
LABEL_INSTANCE_NAMESPACE = "loft.sh/vcluster-instance-namespace"
LABEL_INSTANCE_PROJECT = "loft.sh/vcluster-instance-project"
LABEL_SPACE_INSTANCE_NAME = "loft.sh/space-instance-name"
LABEL_SPACE_INSTANCE_NAMESPACE = "loft.sh/space-instance-namespace"
LABEL_PROJECT = "loft.sh/project"
# We only delete namespaces that carry this annotation (we created them).
ANNOTATION_CREATED_BY = "vcluster-py.loft.sh/created-by-controlplane"

ANNOTATION_PRESERVE_NAMESPACE = "loft.sh/preserve-namespace-on-deletion"
ANNOTATION_SKIP_HELM_DEPLOY = "loft.sh/skip-helm-deploy"
ANNOTATION_IMPORTED = "loft.sh/imported"
ANNOTATION_SLEEP_FORCE = "sleepmode.loft.sh/force"
ANNOTATION_SLEEPING_SINCE = "sleepmode.loft.sh/sleeping-since"
ANNOTATION_SLEEP_TYPE = "sleepmode.loft.sh/sleep-type"
ANNOTATION_LAST_ACTIVITY = "sleepmode.loft.sh/last-activity"
ANNOTATION_DRIVER = "vcluster-py.loft.sh/driver"

# The template an instance was synced with, before rendering (vcluster-py's own status field: Loft's
# documents name only the rendered result, status.virtualCluster / status.space).
STATUS_SYNCED_TEMPLATE = "syncedTemplate"

PHASE_PENDING = "Pending"
PHASE_READY = "Ready"
PHASE_SLEEPING = "Sleeping"
PHASE_FAILED = "Failed"

COND_TEMPLATE_RESOLVED = "TemplateResolved"
# Loft's condition for "the instance has what its template says" (False: TemplateChangesAvailable, or the
# template could not be read and the one synced earlier is still used).
COND_TEMPLATE_SYNCED = "TemplateSynced"
COND_SPACE_READY = "SpaceReady"
COND_DEPLOYED = "VirtualClusterDeployed"
COND_READY = "VirtualClusterReady"
COND_OBJECTS = "VirtualClusterAppsAndObjectsSynced"


def project_namespace(project: str) -> str:
    return PROJECT_NAMESPACE_PREFIX + project


def project_of(namespace: str) -> str:
    """The project id of a project namespace (`loft-p-<project>`); the namespace itself otherwise."""
    if namespace.startswith(PROJECT_NAMESPACE_PREFIX):
        return namespace[len(PROJECT_NAMESPACE_PREFIX) :]
    return namespace


def default_host_namespace(project: str, name: str) -> str:
    return f"loft-{project}-v-{name}"


def kubeconfig_secret(name: str) -> str:
    """The host Secret the syncer writes the virtual cluster's kubeconfig to (key `config`)."""
    return f"vc-{name}"
