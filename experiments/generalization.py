"""``marlids experiment generalization`` — leave sites out: how detection holds on networks never trained on.

A user installs marlids on *their* network. This experiment measures exactly that: the recorded range
networks are split into folds; for each fold every detector is trained on the other networks (and on one
group of benign public captures) and tested on the fold's networks, which it has never seen, after each
site's 60 s grace period (the deployment path: site baseline first, then decisions, the baseline learning
from windows that raised no alert). Every network is held out once per seed; metrics pool the held-out
windows of all folds, and the 95 % intervals are Student-t over seeds (the fold assignment is reshuffled
with each seed).

* **Benign public sites** (``--public-split``). ``sites`` (default): the public sites (23 IoT Sentinel device
  types, 3 O'Connor captures, the Kitsune capture) are dealt into as many folds as the range networks,
  stratified by data set and reshuffled with each seed (:func:`public_folds`); fold *i* trains on the public
  sites outside public fold *i* and is tested on those in it — a new site's kind of traffic (a device's set-up,
  a hub's keepalives) may have been seen on *other* devices, as it is for the bundled defender, which trains
  on all of them. ``dataset``: the IoT Sentinel types form one group, the O'Connor and Kitsune captures the
  other; even folds train with the first and are tested on the second, odd folds the reverse — harsher: a
  model tested on a device set-up never saw any set-up capture. Either way every public capture is judged by
  models that never saw it: alert rate and highest level.
* **Public mixes.** StopDDoS attacks merged into an O'Connor capture (amplification T1498.002 is a technique
  no range network records) are tested in the folds that did not train on that capture.
* **Leave-technique-out.** For each technique family, the defender and the scorer are trained on fold 0's
  training networks (first seed) without that family's windows; its recall on fold 0's held-out networks
  is reported.

Detectors: the MAPPO defender (fused Observation, site baselines; the fog's decision rule with its
evidence gate, :mod:`fog.alerts`; the same actor without the gate; and the actor or the scorer, an alert
where either would alert), the temporal scorer alone (site
baselines), a RandomForest on the raw window statistics (the CICFlowMeter + scikit-learn notebook) and on the
site-standardised ones, and a Kitsune-style autoencoder ensemble trained, as Kitsune is deployed, on each
test site's own grace period (Mirsky et al., NDSS 2018).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.common import Output, mappo_args, mean_ci, scorer_epochs, window_metrics
from experiments.data import MIXES, concat, load_source, public_benign_sites, range_networks
from experiments.detectors import (
    GRACE_S,
    KitsuneGraceDetector,
    MarlDetector,
    RandomForestDetector,
    ScorerDetector,
    grace_mask,
)
from fog.attacks import ATTACK_CLASSES, technique_class

log = logging.getLogger(__name__)

#: MAPPO settings of the full mode: those of the bundled defender (models/README.md).
BUNDLE_SETTINGS = dict(iterations=20, train_batch_size=4000, minibatch_size=250, num_epochs=10, lr=1e-3,
                       attack_budget=6, n_defenders=4, num_envs_per_env_runner=32, random_attacker_share=0.5,
                       class_bonus=3.0, max_steps=200, snapshot_every=5)

#: Technique families (fog.attacks classes) of the leave-technique-out runs.
FAMILIES: tuple[str, ...] = ("scan", "flood", "brute_force", "app_dos", "arp_spoof")
#: Seeds, folds and leave-technique-out families when not given, per mode (read by ``experiments.report``).
DEFAULTS = {"quick": {"seeds": 1, "folds": 2, "families": FAMILIES[:1]},
            "full": {"seeds": 3, "folds": 3, "families": FAMILIES}}


def make_folds(networks: list[str], k: int, seed: int) -> list[list[str]]:
    """Split ``networks`` into ``k`` folds of nearly equal size, shuffled with ``seed``.

    Raises
    ------
    ValueError
        If there are fewer networks than folds or ``k`` < 2.
    """
    if k < 2 or len(networks) < k:
        raise ValueError(f"{len(networks)} networks cannot make {k} folds (need k >= 2 and one network per fold)")
    order = list(np.random.default_rng(seed).permutation(sorted(networks)))
    return [sorted(str(n) for n in order[i::k]) for i in range(k)]


def _family(tech: np.ndarray) -> np.ndarray:
    return np.array([ATTACK_CLASSES[technique_class(t)] if t else "benign" for t in tech], dtype=object)


def _without_family(src, family: str):
    from experiments.data import subset

    f = src.frame
    drop = (f["label"] == 1).to_numpy() & (_family(f["technique_id"].fillna("").astype(str).to_numpy()) == family)
    return subset(src, ~drop, f"{src.name}-{family}")


def _mappo(quick: bool, seed: int, out: Path, name: str, **overrides):
    return mappo_args(quick, seed, out, exp_name=name, **{**({} if quick else BUNDLE_SETTINGS), **overrides})


#: Ways to hold public benign sites out (module docstring).
PUBLIC_SPLITS = ("sites", "dataset")


def _public_groups() -> tuple[list[str], list[str]]:
    pub = public_benign_sites()
    return [s for s in pub if s.startswith("sentinel/")], [s for s in pub if not s.startswith("sentinel/")]


#: MappoArgs fields an experiment sets itself (``--mappo`` may not).
_FIXED_MAPPO_FIELDS = frozenset({"seed", "out_dir", "exp_name", "data", "benign", "checkpoint_every", "resume",
                                 "scorer", "scorer_epochs", "scorer_seq_len", "train_fraction", "attacker_only"})


def mappo_overrides(items: Sequence[str]) -> dict:
    """Parse ``KEY=VALUE`` items into :class:`training.mappo.config.MappoArgs` fields, each value converted to the
    field's type (int, float, bool as true/false/1/0, or str).

    Raises
    ------
    ValueError
        For an item without ``=``, an unknown field, a field the experiment sets itself (seed, data, the
        scorer, …), a value that is not of the field's type or outside the range ``marlids train mappo``
        accepts for it.
    """
    import dataclasses
    import typing

    from edge.settings import CLI_KEY
    from training.mappo.config import MappoArgs

    hints = typing.get_type_hints(MappoArgs)
    fields = {f.name: f for f in dataclasses.fields(MappoArgs) if f.name not in _FIXED_MAPPO_FIELDS}
    names = set(fields)
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip().replace("-", "_"), text.strip()
        if not sep or not key:
            raise ValueError(f"--mappo {item!r}: expected KEY=VALUE, e.g. minibatch_size=1000")
        if key not in names:
            raise ValueError(f"--mappo {key!r}: not a MAPPO setting an experiment may change; choose from "
                             f"{', '.join(sorted(names))}")
        kind = hints[key]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                out[key] = text.lower() in ("true", "1")
            elif kind in (int, float, str):
                out[key] = kind(text)
            else:
                raise ValueError(f"a {kind} setting")
        except ValueError:
            raise ValueError(f"--mappo {key}={text!r}: expected a value of type {getattr(kind, '__name__', kind)}") \
                from None
        bounds = fields[key].metadata.get(CLI_KEY, {}).get("kw", {})
        lo, hi = bounds.get("min"), bounds.get("max")
        if kind is not bool and kind is not str and ((lo is not None and out[key] < lo) or (hi is not None and out[key] > hi)):
            raise ValueError(f"--mappo {key}={text}: outside [{lo if lo is not None else '-inf'}, "
                             f"{hi if hi is not None else 'inf'}]")
    return out


def public_folds(sites: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Deal public sites (``"<data set>/<name>"``) into ``k`` folds, stratified by data set: each data set's
    sites are shuffled with ``seed`` and dealt in turn, continuing where the previous data set stopped, so
    every fold holds about ``1/k`` of each data set.

    Raises
    ------
    ValueError
        If ``k`` < 2.
    """
    if k < 2:
        raise ValueError(f"cannot make {k} public folds (need k >= 2)")
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    i = 0
    for ds in sorted({s.split("/", 1)[0] for s in sites}):
        for site in rng.permutation(sorted(s for s in sites if s.split("/", 1)[0] == ds)):
            folds[i % k].append(str(site))
            i += 1
    return [sorted(f) for f in folds]


