"""``marlids experiment selfplay`` — does training against a self-play attacker make the defenders robust?

Two conditions with the same settings and seeds: MAPPO with the league self-play attacker, and MAPPO
against a fixed random attacker (``--no-self-play``). Data as in the ablation: both range sites, the
earlier 70 % of attack episodes trains, the later part is held out. Each trained defender is measured

* **on the held-out captures** — per-window precision, recall, F1, FPR of the greedy actor;
* **against an adaptive attacker** — a fresh PPO attacker trained from scratch (RLlib, attacker-only
  mode: the defender is frozen) to exploit that defender on the *held-out* traces; reported: its
  success rate (share of the attack windows it causes that go undetected), averaged over its last
  three training iterations, so lower is more robust.

The robustness gain is the per-seed paired difference (self-play − no self-play) with a 95 %
Student-t interval over seeds.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.ablation import TRAIN_FRACTION, held_out
from experiments.common import Output, mappo_args, mean_ci, scorer_epochs, window_metrics
from experiments.data import load_source
from experiments.detectors import MarlDetector, ScorerDetector, grace_mask

log = logging.getLogger(__name__)


def adaptive_attack(det: MarlDetector, test, iterations: int) -> dict[str, float]:
    """Train a PPO attacker against the frozen ``det`` on ``test``'s traces; mean of the last 3 iterations
    of ``attacker_success_rate`` and of the defenders' recall and FPR in those episodes."""
    from fog.traces import TraceSet
    from training.mappo.train import train

    traces = TraceSet.from_frame(test.frame.reset_index(drop=True), det.observations(test))
    # Same n_defenders as the trained module (the critic's input width depends on it).
    args = replace(det.args, attacker_only=True, iterations=iterations, exp_name="exploiter")
    hist: list[dict] = []
    train(args, on_iteration=lambda it, m: hist.append(m), prepared=(det.pipe_, traces), initial_state=det.state_)
    last = hist[-3:]
    return {"attacker success": float(np.mean([m["detection/attacker_success_rate"] for m in last])),
            "recall vs adaptive": float(np.mean([m["detection/recall"] for m in last])),
            "FPR vs adaptive": float(np.mean([m["detection/fpr"] for m in last]))}


def run(*, quick: bool = False, seed: int = 0, seeds: int | None = None, out_root: Path | None = None,
        progress=None) -> Path:
    """Run the experiment; return the Markdown file written under ``results/selfplay``."""
    step = progress or (lambda msg: log.info("%s", msg))
    out = Output("selfplay", **({"root": out_root} if out_root else {}))
    n_seeds = seeds or (2 if quick else 3)
    seed_list = [seed + i for i in range(n_seeds)]
    exploit_iters = 4 if quick else 15
    train, test = held_out()
    epochs = scorer_epochs(quick)
    rows = []
    with tempfile.TemporaryDirectory(prefix="marlids-exp-") as tmp:
        out.config(seed, quick, {"train_fraction": TRAIN_FRACTION, "seeds": seed_list, "scorer_epochs": epochs,
                                 "adaptive_attacker_iterations": exploit_iters,
                                 "mappo": mappo_args(quick, seed, Path(tmp))},
                   {s: load_source(s).citation for s in ("site_a", "site_b")})
        for s in seed_list:
            step(f"seed {s}: training the temporal scorer")
            scorer = ScorerDetector(seed=s, epochs=epochs).fit(train)
            for cond, sp in (("self-play", True), ("no self-play", False)):
                step(f"seed {s}: MAPPO, {cond}")
                det = MarlDetector(mappo_args(quick, s, Path(tmp), exp_name="selfplay", self_play=sp), scorer,
                                   name=cond).fit(train)
                scored = ~grace_mask(test)
                held = window_metrics(test.frame["label"].to_numpy()[scored], det.alerts(test)[scored])
                step(f"seed {s}: adaptive attacker vs {cond}")
                adv = adaptive_attack(det, test, exploit_iters)
                rows.append({"condition": cond, "seed": s, **{f"held-out {k}": v for k, v in held.items()
                                                              if k in ("precision", "recall", "f1", "fpr")}, **adv})
    df = pd.DataFrame(rows)
    out.table("per_seed", df, "Per seed: held-out detection and the adaptive attacker's success")
    metrics = ["held-out f1", "held-out recall", "held-out fpr", "attacker success", "recall vs adaptive"]
    summ = []
    for cond, g in df.groupby("condition", sort=False):
        row = {"condition": cond, "seeds": len(g)}
        for k in metrics:
            row[k], row[f"{k} ±95%"] = mean_ci(g[k])
        summ.append(row)
    out.table("summary", pd.DataFrame(summ), "Mean over seeds (95 % interval)")
    piv = df.set_index(["seed", "condition"])
    gains = []
    for k, better in (("held-out f1", "higher"), ("attacker success", "lower"), ("recall vs adaptive", "higher")):
        d = [piv.loc[(s, "self-play"), k] - piv.loc[(s, "no self-play"), k] for s in seed_list]
        m, h = mean_ci(d)
        gains.append({"metric": k, "better": better, "self-play − no self-play": m, "±95%": h, "seeds": len(d)})
    gains_df = pd.DataFrame(gains)
    out.table("gain", gains_df, "Robustness gain of self-play: paired per-seed difference")
    _plot(out, df)
    out.metrics = {f"{r['condition']}|{r['seed']}|{k}": round(float(r[k]), 6) for r in rows for k in metrics}
    out.text(f"Caveats: {n_seeds} seeds, so the intervals are wide; the adaptive attacker is trained for "
             f"{exploit_iters} iterations only and on held-out traces whose attack episodes are few, so its success "
             "rate is a lower bound on what a stronger attacker achieves.")
    return out.finish("Self-play benefit", __doc__.split("\n\n", 1)[1].strip())


def _plot(out: Output, df: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, k, title in ((axes[0], "held-out f1", "held-out per-window F1 (higher is better)"),
                         (axes[1], "attacker success", "adaptive attacker success (lower is better)")):
        for i, cond in enumerate(("self-play", "no self-play")):
            v = df.loc[df["condition"] == cond, k].to_numpy(float)
            ax.scatter(np.full(len(v), i), v, alpha=0.7)
            ax.errorbar(i + 0.15, v.mean(), yerr=np.nan_to_num(mean_ci(v)[1]), fmt="o", color="k", capsize=4)
        ax.set_xticks([0, 1], ["self-play", "no self-play"])
        ax.set_xlim(-0.5, 1.5)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=9)
    out.figure(fig, "selfplay", "Per-seed points and mean with 95 % interval")
