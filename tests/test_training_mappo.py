"""MAPPO: export parity, Ray-free actor, a tiny-step training run on the bundled captures, evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from edge.observation import OBS_DIM
from fog.policy import DefenderActor, PolicyFileError
from tests.conftest import REPO


def test_exported_actor_matches_the_rllib_module(tmp_path: Path):
    from gymnasium import spaces

    from fog.attacks import ATTACK_CLASSES
    from training.mappo.module import MappoDefenderModule

    n = 3
    module = MappoDefenderModule(observation_space=spaces.Box(-10, 10, ((n + 1) * OBS_DIM,), np.float32),
                                 action_space=spaces.MultiDiscrete([5, len(ATTACK_CLASSES)]),
                                 model_config={"actor_hidden": (32, 16)})
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(64, (n + 1) * OBS_DIM)).astype(np.float32))
    want = module.forward_inference({"obs": x})["action_dist_inputs"].detach().numpy()
    module.actor.save(tmp_path / "policy")
    actor = DefenderActor.load(tmp_path / "policy")
    got = actor(x[:, :OBS_DIM]).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the critic sees every defender's Observation, the actor only its own
    v1 = module.compute_values({"obs": x})
    x2 = x.clone()
    x2[:, OBS_DIM * 2:] += 1.0
    assert not torch.allclose(v1, module.compute_values({"obs": x2}))
    np.testing.assert_allclose(module.forward_inference({"obs": x2})["action_dist_inputs"].detach().numpy(), want,
                               atol=1e-6)


def test_actor_loads_without_ray(tmp_path: Path):
    DefenderActor().save(tmp_path)
    code = ("import sys; from fog.policy import DefenderActor; a = DefenderActor.load(sys.argv[1]); "
            "import numpy as np; a.decide(np.zeros((2, a.config.obs_dim), np.float32)); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=REPO, timeout=120)


def test_corrupt_or_missing_policy_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PolicyFileError, match="no exported defender policy"):
        DefenderActor.load(tmp_path)
    DefenderActor().save(tmp_path)
    (tmp_path / "actor.pt").write_bytes(b"garbage")
    with pytest.raises(PolicyFileError, match="corrupt"):
        DefenderActor.load(tmp_path)


@pytest.mark.slow
def test_tiny_training_run_writes_metrics_checkpoint_and_policy(tmp_path: Path, bundled_capture: Path):
    from training.evaluate import evaluate
    from training.data import embed_texts, load_labeled, split_by_time
    from training.mappo.config import MappoArgs
    from training.mappo.train import train

    seen = []
    args = MappoArgs(iterations=2, train_batch_size=400, minibatch_size=200, num_epochs=1, max_steps=50,
                     snapshot_every=1, checkpoint_every=1, out_dir=str(tmp_path), num_envs_per_env_runner=2)
    final = train(args, on_iteration=lambda it, m: seen.append(m))
    assert [m["iteration"] for m in seen] == [1, 2]
    for key in ("detection/f1", "detection/fpr", "detection/attacker_success_rate", "losses/defender_entropy"):
        assert np.isfinite(seen[-1][key]), key
    assert seen[-1]["charts/defender_league_size"] == 2
    run = Path(final["run_dir"])
    assert list(run.glob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "iter_0002").is_dir()
    assert json.loads((run / "config.json").read_text())["seed"] == 0
    # the exported policy evaluates without Ray
    frame = load_labeled(sorted((REPO / "data" / "captures").glob("*.pcap")))
    _, test = split_by_time(frame, 0.7)
    res = evaluate({"MAPPO": run}, test, embed_texts(test))
    assert res[0].windows + res[0].grace_windows == len(test) and res[0].grace_windows > 0 and 0 <= res[0].f1 <= 1
    assert res[0].confusion.sum() == res[0].windows
    # a snapshot of the run exports like its last iteration (`marlids train export`)
    from training.mappo.train import export_snapshot

    snap = export_snapshot(run, 1, tmp_path / "snap1")
    assert json.loads((snap / "actor.json").read_text())["meta"]["iteration"] == 1
    assert (snap / "fusion.json").is_file() and (snap / "scorer").is_dir() == (run / "policy" / "scorer").is_dir()
    last, first = DefenderActor.load(run / "policy"), DefenderActor.load(snap)
    assert any(not torch.equal(a, b) for a, b in zip(last.state_dict().values(), first.state_dict().values()))
    same = export_snapshot(run, 2, tmp_path / "snap2")
    assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), DefenderActor.load(same).state_dict().values()))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of iteration 7 \(checkpoints: \[1, 2\]\)"):
        export_snapshot(run, 7, tmp_path / "snap7")


def test_split_command_cuts_between_attack_episodes(tmp_path: Path, bundled_capture: Path):
    """`marlids train split` writes an earlier and a later part; no attack episode straddles the cut."""
    from typer.testing import CliRunner

    from marlids.cli import app
    from training.range.label import label_capture

    labeled = tmp_path / "a.parquet"
    frame = label_capture(bundled_capture)
    frame.to_parquet(labeled, index=False)
    tr, te = tmp_path / "tr.parquet", tmp_path / "te.parquet"
    res = CliRunner().invoke(app, ["train", "split", str(labeled), "--train-out", str(tr), "--test-out", str(te)])
    assert res.exit_code == 0, res.output
    a, b = pd.read_parquet(tr), pd.read_parquet(te)
    assert len(a) + len(b) == len(frame)
    assert a["t_start"].max() < b["t_start"].min()
    assert a["label"].sum() > 0 and b["label"].sum() > 0
    # Attack episodes stay whole: malicious windows on either side of the cut are an episode gap apart.
    gap = b.loc[b["label"] == 1, "t_start"].min() - a.loc[a["label"] == 1, "t_start"].max()
    assert gap > 15.0
    res = CliRunner().invoke(app, ["train", "split", str(tmp_path / "missing.parquet"),
                                   "--train-out", str(tr), "--test-out", str(te)])
    assert res.exit_code != 0
    # --train-fraction 1.0 joins files into one training file and needs no --test-out; below 1 it does.
    both = tmp_path / "both.parquet"
    res = CliRunner().invoke(app, ["train", "split", str(tr), str(te), "--train-fraction", "1.0", "--train-out", str(both)])
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(both)) == len(frame)
    res = CliRunner().invoke(app, ["train", "split", str(labeled), "--train-out", str(both)])
    assert res.exit_code != 0 and "--test-out is needed" in str(res.exception)


def test_league_keeps_the_random_attacker_in_the_pool():
    """Frozen attackers are drawn from recent snapshots plus the random initial attacker, which never leaves."""
    from types import SimpleNamespace

    from training.mappo.callbacks import ATTACKER, ATTACKER_LEAGUE, DEFENDER, DEFENDER_LEAGUE, LeagueSelfPlay

    it = {"n": 0}
    loaded: list[dict] = []

    def module(name):
        return SimpleNamespace(get_state=lambda inference_only=False: {"module": name, "iteration": it["n"]})

    algo = SimpleNamespace(
        get_module=module,
        set_state=lambda s: loaded.append(s["learner_group"]["learner"]["rl_module"]),
        env_runner_group=SimpleNamespace(sync_weights=lambda **kw: None), learner_group=None)
    league = LeagueSelfPlay(self_play=True, snapshot_every=2, league_size=3, seed=0)
    for i in range(1, 61):
        it["n"] = i
        sizes = league.after_iteration(algo, i)
    assert sizes == {f"{DEFENDER}_league_size": 3, f"{ATTACKER}_league_size": 3}
    attackers = [s[ATTACKER_LEAGUE] for s in loaded]
    assert len(attackers) == 30
    random_draws = sum(a == {"module": ATTACKER_LEAGUE, "iteration": 2} for a in attackers)
    assert 0 < random_draws < 30  # the initial (untrained) attacker keeps being drawn, among snapshots
    assert all(s[DEFENDER_LEAGUE]["module"] == DEFENDER for s in loaded)


def test_discount_and_entropy_flags_reach_the_rllib_config(monkeypatch, tmp_path: Path):
    import gymnasium as gym
    from typer.testing import CliRunner

    import training.mappo.train as mappo_train
    from edge.observation import OBS_DIM
    from marlids.cli import app
    from training.mappo.config import build_config

    captured = {}

    def record(args, on_iteration=None):  # stands in for the (minutes-long) run; the CLI → args mapping is tested
        captured["args"] = args
        return {"run_dir": "r", "checkpoint": "c", "policy_dir": "p"}

    monkeypatch.setattr(mappo_train, "train", record)
    res = CliRunner().invoke(app, ["train", "mappo", "--gamma", "0.5", "--entropy-coeff", "0.03",
                                   "--aux-coeff", "0.25", "--iterations", "1", "--out-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    args = captured["args"]
    assert (args.gamma, args.entropy_coeff, args.aux_coeff) == (0.5, 0.03, 0.25)
    box = gym.spaces.Box(-1, 1, (OBS_DIM,))
    cfg = build_config(args, "env", lambda *a, **k: "defender",
                       {"defender": (box, gym.spaces.MultiDiscrete([5, 7])), "attacker": (box, gym.spaces.Discrete(3))})
    assert (cfg.gamma, cfg.entropy_coeff) == (0.5, 0.03)
    from training.mappo.learner import AUX_COEFF_KEY, MappoLearner

    assert cfg.learner_class is MappoLearner and cfg.learner_config_dict[AUX_COEFF_KEY] == 0.25
    bad = CliRunner().invoke(app, ["train", "mappo", "--gamma", "1.5"])
    assert bad.exit_code != 0 and "gamma" in bad.output


def test_auxiliary_loss_terms():
    """training/mappo/learner.py: BCE of P(alert) (levels ≥ 2) against the label, CE of the class logits on
    malicious steps only, both over the loss mask's steps."""
    from training.mappo.learner import auxiliary_loss

    logits = torch.zeros(4, 5 + 7)  # P(alert) = 3/5, every class 1/7
    target = torch.tensor([0.0, 2.0, 0.0, 5.0])
    bce, ce = auxiliary_loss(logits, target)
    assert bce.item() == pytest.approx(-(np.log(0.4) + np.log(0.6)) / 2, rel=1e-5)
    assert ce.item() == pytest.approx(np.log(7), rel=1e-5)
    bce, ce = auxiliary_loss(logits, target, torch.tensor([True, False, True, False]))  # benign steps only
    assert bce.item() == pytest.approx(-np.log(0.4), rel=1e-5) and ce.item() == 0.0
    sure = logits.clone()
    sure[:, 4] = 20.0  # level 4 for every step: right on the malicious ones, wrong on the benign
    sure[1, 5 + 2] = sure[3, 5 + 5] = 20.0
    bce_sure, ce_sure = auxiliary_loss(sure, target, torch.tensor([False, True, False, True]))
    assert bce_sure.item() < 1e-6 and ce_sure.item() < 1e-6
    assert auxiliary_loss(sure, target)[0].item() > 5.0


