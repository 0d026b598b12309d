"""``marlids experiment ablation`` — which parts of the Observation and of MARL matter.

Data: both bundled range sites, split in time between attack episodes (earlier 70 % trains, the later
part is held out; ARP spoofing and slowloris occur only in the held-out part). One temporal scorer is
trained on the benign training windows and feeds every variant.

* **Feature sets** (MAPPO, the same settings): *statistics only* (64 window statistics), *+ MiniLM*
  (the 384-d protocol-text embedding), *+ temporal score* (calibrated score, its availability flag
  and the attention summary), *full* (all three). Removed parts are zeroed in training and evaluation.
* **Algorithms** (full Observation): MAPPO (shared actor, centralized critic, self-play), IPPO (critic on
  the own Observation), single-agent PPO (one defender, own critic, random attacker).

Each variant runs with every seed; tables give the mean and the 95 % Student-t interval over seeds.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.common import Output, mappo_args, mean_ci, scorer_epochs, window_metrics
from experiments.data import concat, load_source, time_split
from experiments.detectors import FEATURE_SETS, MarlDetector, ScorerDetector

log = logging.getLogger(__name__)

TRAIN_FRACTION = 0.7
#: Algorithm variants: name → MappoArgs overrides.
ALGORITHMS: dict[str, dict] = {
    "MAPPO": {},
    "IPPO": {"centralized_critic": False},
    "single-agent PPO": {"n_defenders": 1, "centralized_critic": False, "self_play": False},
}


def held_out():
    """(train, test) sources: the earlier / later parts of both range sites."""
    parts = [time_split(load_source(s), TRAIN_FRACTION) for s in ("site_a", "site_b")]
    return concat([p[0] for p in parts]), concat([p[1] for p in parts])


def evaluate_sites(det, test) -> list[dict]:
    """Per-window metrics of ``det`` on each site of ``test`` and on both together, after each site's
    grace period."""
    from experiments.detectors import grace_mask

    rows = []
    a = det.alerts(test)
    y = test.frame["label"].to_numpy()
    scored = ~grace_mask(test)
    for site in [*sorted(test.frame["site"].unique()), "both"]:
        m = np.ones(len(y), bool) if site == "both" else (test.frame["site"] == site).to_numpy()
        m = m & scored  # to_numpy() may hand back a read-only view
        rows.append({"site": site, **window_metrics(y[m], a[m])})
    return rows


def summarise(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean ± 95 % CI over seeds of precision, recall, F1 and FPR, grouped by ``by``."""
    out = []
    for key, g in df.groupby(by, sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["seeds"] = g["seed"].nunique()
        for k in ("precision", "recall", "f1", "fpr"):
            m, h = mean_ci(g[k])
            row[k] = m
            row[f"{k} ±95%"] = h
        out.append(row)
    return pd.DataFrame(out)


def run(*, quick: bool = False, seed: int = 0, seeds: int | None = None, out_root: Path | None = None,
        progress=None) -> Path:
    """Run the ablation; return the Markdown file written under ``results/ablation``."""
    step = progress or (lambda msg: log.info("%s", msg))
    out = Output("ablation", **({"root": out_root} if out_root else {}))
    n_seeds = seeds or (1 if quick else 2)
    seed_list = [seed + i for i in range(n_seeds)]
    train, test = held_out()
    epochs = scorer_epochs(quick)
    rows = []
    with tempfile.TemporaryDirectory(prefix="marlids-exp-") as tmp:
        base = mappo_args(quick, seed, Path(tmp), exp_name="ablation")
        out.config(seed, quick, {"train_fraction": TRAIN_FRACTION, "seeds": seed_list, "feature_sets": FEATURE_SETS,
                                 "algorithms": ALGORITHMS, "scorer_epochs": epochs, "seq_len": 10, "mappo": base},
                   {s: load_source(s).citation for s in ("site_a", "site_b")})
        for s in seed_list:
            step(f"seed {s}: training the temporal scorer")
            scorer = ScorerDetector(seed=s, epochs=epochs).fit(train)
            variants = [("features", fs, {}) for fs in FEATURE_SETS]
            variants += [("algorithm", alg, ov) for alg, ov in ALGORITHMS.items() if alg != "MAPPO"]
            full_mappo = None
            for kind, name, ov in variants:
                step(f"seed {s}: {kind} {name}")
                args = mappo_args(quick, s, Path(tmp), exp_name="ablation", **ov)
                det = MarlDetector(args, scorer, feature_set=name if kind == "features" else "full", name=name)
                det.fit(train)
                res = evaluate_sites(det, test)
                rows += [{"study": kind, "variant": name, "seed": s, **r} for r in res]
                if kind == "features" and name == "full":
                    full_mappo = res
            rows += [{"study": "algorithm", "variant": "MAPPO", "seed": s, **r} for r in full_mappo]
            rows += [{"study": "reference", "variant": "temporal scorer alone", "seed": s, **r}
                     for r in evaluate_sites(scorer, test)]
    df = pd.DataFrame(rows)
    out.table("per_seed", df, "Every variant, seed and held-out site")
    both = df[df["site"] == "both"]
    feats = summarise(both[both["study"].isin(["features", "reference"])], ["variant"])
    algs = summarise(both[both["study"] == "algorithm"], ["variant"])
    out.table("features", feats, "Feature-set ablation (MAPPO), held-out windows of both sites: mean over seeds")
    out.table("algorithms", algs, "MAPPO vs IPPO vs single-agent PPO (full Observation), held-out: mean over seeds")
    _plot(out, feats, algs)
    out.metrics = {f"{r['study']}|{r['variant']}|{r['seed']}|{r['site']}|{k}": round(float(r[k]), 6)
                   for r in rows for k in ("precision", "recall", "f1", "fpr")}
    out.text(f"Caveats: {n_seeds} seed(s); the held-out part holds {int(test.frame['label'].sum())} attack windows "
             f"of {len(test.frame)}, including two attacks no training window shows, so a few windows move F1 by "
             "several points. Zeroing a part keeps the network's input width, so every variant has the same "
             "capacity.")
    return out.finish("Ablations: Observation parts and MARL algorithms", __doc__.split("\n\n", 1)[1].strip())


def _plot(out: Output, feats: pd.DataFrame, algs: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, df, title in ((axes[0], feats, "Observation parts (MAPPO)"), (axes[1], algs, "algorithms (full)")):
        err = np.nan_to_num(df["f1 ±95%"].to_numpy(float))
        ax.bar(range(len(df)), df["f1"], yerr=err, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(df)), df["variant"], rotation=20, ha="right")
        ax.set_title(title)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("held-out per-window F1")
    out.figure(fig, "ablation_f1", "Held-out per-window F1 (mean over seeds, 95 % interval)")