def _mix_benign(mix: str) -> str:
    """The public site whose benign traffic ``mix`` carries (``oconnor/<capture>``)."""
    return "oconnor/" + Path(MIXES[mix][1]).stem


@dataclass(frozen=True)
class _Plan:
    """What every seed of one run shares. Plain names and settings only: a worker process (``--jobs``) reloads
    the windows from them (:func:`_load`)."""

    quick: bool
    first_seed: int
    k: int
    nets: tuple[str, ...]
    group_a: tuple[str, ...]
    group_b: tuple[str, ...]
    pub_folds: dict | None  # seed → public folds (``--public-split sites``); None: the data-set groups alternate
    families: tuple[str, ...]
    epochs: int
    extra: dict
    keep_models: str | None = None  # folder the fold models are copied into (:func:`_keep`)


def _keep(plan: _Plan, mappo: MarlDetector, name: str, **held) -> None:
    """Copy a trained fold model (the defender's policy folder: actor, fusion pipeline, temporal scorer; the
    layout ``marlids fog detect --policy`` reads) to ``<keep_models>/<name>``, with ``held_out.json`` naming
    what it never trained on."""
    if not plan.keep_models:
        return
    import json
    import shutil

    dest = Path(plan.keep_models) / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(mappo.policy_dir_, dest)
    (dest / "held_out.json").write_text(json.dumps(held, indent=1))


