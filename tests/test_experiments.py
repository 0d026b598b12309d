"""marlids experiment: metric helpers, drift bookkeeping, and every experiment's quick mode run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.common import markdown_table, mean_ci, window_metrics
from experiments.detectors import FEATURE_SETS, obs_mask

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("generalization", "drift", "selfplay", "ablation")


def test_window_metrics_counts_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    a = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    m = window_metrics(y, a)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["fpr"] == pytest.approx(1 / 5)
    assert (m["windows"], m["malicious"]) == (8, 3)
    assert window_metrics(np.zeros(4), np.zeros(4))["f1"] == 0.0  # never NaN


def test_mean_ci_matches_student_t():
    m, h = mean_ci([0.5, 0.7, 0.6])
    assert m == pytest.approx(0.6)
    assert h == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert np.isnan(mean_ci([0.4])[1])


def test_markdown_table_formats_floats_and_nan():
    md = markdown_table(pd.DataFrame({"a": ["x"], "b": [0.12345], "c": [float("nan")]}))
    assert md.splitlines() == ["| a | b | c |", "|---|---|---|", "| x | 0.123 | – |"]


def test_feature_set_masks_nest_and_full_keeps_everything():
    full = obs_mask("full")
    assert full.all()
    from edge.features import N_FEATURES

    assert obs_mask("stats").sum() == 2 * N_FEATURES  # standardised and absolute levels
    assert obs_mask("stats+minilm").sum() == 2 * N_FEATURES + 384
    assert (obs_mask("stats+score") <= full).all() and set(FEATURE_SETS) == {"stats", "stats+minilm", "stats+score",
                                                                             "full"}
    with pytest.raises(ValueError, match="feature set"):
        obs_mask("everything")


def test_prequential_f1_restarts_at_drift_points():
    from experiments.drift import adaptation_times, prequential_f1

    y = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 1])
    a = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 1])
    seg = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    c = prequential_f1(y, a, seg, width=100)
    assert np.isnan(c[:2]).all() and c[2] == 1.0
    assert np.isnan(c[4:6]).all()  # the window restarted: fewer than 3 attack windows after the drift
    assert c[6] == 0.0  # nothing of segment 0 counts after the drift
    assert c[9] == pytest.approx(window_metrics(y[4:], a[4:])["f1"])
    rows = adaptation_times(c, y, a, seg)
    assert rows[0]["pre-drift F1"] == 1.0
    assert rows[0]["windows to recover"] == "not recovered"  # at most 0.57 < 0.9 · 1.0
    ones = np.ones_like(a)
    rows = adaptation_times(prequential_f1(y, ones, seg, width=100), y, ones, seg)
    assert rows[0]["windows to recover"] == 2  # F1 1.0 ≥ 0.9 · 0.857 at the 3rd attack window


def test_merge_interleaves_by_relative_position():
    from experiments.data import Source
    from experiments.drift import merge

    def src(name, ts):
        f = pd.DataFrame({"t_start": ts, "device_id": [f"{name}/d"] * len(ts), "label": 0})
        return Source(name, f, np.zeros((len(ts), 384), np.float32), "")

    m = merge([src("a", [0.0, 10.0, 20.0]), src("b", [1000.0, 1001.0])], "ab")
    assert m.frame["device_id"].tolist() == ["a/d", "b/d", "a/d", "a/d", "b/d"]


def test_league_mapping_alternates_in_episode_order_and_attacker_only():
    from training.mappo.callbacks import LeagueMapping
    from training.mappo.config import ATTACKER, ATTACKER_LEAGUE, DEFENDER, DEFENDER_LEAGUE

    class Ep:
        def __init__(self, i):
            self.id_ = i

    m = LeagueMapping(self_play=True)
    got = [(m("defender_0", Ep(e)), m("attacker_0", Ep(e))) for e in ("u1", "u2", "u3")]
    assert got == [(DEFENDER, ATTACKER_LEAGUE), (DEFENDER_LEAGUE, ATTACKER), (DEFENDER, ATTACKER_LEAGUE)]
    assert m("defender_1", Ep("u2")) == DEFENDER_LEAGUE  # same episode, same mode
    assert LeagueMapping(self_play=False)("defender_0", Ep("x")) == DEFENDER
    assert {LeagueMapping(False, attacker_only=True)("attacker_0", Ep(i)) for i in "abc"} == {ATTACKER}


def test_league_mapping_random_attacker_share_is_spread_evenly():
    from training.mappo.callbacks import LeagueMapping
    from training.mappo.config import ATTACKER, ATTACKER_LEAGUE, ATTACKER_RANDOM

    class Ep:
        def __init__(self, i):
            self.id_ = i

    m = LeagueMapping(self_play=True, random_attacker_share=0.5)
    got = [m("attacker_0", Ep(i)) for i in range(8)]
    # even episodes train the defender (half of them against the random attacker), odd ones the attacker
    assert got == [ATTACKER_LEAGUE, ATTACKER, ATTACKER_RANDOM, ATTACKER, ATTACKER_LEAGUE, ATTACKER,
                   ATTACKER_RANDOM, ATTACKER]
    with pytest.raises(ValueError, match="random_attacker_share"):
        LeagueMapping(True, random_attacker_share=1.5)


def test_attacker_only_training_needs_a_defender():
    from training.mappo.config import MappoArgs
    from training.mappo.train import train

    with pytest.raises(ValueError, match="initial_state"):
        train(MappoArgs(attacker_only=True))


def test_cold_cache_is_written_then_read_back(tmp_path: Path, monkeypatch):
    """A first load labels and embeds the source and stores it (no temporary file left); the next one reads it."""
    from experiments.data import load_source

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = load_source("site_b")
    files = sorted(p.name for p in (tmp_path / "marlids" / "windows").iterdir())
    assert [f.rsplit(".", 1)[1] for f in files] == ["npy", "parquet"], files
    again = load_source("site_b")
    pd.testing.assert_frame_equal(first.frame, again.frame, check_dtype=False)  # parquet reads text as str
    np.testing.assert_array_equal(first.embeddings, again.embeddings)


def test_folds_hold_every_network_out_once():
    from experiments.generalization import make_folds

    nets = [f"n{i}" for i in range(11)]
    folds = make_folds(nets, 3, seed=0)
    assert sorted(n for f in folds for n in f) == sorted(nets) and {len(f) for f in folds} == {3, 4}
    assert make_folds(nets, 3, seed=0) == folds and make_folds(nets, 3, seed=1) != folds
    with pytest.raises(ValueError, match="cannot make"):
        make_folds(["a"], 2, seed=0)


def test_a_run_that_stops_early_leaves_the_previous_results(tmp_path):
    from experiments.common import Output

    old = tmp_path / "generalization"
    old.mkdir()
    (old / "overall.csv").write_text("previous run")
    out = Output("generalization", root=tmp_path)
    out.text("half-way")  # the run fails here: nothing is finished
    assert (old / "overall.csv").read_text() == "previous run"
    out = Output("generalization", root=tmp_path)  # the next run starts from a clean staging folder
    out.table("overall", pd.DataFrame({"f1": [0.9]}), "Overall")
    md = out.finish("Generalization", "intro")
    assert md == old / "generalization.md" and md.is_file() and out.dir == old
    assert (old / "overall.csv").read_text().startswith("f1") and not list(tmp_path.glob(".*partial"))


def test_public_folds_hold_every_site_out_once_stratified_by_data_set():
    from experiments.generalization import _mix_benign, public_folds

    sites = [f"sentinel/t{i}" for i in range(23)] + ["oconnor/a", "oconnor/b", "oconnor/c", "kitsune/mirai2000"]
    folds = public_folds(sites, 3, seed=0)
    assert sorted(s for f in folds for s in f) == sorted(sites)
    assert {sum(s.startswith("sentinel/") for s in f) for f in folds} == {7, 8}  # 23 types: 8 + 8 + 7
    assert all(sum(s.startswith("oconnor/") for s in f) == 1 for f in folds)  # one O'Connor capture per fold
    assert public_folds(sites, 3, seed=0) == folds and public_folds(sites, 3, seed=1) != folds
    with pytest.raises(ValueError, match="public folds"):
        public_folds(sites, 1, seed=0)
    assert _mix_benign("mix_lockly_bacnet") == "oconnor/lockly-hub-01"


def test_report_names_the_public_split_of_a_run():
    from experiments.report import _flags

    full = {"mode": "full", "settings": {"seeds": [0, 1, 2], "folds": 3,
                                         "families_left_out": ["scan", "flood", "brute_force", "app_dos", "arp_spoof"]}}
    assert _flags("generalization", full) == " --public-split dataset"  # recorded before the option: by data set
    full["settings"]["public_split"] = "sites"
    assert _flags("generalization", full) == ""
    full["settings"] |= {"seeds": [0, 1], "families_left_out": ["scan"]}
    assert _flags("generalization", full) == " --seeds 2 --families scan"
    full["settings"]["jobs"] = 2
    assert _flags("generalization", full) == " --seeds 2 --families scan --jobs 2"


def test_unknown_public_split_is_refused():
    from experiments.generalization import run

    with pytest.raises(ValueError, match="public_split"):
        run(quick=True, public_split="random")
    with pytest.raises(ValueError, match="jobs"):
        run(quick=True, jobs=0)


def test_mappo_overrides_are_typed_and_checked_like_the_train_command():
    from experiments.generalization import BUNDLE_SETTINGS, _mappo, mappo_overrides

    got = mappo_overrides(["minibatch_size=1000", "num-epochs=2", "lr=2e-3", "self_play=false"])
    assert got == {"minibatch_size": 1000, "num_epochs": 2, "lr": 0.002, "self_play": False}
    args = _mappo(False, 3, Path("/tmp"), "x", **got)
    assert (args.minibatch_size, args.num_epochs, args.lr, args.self_play, args.seed) == (1000, 2, 0.002, False, 3)
    assert args.train_batch_size == BUNDLE_SETTINGS["train_batch_size"]  # the rest stays the bundle's
    for bad, why in [("minibatch_size", "KEY=VALUE"), ("bogus=1", "not a MAPPO setting"),
                     ("seed=4", "not a MAPPO setting"), ("scorer=/tmp/s", "not a MAPPO setting"),
                     ("lr=fast", "type float"), ("num_epochs=1.5", "type int"), ("self_play=maybe", "type bool"),
                     ("minibatch_size=0", "outside")]:
        with pytest.raises(ValueError, match=why):
            mappo_overrides([bad])


def test_leaving_a_family_out_drops_only_its_attack_windows():
    from experiments.data import Source
    from experiments.generalization import _without_family

    f = pd.DataFrame({"label": [0, 1, 1, 1, 0], "technique_id": ["", "T1046", "T1110.001", "T1046", ""]})
    out = _without_family(Source("s", f, np.zeros((5, 384), np.float32), ""), "scan")
    assert out.frame["technique_id"].tolist() == ["", "T1110.001", ""] and len(out.embeddings) == 3


def test_range_networks_group_the_recordings_of_one_network():
    from experiments.data import range_networks

    nets = range_networks()
    assert [p.name for p in nets["site_a"]] == ["site_a_train.pcap", "site_a.pcap"]
    assert all(p.with_name(p.stem + ".groundtruth.csv").is_file() for ps in nets.values() for p in ps)


def test_report_needs_results(tmp_path: Path):
    from experiments.report import build

    with pytest.raises(FileNotFoundError, match="no experiment results"):
        build(tmp_path / "results", tmp_path / "results.md")


# ---------------------------------------------------------------------------------------------------------
# Quick mode, twice per experiment (two processes side by side): identical metrics, every output file.


def _launch(name: str, out: Path, *options: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}  # the CLI must fix it itself
    return subprocess.Popen([sys.executable, "-m", "marlids", "experiment", name, "--quick", "--seed", "0",
                             "--out", str(out), *options], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


#: A third generalization run beside the pair: two seeds in two worker processes (``--jobs``), no
#: leave-technique-out, its fold models kept (``--keep-models`` + the run's folder); its seed 0 must decide every
#: window as the serial runs do.
PARALLEL = ("--seeds", "2", "--jobs", "2", "--families", "none", "--keep-models")


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    from experiments.data import SOURCE_NAMES, load_source, public_benign_sites, range_networks

    # fill the window cache once, before the parallel runs
    for s in [*SOURCE_NAMES, *(f"range/{n}" for n in range_networks()), *public_benign_sites()]:
        if s != "oconnor_benign" and not s.startswith("oconnor/") or s == "oconnor/blink-cam-01":
            load_source(s)
    root = tmp_path_factory.mktemp("experiments")
    runs = {}
    for name in EXPERIMENTS:
        a, b, c = root / "a", root / "b", root / "c"
        procs = [_launch(name, a), _launch(name, b)] + ([_launch(name, c, *PARALLEL, str(c / "models"))]
                                                        if name == "generalization" else [])
        outs = [p.communicate(timeout=900)[0] for p in procs]
        for p, o in zip(procs, outs):
            assert p.returncode == 0, f"marlids experiment {name} --quick failed:\n{o[-4000:]}"
        runs[name] = (a / name, b / name)
        if name == "generalization":
            runs["generalization --jobs 2"] = (c / name,)
    return runs


# The module fixture (a cold window cache filled, then four experiments run twice side by side) counts in the
# first test's time: pytest's default 900 s is too little for it on a slow 2-core machine.
@pytest.mark.slow
@pytest.mark.needs_shared
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_quick_mode_is_deterministic_and_writes_everything(quick_runs, name: str):
    a, b = quick_runs[name]
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma and ma == mb, "rerunning quick mode with the same seed changed the metrics"
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["seed"] == 0 and cfg["mode"] == "quick" and cfg["sources"]
    assert list(a.glob("*.csv")) and list(a.glob("*.png")) and (a / f"{name}.md").is_file()
    # wall time is recorded, not judged here: two runs share 2 cores; benchmarks/bench_experiments.py times the
    # 5-minute quick-mode budget on an unshared machine
    assert json.loads((a / "runtime.json").read_text())["seconds"] > 0
    md = (a / f"{name}.md").read_text()
    for csv in a.glob("*.csv"):
        if csv.name != "stream.csv":
            assert f"`{csv.name}`" in md
    values = [v for v in ma.values() if isinstance(v, float)]
    assert all(0.0 <= v <= 1.0 for v in values) and len(set(values)) > 1  # real, varied metrics


@pytest.mark.slow
@pytest.mark.needs_shared
@pytest.mark.timeout(2400)
def test_seeds_in_worker_processes_decide_as_one_process_does(quick_runs):
    serial, (parallel,) = quick_runs["generalization"][0], quick_runs["generalization --jobs 2"]
    a = pd.read_csv(serial / "per_window.csv.gz")
    c = pd.read_csv(parallel / "per_window.csv.gz")
    assert sorted(c["seed"].unique()) == [0, 1] and json.loads((parallel / "config.json").read_text())[
        "settings"]["jobs"] == 2
    pd.testing.assert_frame_equal(c[c["seed"] == 0].reset_index(drop=True), a)
    assert not c[c["seed"] == 1].empty and not (parallel / "leave_technique_out.csv").exists()


@pytest.mark.slow
@pytest.mark.needs_shared
@pytest.mark.timeout(2400)
def test_kept_fold_models_load_and_name_what_they_never_saw(quick_runs):
    from edge.observation import FusionPipeline
    from fog.policy import DefenderActor

    (parallel,) = quick_runs["generalization --jobs 2"]
    kept = parallel.parent / "models"
    assert sorted(p.name for p in kept.iterdir()) == ["seed0_fold0", "seed0_fold1", "seed1_fold0", "seed1_fold1"]
    per_network = pd.read_csv(parallel / "per_network.csv")
    for d in kept.iterdir():
        held = json.loads((d / "held_out.json").read_text())
        tested = per_network[(per_network["seed"] == held["seed"]) & (per_network["fold"] == held["fold"])]
        assert set(tested["network"]) >= set(held["networks"]) and held["public_sites"]
        DefenderActor.load(d)
        assert FusionPipeline.saved_alert_quantile(d) is not None  # the fold's own temporal scorer came along


@pytest.mark.slow
@pytest.mark.needs_shared
@pytest.mark.timeout(2400)
def test_report_is_generated_from_the_results(quick_runs, tmp_path: Path):
    from experiments.report import build

    results = quick_runs["generalization"][0].parent
    out = build(results, tmp_path / "docs" / "results.md")
    text = out.read_text()
    overall = pd.read_csv(results / "generalization" / "overall.csv")
    row = overall[overall["detector"] == "RandomForest"].iloc[0]
    assert (f"| RandomForest | {row['windows']} | {row['malicious']} | {row['precision']:.3f} | "
            f"{row['precision ±95%']:.3f} | {row['recall']:.3f} |") in text.replace("| – |", "| nan |") or \
        f"| RandomForest | {row['windows']} | {row['malicious']} | {row['precision']:.3f} |" in text
    assert "quick-mode runs" in text and "IoT Sentinel" in text and "--seed 0" in text
    for img in ("f1_per_test_set.png", "prequential_f1.png"):
        ref = next(line for line in text.splitlines() if img in line)
        rel = ref.split("](", 1)[1].rstrip(")")
        assert (out.parent / rel).is_file()
