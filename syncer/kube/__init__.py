"""Kubernetes I/O: the API client (the one HTTP choke point), resource types, reflectors and metrics.

The lowest layer of the syncer: it imports nothing from `syncer.cache` or above. Objects are plain
dicts (`JsonObj`) end to end.
"""

from syncer.kube.client import ApiError, JsonObj, KubeClient, KubeConfigError, KubeError, TransportError
from syncer.kube.reflector import Reflector
from syncer.kube.resources import ResourceType

__all__ = [
    "ApiError",
    "JsonObj",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "Reflector",
    "ResourceType",
    "TransportError",
]