def _load(plan: _Plan) -> tuple[dict, dict, dict]:
    """The plan's labeled windows: range networks, public benign sites and public mixes (from the window cache)."""
    net_src = {n: load_source(f"range/{n}") for n in plan.nets}
    pub_src = {s: load_source(s) for s in plan.group_a + plan.group_b}
    mix_src = {m: load_source(m) for m in MIXES} if (plan.group_b and not plan.quick) else {}
    return net_src, pub_src, mix_src


def _run_seed(plan: _Plan, data: tuple[dict, dict, dict], s: int, tmp: Path, step) -> dict[str, list]:
    """Every fold of seed ``s`` (and, for the plan's first seed, the leave-technique-out runs): the rows of
    ``per_window`` (DataFrames), ``per_site``, ``public`` and ``loto`` (dicts). Depends on ``s`` and the plan
    only, so seeds give the same rows whether run one after another or in parallel processes."""
    net_src, pub_src, mix_src = data
    nets, k, epochs, extra = list(plan.nets), plan.k, plan.epochs, plan.extra
    group_a, group_b = list(plan.group_a), list(plan.group_b)
    rows: dict[str, list] = {"per_window": [], "per_site": [], "public": [], "loto": []}
    fold_nets = make_folds(nets, k, s)
    fold_pub = plan.pub_folds[s] if plan.pub_folds else None
    for fi, held in enumerate(fold_nets):
        if fold_pub is None:
            train_pub, test_pub = (group_a, group_b) if fi % 2 == 0 else (group_b, group_a)
        else:
            test_pub = fold_pub[fi]
            train_pub = [p for p in group_a + group_b if p not in test_pub]
        train = concat([net_src[n] for n in sorted(nets) if n not in held] + [pub_src[p] for p in train_pub])
        step(f"seed {s} fold {fi + 1}/{k}: held out {', '.join(held)}; training the temporal scorer")
        scorer = ScorerDetector(seed=s, epochs=epochs).fit(train)
        step(f"seed {s} fold {fi + 1}/{k}: RandomForests; MAPPO")
        args = _mappo(plan.quick, s, tmp, "generalization", **extra)
        mappo = MarlDetector(args, scorer).fit(train)
        _keep(plan, mappo, f"seed{s}_fold{fi}", seed=s, fold=fi, networks=list(held), public_sites=list(test_pub))
        dets = [mappo, mappo.without_evidence_gate(), mappo.with_scorer_alerts(),
                scorer, RandomForestDetector(seed=s).fit(train),
                RandomForestDetector(seed=s, site_standardised=True).fit(train),
                KitsuneGraceDetector(seed=s)]
        for n in held:
            src = net_src[n]
            y = src.frame["label"].to_numpy().astype(bool)
            scored = ~grace_mask(src)
            fam = _family(src.frame["technique_id"].fillna("").astype(str).to_numpy())
            for det in dets:
                dec = det.decisions(src)
                rows["per_window"].append(pd.DataFrame({
                    "seed": s, "fold": fi, "network": n, "detector": det.name, "window": np.flatnonzero(scored),
                    "label": y[scored], "alert": dec["alert"][scored], "family": fam[scored],
                    "level": np.where(dec["alert"], dec["level"], 0)[scored]}))
                rows["per_site"].append({"seed": s, "fold": fi, "network": n, "detector": det.name,
                                         **window_metrics(y[scored], dec["alert"][scored])})
        for p in test_pub:
            src = pub_src[p]
            scored = ~grace_mask(src)
            for det in dets:
                dec = det.decisions(src)
                lv = dec["level"][scored][dec["alert"][scored]]
                rows["public"].append({"seed": s, "fold": fi, "site": p, "detector": det.name,
                                       "windows": int(scored.sum()),
                                       "alert rate": float(dec["alert"][scored].mean()) if scored.any() else float("nan"),
                                       "highest level": int(lv.max()) if len(lv) else 0,
                                       "alerts at level >= 3": int((lv >= 3).sum())})
        for m, src in mix_src.items():
            if _mix_benign(m) in test_pub:  # its benign side never trained on in this fold
                y = src.frame["label"].to_numpy().astype(bool)
                scored = ~grace_mask(src)
                for det in dets:
                    a = det.decisions(src)["alert"]
                    rows["per_site"].append({"seed": s, "fold": fi, "network": m, "detector": det.name,
                                             **window_metrics(y[scored], a[scored])})
    if s != plan.first_seed:
        return rows
    # leave one technique family out (fold 0's split of the first seed)
    held = fold_nets[0]
    pub0 = group_a if fold_pub is None else [p for p in group_a + group_b if p not in fold_pub[0]]
    base = [net_src[n] for n in sorted(nets) if n not in held] + [pub_src[p] for p in pub0]
    for family in plan.families:
        step(f"seed {s}: leave-technique-out {family}")
        train = concat([_without_family(b, family) for b in base])
        scorer = ScorerDetector(seed=s, epochs=epochs).fit(train)
        args = _mappo(plan.quick, s, tmp, f"loto_{family}", **extra)
        mappo = MarlDetector(args, scorer).fit(train)
        _keep(plan, mappo, f"seed{s}_loto_{family}", seed=s, fold=0, networks=list(held), family_left_out=family)
        dets = [mappo, mappo.without_evidence_gate(), mappo.with_scorer_alerts(), scorer]
        for n in held:
            src = net_src[n]
            fam = _family(src.frame["technique_id"].fillna("").astype(str).to_numpy())
            y = src.frame["label"].to_numpy().astype(bool)
            m = ~grace_mask(src) & y & (fam == family)
            if not m.any():
                continue
            for det in dets:
                a = det.decisions(src)["alert"]
                rows["loto"].append({"seed": s, "family": family, "network": n, "detector": det.name,
                                     "windows": int(m.sum()), "alerted": int(a[m].sum())})
    return rows


