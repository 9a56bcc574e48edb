"""In-memory state of the syncer: the indexed object store reflectors fill, and the work queue.

Pure logic on top of `syncer.kube` (which it may import; never the other way round).
"""

from syncer.cache.queue import QueueShutDown, WorkQueue, run_workers
from syncer.cache.store import Store, default_key

__all__ = ["QueueShutDown", "Store", "WorkQueue", "default_key", "run_workers"]
