"""Placeholder: the API proxy (issue 5) replaces this module."""

from __future__ import annotations

import asyncio

from syncer.kube.client import KubeClient
from syncer.options import SyncerOptions


async def serve(options: SyncerOptions, virtual: KubeClient, host: KubeClient) -> None:
    await asyncio.Event().wait()