_WORKER: dict = {}  # a worker process's message queue, and its windows, loaded once for all the seeds it runs


def _init_worker(messages) -> None:
    """Start a worker process (``--jobs``): models single-threaded, progress lines to the parent's queue."""
    from training.mappo.train import single_thread

    single_thread()
    _WORKER["messages"] = messages


def _seed_worker(plan: _Plan, s: int) -> dict[str, list]:
    """Run one seed in a worker process (:func:`_run_seeds`)."""
    if _WORKER.get("plan") != plan:
        _WORKER.update(plan=plan, data=_load(plan))
    with tempfile.TemporaryDirectory(prefix=f"marlids-exp-seed{s}-") as tmp:
        return _run_seed(plan, _WORKER["data"], s, Path(tmp), _WORKER["messages"].put)


def _run_seeds(plan: _Plan, data, seeds: list[int], jobs: int, tmp: Path, step) -> list[dict[str, list]]:
    """The rows of every seed, in seed order: one after another, or ``jobs`` seeds at a time in spawned worker
    processes (each loads the windows itself and trains single-threaded, as the serial run does). The first
    seed that fails stops the others and raises its error here, with the worker's traceback as its cause."""
    if jobs <= 1 or len(seeds) == 1:
        return [_run_seed(plan, data, s, tmp, step) for s in seeds]
    import multiprocessing as mp
    import queue

    ctx = mp.get_context("spawn")  # Ray and torch's thread pools do not survive a fork
    messages = ctx.Queue()
    n = min(jobs, len(seeds))
    step(f"{len(seeds)} seeds, {n} at a time in worker processes")
    pool = ctx.Pool(n, initializer=_init_worker, initargs=(messages,))
    try:
        results = [pool.apply_async(_seed_worker, (plan, s)) for s in seeds]
        while True:
            try:
                step(messages.get(timeout=1.0))
            except queue.Empty:
                pass
            for r in results:
                if r.ready() and not r.successful():
                    r.get()  # raises the worker's error
            if all(r.ready() for r in results):
                break
        while True:
            try:
                step(messages.get_nowait())
            except queue.Empty:
                break
        rows = [r.get() for r in results]
        pool.close()
        pool.join()
        return rows
    finally:
        pool.terminate()


