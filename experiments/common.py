"""What every experiment shares: the output folder, per-window metrics, confidence intervals, settings.

Output of ``marlids experiment NAME`` (``results/NAME/``):

* ``config.json`` — the resolved configuration, the seed, the mode (quick/full), the data sources with
  their citations, and library versions;
* ``*.csv`` — one file per table, full precision;
* ``NAME.md`` — the same tables in Markdown with their captions;
* ``*.png`` — plots (matplotlib, Agg);
* ``metrics.json`` — the headline metrics (what the determinism test compares; no timings);
* ``runtime.json`` — wall-clock seconds (kept apart: timings differ between reruns).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.paths import RESULTS


def window_metrics(y: np.ndarray, alert: np.ndarray) -> dict[str, float]:
    """Per-window precision, recall, F1, FPR and MCC of boolean ``alert`` ``(n,)`` against labels ``y`` ``(n,)``
    (:func:`training.evaluate.window_metrics`, scikit-learn), plus ``windows`` and ``malicious``.

    Precision is 0 without any alert, recall 0 without any attack window (never NaN), so tables stay
    comparable; ``windows`` and ``malicious`` say how much data a number rests on.
    """
    from training.evaluate import window_metrics as metrics

    m = metrics(y, alert)
    y = np.asarray(y).astype(bool)
    return {k: m[k] for k in ("precision", "recall", "f1", "fpr", "mcc")} | {"windows": len(y),
                                                                          "malicious": int(y.sum())}


def mean_ci(values: Any, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t ``confidence`` interval of ``values`` (NaN half-width for n < 2)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) < 2:
        return float(v.mean()), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """``df`` as a GitHub Markdown table (floats rounded to ``digits``; NaN shown as ``–``)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "–" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "torch", "ray", "sklearn", "pettingzoo"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj)}")


@dataclass
class Output:
    """``results/<name>/`` of one run.

    Files are written to a staging folder ``<root>/.<name>.partial`` (``dir``) and :meth:`finish` puts it in
    place of ``results/<name>/`` whole, so no stale file survives a rerun, and a run that stops early (bad
    arguments, an error after an hour, Ctrl-C) leaves the previous results as they were.

    Parameters
    ----------
    name : str
        Experiment name.
    root : Path
        Results root (default :data:`RESULTS`).
    """

    name: str
    root: Path = RESULTS
    sections: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.final_dir = Path(self.root) / self.name
        self.dir = Path(self.root) / f".{self.name}.partial"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.t0 = time.perf_counter()

    def config(self, seed: int, quick: bool, settings: dict, sources: dict[str, str]) -> None:
        """Write ``config.json``: the seed, the mode, every setting and the data sources with citations."""
        import os

        cfg = {"experiment": self.name, "seed": seed, "mode": "quick" if quick else "full", "settings": settings,
               "sources": sources, "versions": _versions(),
               "machine": f"a {os.cpu_count()}-core {platform.machine()} machine (CPU only)"}
        (self.dir / "config.json").write_text(json.dumps(cfg, indent=2, default=_jsonable))

    def table(self, stem: str, df: pd.DataFrame, caption: str, digits: int = 3) -> Path:
        """Write ``stem.csv`` and add the table with its caption to the Markdown file."""
        path = self.dir / f"{stem}.csv"
        df.to_csv(path, index=False)
        self.sections.append(f"### {caption}\n\n{markdown_table(df, digits)}\n\n(`{stem}.csv`)")
        return path

    def text(self, markdown: str) -> None:
        """Add a paragraph (caveats, reading notes) to the Markdown file."""
        self.sections.append(markdown)

    def figure(self, fig, stem: str, caption: str) -> Path:
        """Save a matplotlib figure as ``stem.png`` (and reference it from the Markdown file)."""
        import matplotlib.pyplot as plt

        path = self.dir / f"{stem}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        self.sections.append(f"![{caption}]({stem}.png)\n\n*{caption}*")
        return path

    def finish(self, title: str, intro: str) -> Path:
        """Write ``<name>.md``, ``metrics.json`` and ``runtime.json``, put the run's folder in place of
        ``results/<name>/``; return the Markdown path (``dir`` then names the final folder)."""
        md = self.dir / f"{self.name}.md"
        md.write_text(f"## {title}\n\n{intro}\n\n" + "\n\n".join(self.sections) + "\n")
        (self.dir / "metrics.json").write_text(json.dumps(self.metrics, indent=2, sort_keys=True, default=_jsonable))
        (self.dir / "runtime.json").write_text(json.dumps({"seconds": round(time.perf_counter() - self.t0, 1)}))
        if self.final_dir.exists():
            shutil.rmtree(self.final_dir)
        self.dir.rename(self.final_dir)
        self.dir = self.final_dir
        return self.final_dir / f"{self.name}.md"


def mappo_args(quick: bool, seed: int, out_dir: Path, **overrides):
    """MAPPO settings of the experiments: ``quick`` (CI, seconds per run) or full (minutes per run).

    Quick: 6 iterations × 1,000 env steps; full: 40 × 2,000 (the bundled model used 60 × 4,000).
    """
    from training.mappo.config import MappoArgs

    base = (dict(iterations=6, train_batch_size=1000, minibatch_size=500, num_epochs=2, max_steps=100,
                 snapshot_every=2) if quick else
            dict(iterations=40, train_batch_size=2000, minibatch_size=1000, num_epochs=4, max_steps=200,
                 snapshot_every=5))
    base = {"num_envs_per_env_runner": 4, **base, **overrides}
    return MappoArgs(seed=seed, out_dir=str(out_dir), checkpoint_every=10_000, **base)


def scorer_epochs(quick: bool) -> int:
    """Training passes of the temporal scorer and the Kitsune-style ensemble."""
    return 5 if quick else 30
