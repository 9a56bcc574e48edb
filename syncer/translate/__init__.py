"""Pure translation between virtual and host objects: no I/O, no asyncio, no Kubernetes client.

Objects are plain ``dict[str, Any]`` as the API servers return them; every function takes what it needs
as arguments (no global state), so the syncer's controllers stay thin and all the rules are unit-tested.

* :mod:`.names`: host names (``<name>-x-<ns>-x-<vc>``), reserved keys, redaction of host names in text.
* :mod:`.metadata`: host labels/annotations, ownership (the answer to ambiguous names), selectors.
* :mod:`.pods`: virtual pod → host pod, updates, status back, SA-token requests, references.
* :mod:`.podsecurity`: Pod Security Standards check before a pod reaches the host.
* :mod:`.events`: host events → virtual events without host names.
* :mod:`.volumes`: PVCs, their status and bind annotations, fake PersistentVolumes.
* :mod:`.storageclasses`: host StorageClasses mirrored read-only into the virtual cluster.
"""