def run(*, quick: bool = False, seed: int = 0, seeds: int | None = None, folds: int | None = None,
        families: Sequence[str] | None = None, public_split: str = "sites", aux_coeff: float = 0.5,
        mappo: dict | None = None, jobs: int = 1, keep_models: Path | None = None, out_root: Path | None = None,
        progress=None) -> Path:
    """Run the experiment; return the Markdown file written under ``results/generalization``.

    Parameters
    ----------
    quick : bool
        CI mode: 4 networks in 2 folds, one seed, tiny training, one leave-technique-out family, a few public
        sites.
    seed : int
        First seed; ``seeds`` seeds ``seed, seed + 1, …`` are run.
    seeds, folds : int, optional
        Defaults: quick 1 seed × 2 folds; full 3 seeds × 3 folds.
    families : sequence of str, optional
        Technique families of the leave-technique-out runs (subset of :data:`FAMILIES`; empty: none).
        Default: quick ``("scan",)``, full all five.
    public_split : {"sites", "dataset"}, default "sites"
        How benign public sites are held out (module docstring).
    aux_coeff : float, default 0.5
        ``MappoArgs.aux_coeff`` of every MAPPO run (the supervised auxiliary loss, :mod:`training.mappo.learner`).
    mappo : dict, optional
        Further :class:`training.mappo.config.MappoArgs` fields of every MAPPO run, over :data:`BUNDLE_SETTINGS`
        (e.g. ``{"minibatch_size": 1000, "num_epochs": 2}``; :func:`mappo_overrides` parses them from text).
    jobs : int, default 1
        Seeds run at the same time, each in its own process on about one core (every model trains
        single-threaded, so a seed's results do not depend on ``jobs``). A process holds the windows and a local
        Ray instance: about 2.5 GiB each.
    keep_models : Path, optional
        Keep every fold's trained defender here, ``seed<s>_fold<i>/`` (and ``seed<s>_loto_<family>/``): a policy
        folder with its fusion pipeline and temporal scorer, which ``marlids fog detect --policy`` and ``marlids
        train eval --policy`` read, and ``held_out.json`` naming the networks and public sites it never trained
        on — to look at the alerts of a model on what it never saw. Default: the models are deleted.

    Raises
    ------
    FileNotFoundError
        When the range recordings are missing.
    ValueError
        With fewer range networks than folds, an unknown family, an unknown ``public_split`` or ``jobs`` < 1.
    """
    from training.mappo.train import single_thread

    if public_split not in PUBLIC_SPLITS:
        raise ValueError(f"public_split={public_split!r} is invalid: expected one of {PUBLIC_SPLITS}")
    if jobs < 1:
        raise ValueError(f"jobs={jobs} is invalid: at least one seed runs at a time")
    single_thread()  # every model single-threaded, in this process as in --jobs workers: results independent of jobs
    extra = {"aux_coeff": aux_coeff, **(mappo or {})}
    step = progress or (lambda msg: log.info("%s", msg))
    out = Output("generalization", **({"root": out_root} if out_root else {}))
    defaults = DEFAULTS["quick" if quick else "full"]
    n_seeds = seeds or defaults["seeds"]
    k = folds or defaults["folds"]
    nets = range_networks()
    if quick:  # CI: the two original sites and two more networks
        nets = dict(list(nets.items())[:4])
    if len(nets) < k:
        raise FileNotFoundError(f"only {len(nets)} range networks under data/captures: record more (training/range)")
    group_a, group_b = _public_groups()
    if quick:  # a few public sites keep CI under its budget
        group_a, group_b = group_a[:3], group_b[:1]
    if families is None:
        families = defaults["families"]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown technique families {unknown}; choose from {', '.join(FAMILIES)}")
    epochs = scorer_epochs(quick)
    # public sites held out per seed and fold (``sites``); None: the two data-set groups alternate
    pub_folds = ({s: public_folds(group_a + group_b, k, s) for s in range(seed, seed + n_seeds)}
                 if public_split == "sites" else None)
    plan = _Plan(quick=quick, first_seed=seed, k=k, nets=tuple(nets), group_a=tuple(group_a),
                 group_b=tuple(group_b), pub_folds=pub_folds, families=tuple(families), epochs=epochs, extra=extra,
                 keep_models=str(Path(keep_models).resolve()) if keep_models else None)
    step("loading labeled windows")
    data = _load(plan)
    net_src, pub_src, mix_src = data
    settings = {"folds": k, "seeds": list(range(seed, seed + n_seeds)), "grace_s": GRACE_S, "networks": sorted(nets),
                "public_split": public_split, "public_group_a": group_a, "public_group_b": group_b,
                "public_folds": pub_folds and {str(s): f for s, f in pub_folds.items()},
                "families_left_out": list(families),
                "scorer_epochs": epochs, "seq_len": 10, "jobs": jobs}
    with tempfile.TemporaryDirectory(prefix="marlids-exp-") as tmp:
        settings["mappo"] = _mappo(quick, seed, Path(tmp), "generalization", **extra)
        cites = {f"range/{n}": s.citation for n, s in net_src.items()} | {s: v.citation for s, v in pub_src.items()}
        out.config(seed, quick, settings, cites | {m: s.citation for m, s in mix_src.items()})
        per_seed = _run_seeds(plan, data, list(range(seed, seed + n_seeds)), jobs, Path(tmp), step)
    per_window, per_site, public_rows, loto_rows = ([r for rows in per_seed for r in rows[key]]
                                                    for key in ("per_window", "per_site", "public", "loto"))
    pw = pd.concat(per_window, ignore_index=True)
    # every held-out window's decision by every detector (row ``window`` of the network's window table):
    # other combinations of detectors can be scored from it without retraining
    pw.to_csv(out.dir / "per_window.csv.gz", index=False)
    overall, fam_rows = _summaries(pw)
    sites_df = pd.DataFrame(per_site)
    pub_df = pd.DataFrame(public_rows)
    pub_sum = (pub_df.groupby(["site", "detector"], sort=False)
               .agg(windows=("windows", "max"), **{"alert rate (mean over seeds)": ("alert rate", "mean"),
                                                   "lowest model": ("alert rate", "min"),
                                                   "highest model": ("alert rate", "max"),
                                                   "models": ("alert rate", "size"),
                                                   "highest level": ("highest level", "max"),
                                                   "alerts at level >= 3": ("alerts at level >= 3", "sum")})
               .reset_index()) if len(pub_df) else pub_df
    loto = pd.DataFrame(loto_rows)
    loto_sum = _loto_summary(loto)
    out.table("overall", overall, f"Per-window detection on networks never trained on, after the {GRACE_S:.0f} s "
              f"grace period: pooled over the held-out networks of all {k} folds; mean and 95 % interval over "
              f"{n_seeds} seed(s)")
    out.table("per_family_recall", fam_rows, "Recall per technique family on networks never trained on (mean and "
                                             "95 % interval over seeds)")
    out.table("alert_levels", _level_summary(pw), "Levels of the alerts on networks never trained on: share of "
              "the true and of the false alerts at each level (pooled over seeds and folds; a level above 2 needs "
              "the temporal scorer's corroboration, fog/alerts.py)")
    out.table("per_network", sites_df, "Per held-out network (and public mix), each seed and fold")
    out.table("public_benign", pub_sum, "Benign-only public captures never trained on: share of windows alerted "
                                        "after the grace period (mean over the fold models that test the capture, "
                                        "and the lowest and highest of them), highest alert level")
    if families:
        out.table("leave_technique_out", loto_sum, "Recall on a technique family no training window showed (fold "
                                                   "0's held-out networks)")
    else:
        out.text("Leave-technique-out: not run in this invocation (`--families none`).")
    _plot(out, overall)
    out.metrics = {f"{r['detector']}|{k_}": round(float(r[k_]), 6) for r in overall.to_dict("records")
                   for k_ in ("precision", "recall", "f1", "fpr", "mcc")}
    out.metrics |= {f"public|{r['detector']}|max_alert_rate": round(float(r["max alert rate"]), 6)
                    for r in _public_max(pub_df)}
    out.metrics |= {f"loto|{r['family']}|{r['detector']}|recall": round(float(r["recall"]), 6)
                    for r in loto_sum.to_dict("records")}
    out.text("Caveats: the range networks are short recordings (4–6 minutes each); every attack inside a "
             "network's first 60 s falls in its grace period and is not scored. Per-window metrics count every "
             "window of a device that talked to the attacker during an attack as malicious (the labelling rule of "
             "training/range/label.py), bystanders of a scan included. The RandomForests are supervised on the "
             "training networks' labels; the Kitsune-style ensemble learns each test site from its own grace "
             "period only (about a minute of windows), far less than Kitsune's usual grace periods.")
    return out.finish("Generalization to networks never trained on (leave sites out)",
                      __doc__.split("\n\n", 1)[1].strip())


