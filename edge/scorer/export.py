"""ONNX export of the temporal scorer and an onnxruntime session for the edge.

The exported graph takes *raw* window statistics ``x`` float32 ``(batch, T, F)`` (the scaler is inside)
and returns ``score`` ``(batch,)`` and ``attention`` ``(batch, heads, T)`` — the same numbers as
:meth:`TemporalScorer.score_with_attention`. ``T`` is fixed to the checkpoint's ``seq_len``; the batch
axis is dynamic. Exported with the TorchScript-based exporter (``dynamo=False``, opset 17), which needs no
``onnxscript`` on the device.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edge.scorer.model import TemporalScorer

log = logging.getLogger(__name__)

OPSET = 17


#: The scorer graph inside a checkpoint folder.
ONNX_FILE = "scorer.onnx"

def export_onnx(scorer: TemporalScorer, path: str | Path, *, opset: int = OPSET) -> Path:
    """Write ``scorer`` as an ONNX model at ``path`` and check it with ``onnx.checker``.

    Returns
    -------
    Path
        ``path``.
    """
    import onnx
    import torch

    graph = scorer.scoring_module()
    dummy = torch.zeros(1, scorer.seq_len_, scorer.n_features_in_)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and the LSTM batch-size notice
        torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=int(opset),
                          input_names=["x"], output_names=["score", "attention"],
                          dynamic_axes={"x": {0: "batch"}, "score": {0: "batch"}, "attention": {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(path)))
    log.info("exported ONNX scorer to %s", path)
    return path


class OnnxScorer:
    """Score sequences with an exported model through onnxruntime (CPU).

    Parameters
    ----------
    path : str or Path
        ONNX file written by :func:`export_onnx`.
    threads : int, default 1
        ``intra_op_num_threads`` (1 = one core, as on a busy Raspberry Pi).
    """

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path = str(path)
        self.session_ = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])

    def score_with_attention(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``score`` ``(batch,)`` and ``attention`` ``(batch, heads, T)`` for raw float32 ``X``."""
        s, a = self.session_.run(None, {"x": np.ascontiguousarray(X, dtype=np.float32)})
        return s, a

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly score per sequence, ``(batch,)``."""
        return self.score_with_attention(X)[0]


def load_onnx_checkpoint(directory: str | Path, threads: int = 1) -> tuple[OnnxScorer, Any, dict[str, Any]]:
    """Load a scorer checkpoint's ``scorer.onnx`` and threshold without torch (the edge path).

    Reads ``config.json`` (format, ``seq_len``, threshold) and ``scorer.onnx`` of ``directory``; the
    torch weights are not needed. The returned scorer has ``seq_len_`` and ``n_features_in_`` like
    :class:`TemporalScorer`, and ``score_with_attention`` on raw ``(batch, T, F)`` float32.

    Returns
    -------
    scorer : OnnxScorer
    threshold : SPOTThreshold or None
    config : dict
        The parsed ``config.json``.

    Raises
    ------
    CheckpointError
        If the directory, ``config.json`` or ``scorer.onnx`` is missing or unreadable, or the graph's
        input shape disagrees with the configuration.
    """
    import json

    from edge.scorer._common import CheckpointError
    from edge.scorer.checkpoint import CONFIG, FORMAT
    from edge.scorer.threshold import SPOTThreshold

    d = Path(directory)
    for name in (CONFIG, ONNX_FILE):
        if not (d / name).is_file():
            raise CheckpointError(f"scorer checkpoint {str(d)!r} has no {name}: expected a folder written by "
                                  "`marlids edge train-scorer` or `marlids edge export-onnx`")
    try:
        cfg = json.loads((d / CONFIG).read_text())
        if cfg.get("format") != FORMAT:
            raise ValueError(f"format {cfg.get('format')!r}, expected {FORMAT!r}")
        threshold = SPOTThreshold.from_dict(cfg["threshold"]) if cfg.get("threshold") else None
        seq_len, n_features = int(cfg["seq_len"]), int(cfg["n_features"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"scorer checkpoint {str(d / CONFIG)!r} is invalid: {type(exc).__name__}: {exc}") \
            from None
    try:
        scorer = OnnxScorer(d / ONNX_FILE, threads=threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
        raise CheckpointError(f"scorer checkpoint {str(d / 'scorer.onnx')!r} is corrupt: {exc}") from None
    shape = scorer.session_.get_inputs()[0].shape
    if len(shape) != 3 or shape[1:] != [seq_len, n_features]:
        raise CheckpointError(f"{str(d / 'scorer.onnx')!r} takes {shape}, but {CONFIG} says "
                              f"(batch, {seq_len}, {n_features})")
    scorer.seq_len_, scorer.n_features_in_ = seq_len, n_features
    return scorer, threshold, cfg