def test_supervised_target_slot_is_seen_by_the_loss_only():
    """RllibIdsEnv(supervised_target=True) ends each defender's vector with the observed window's attack class
    (0 = benign), aligned with the env's infos; the module's actor and critic ignore that slot."""
    from gymnasium import spaces

    from fog.attacks import ATTACK_CLASSES
    from fog.env import MarlIdsEnv
    from tests.test_fog_env import make_traces
    from training.mappo.env import RllibIdsEnv
    from training.mappo.module import MappoDefenderModule

    n = 2
    env = RllibIdsEnv({"env": MarlIdsEnv(make_traces(), n_defenders=n, max_steps=60), "supervised_target": True})
    assert env.observation_spaces["defender_0"].shape == ((n + 1) * OBS_DIM + 1,)
    obs, infos = env.reset(seed=0)
    seen = set()
    for t in range(60):
        for a in ("defender_0", "defender_1"):
            want = infos[a]["attack_class"] if infos[a]["label"] else 0
            assert obs[a][-1] == want and obs[a].shape == ((n + 1) * OBS_DIM + 1,)
            seen.add(int(want))
        act = {a: np.array([0, 0]) for a in ("defender_0", "defender_1")} | {"attacker_0": 1 + (t % 2)}
        obs, _, _, trunc, infos = env.step(act)
        if trunc["__all__"]:
            break
    assert len(seen) >= 2  # benign and at least one attack class went by
    plain = RllibIdsEnv({"env": MarlIdsEnv(make_traces(), n_defenders=n, max_steps=60)})
    assert plain.observation_spaces["defender_0"].shape == ((n + 1) * OBS_DIM,)
    module = MappoDefenderModule(observation_space=env.observation_spaces["defender_0"],
                                 action_space=spaces.MultiDiscrete([5, len(ATTACK_CLASSES)]),
                                 model_config={"supervised_target": True})
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(8, (n + 1) * OBS_DIM + 1)).astype(np.float32))
    x2 = x.clone()
    x2[:, -1] += 3.0
    assert torch.equal(module.compute_values({"obs": x}), module.compute_values({"obs": x2}))
    assert torch.equal(module.forward_inference({"obs": x})["action_dist_inputs"],
                       module.forward_inference({"obs": x2})["action_dist_inputs"])