def _summaries(pw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, fams = [], []
    for det, g in pw.groupby("detector", sort=False):
        per_seed = [window_metrics(gs["label"].to_numpy(), gs["alert"].to_numpy()) for _, gs in g.groupby("seed")]
        row = {"detector": det, "windows": per_seed[0]["windows"], "malicious": per_seed[0]["malicious"]}
        for key in ("precision", "recall", "f1", "fpr", "mcc"):
            m, h = mean_ci([p[key] for p in per_seed])
            row[key], row[f"{key} ±95%"] = m, h
        rows.append(row)
        for fam, gf in g[g["label"]].groupby("family"):
            rec = [float(gs["alert"].mean()) for _, gs in gf.groupby("seed")]
            m, h = mean_ci(rec)
            fams.append({"detector": det, "family": fam, "windows": int(len(gf) / gf["seed"].nunique()),
                         "recall": m, "recall ±95%": h})
    return pd.DataFrame(rows), pd.DataFrame(fams)


def _level_summary(pw: pd.DataFrame) -> pd.DataFrame:
    """Per detector and kind of alert (true: on a malicious window, false: on a benign one): alerts and the
    share at each level 2–4."""
    rows = []
    for det in pw["detector"].unique():
        for true in (True, False):
            lv = pw.loc[(pw["detector"] == det) & pw["alert"] & (pw["label"] == true), "level"].to_numpy()
            if len(lv):
                rows.append({"detector": det, "alerts": "true" if true else "false", "count": len(lv),
                             **{f"level {k}": float((lv == k).mean()) for k in (2, 3, 4)}})
    return pd.DataFrame(rows, columns=["detector", "alerts", "count", "level 2", "level 3", "level 4"])


def _loto_summary(loto: pd.DataFrame) -> pd.DataFrame:
    if loto.empty:
        return pd.DataFrame(columns=["family", "detector", "windows", "recall", "recall ±95%"])
    rows = []
    for (fam, det), g in loto.groupby(["family", "detector"], sort=False):
        rec = [gs["alerted"].sum() / gs["windows"].sum() for _, gs in g.groupby("seed")]
        m, h = mean_ci(rec)
        rows.append({"family": fam, "detector": det, "windows": int(g["windows"].sum() / g["seed"].nunique()),
                     "recall": m, "recall ±95%": h})
    return pd.DataFrame(rows)


def _public_max(pub: pd.DataFrame) -> list[dict]:
    if pub.empty:
        return []
    g = pub.groupby(["detector", "site"], sort=False)["alert rate"].mean().reset_index()
    return [{"detector": d, "max alert rate": float(x["alert rate"].max())} for d, x in g.groupby("detector", sort=False)]


def _plot(out: Output, overall: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(overall))
    for i, (key, label) in enumerate((("f1", "F1"), ("precision", "precision"), ("recall", "recall"))):
        err = np.nan_to_num(overall[f"{key} ±95%"].to_numpy(float), nan=0.0)
        ax.bar(x + (i - 1) * 0.27, overall[key], 0.27, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, overall["detector"], rotation=15, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("per-window, held-out networks")
    ax.legend(fontsize=8)
    ax.set_title("Networks never trained on (leave sites out)")
    out.figure(fig, "f1_per_test_set", "Per-window precision, recall and F1 on held-out networks (95 % intervals)")
