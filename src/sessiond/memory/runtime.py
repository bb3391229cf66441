"""``Memory``: the embedder, the vector matrices and the embedding job of one instance.

Routes call ``embed_text`` (in a thread, outside any transaction) before the write that
stores an item, so a new item is found by meaning at once; when the embedder fails the
item is stored without a vector and the job embeds it later. The job embeds, in
batches, every item that has no vector of the configured model: items written without
one (session summaries, failed embeddings) and — after a model change — all of them
(mem0#3065: a new model never breaks search, items are found by full text meanwhile).
Several instances may run the job: a vector is stored only if its item did not change
since it was read, and storing one twice is the same as once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from sessiond.db.executor import Database
from sessiond.memory import pgvector, search, service
from sessiond.memory.embedders import Embedder, EmbedError, make_embedder
from sessiond.memory.index import VectorIndex
from sessiond.memory.service import Embedded, MemoryLimits
from sessiond.settings import Settings

log = logging.getLogger("sessiond.memory")
MAX_BACKOFF = 60.0


class Memory:
    def __init__(
        self,
        db: Database,
        embedder: Embedder | None,
        limits: MemoryLimits,
        *,
        batch: int = 32,
        poll_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.limits = limits
        self.index = VectorIndex()
        self.batch = batch
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def model(self) -> str | None:
        return self.embedder.model if self.embedder else None

    async def embed_text(self, text: str) -> Embedded | None:
        """The vector of a document, or None (no embedder, or it failed: logged)."""
        if self.embedder is None:
            return None
        embedder = self.embedder
        try:
            vectors = await asyncio.to_thread(embedder.documents, [text])
        except EmbedError as e:
            log.warning("memory: embedding failed (%s); the item is embedded later", e)
            return None
        return Embedded(embedder.model, vectors[0], native=self.index.native)

    async def embed_query(self, text: str) -> np.ndarray | None:
        if self.embedder is None:
            return None
        try:
            return await asyncio.to_thread(self.embedder.query, text)
        except EmbedError as e:
            log.warning("memory: embedding the query failed (%s); full-text search only", e)
            return None

    async def search(
        self, account_id: str, query: str, filters: search.Filters, *, top_k: int, mode: str
    ) -> dict[str, Any]:
        vector = await self.embed_query(query) if mode != "text" else None
        return await self.db.read(
            search.search,
            self.index,
            account_id,
            query,
            filters,
            top_k=top_k,
            mode=mode,
            model=self.model,
            query_vector=vector,
        )

    # -- the embedding job -----------------------------------------------------------------

    def wake(self) -> None:
        """Look for items to embed now."""
        self._wake.set()

    def on_event(self, event: dict[str, Any]) -> None:
        """Bus listener: an item was stored without a vector (on any instance)."""
        kind, data = event["type"], event["data"]
        if kind in ("memory.created", "memory.updated") and data["memory"]["embedding"] is None:
            self.wake()

    async def embed_backlog(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Embed every item without a vector of the current model. Returns how many were
        stored; raises ``EmbedError`` when the embedder fails."""
        if self.embedder is None:
            return 0
        embedder, total = self.embedder, 0
        while True:
            # An item that changed between its read and its write is read again here, with
            # its new text.
            items = await self.db.read(service.backlog, embedder.model, self.batch)
            if not items:
                return total
            vectors = await asyncio.to_thread(embedder.documents, [text for _, text, _ in items])
            native = self.index.native
            embedded = [Embedded(embedder.model, vector, native=native) for vector in vectors]
            stored = await self.db.write(
                service.store_vectors, [(num, at) for num, _, at in items], embedded
            )
            total += stored
            if progress is not None:
                progress(total)

    async def _run(self) -> None:
        backoff = self.poll_seconds
        while True:
            try:
                await self.embed_backlog()
                backoff = self.poll_seconds
            except asyncio.CancelledError:
                raise
            except EmbedError as e:
                log.warning("memory: embedding job failed (%s); retrying in %.0f s", e, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:
                log.exception("memory: embedding job failed; will retry")
                backoff = min(backoff * 2, MAX_BACKOFF)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()

    async def prepare(self) -> None:
        """pgvector when the database has it, and the rows it has not seen filled."""
        if self.db.dialect == "postgresql":
            self.index.native = await self.db.write(pgvector.enable)
            if self.index.native:
                while await self.db.write(pgvector.backfill, 500) == 500:
                    pass

    async def start(self) -> None:
        await self.prepare()
        if self.embedder is not None:
            self._task = asyncio.create_task(self._run(), name="memory-embedding")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.close()

    def close(self) -> None:
        """Release the embedder's connections (an HTTP embedder's)."""
        close = getattr(self.embedder, "close", None)
        if close is not None:
            close()


def make_memory(settings: Settings, db: Database) -> Memory:
    """The instance's memory from the settings (the builtin model is loaded once per
    process and shared)."""
    embedder = make_embedder(
        settings.embedder,
        model=settings.embedding_model,
        api_key=settings.model_api_key,
        timeout=settings.model_timeout_seconds,
    )
    limits = MemoryLimits(
        text_chars=settings.memory_text_chars,
        metadata_bytes=settings.memory_metadata_bytes,
        per_account=settings.memories_per_account,
    )
    return Memory(
        db,
        embedder,
        limits,
        batch=settings.memory_embed_batch,
        poll_seconds=settings.memory_embed_poll_seconds,
    )
