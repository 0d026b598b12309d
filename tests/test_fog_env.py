"""The multi-agent environment: PettingZoo API, seeding, transitions and cost-sensitive rewards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from edge.embed import EMBED_DIM
from edge.features import N_FEATURES
from edge.observation import LEVEL_DIVISOR, OBS_DIM, OBS_SLICES, attention_summary, build_observation, build_observations
from fog.attacks import ATTACK_CLASSES, technique_class
from fog.env import ALERT_THRESHOLD, MarlIdsEnv, RewardConfig
from fog.traces import TraceSet


def make_traces(seed: int = 0) -> TraceSet:
    """Two sites, benign windows plus two recorded attacks (scan, flood) with benign background."""
    rng = np.random.default_rng(seed)
    rows = []
    for site in ("site_a", "site_b"):
        for i in range(60):
            label, tid = 0, ""
            if 20 <= i < 28:
                label, tid = (i % 2), "T1046"  # scan windows interleaved with background
            if 40 <= i < 50:
                label, tid = 1, "T1498.001"
            rows.append({"site": site, "capture": f"{site}.pcap", "t_start": 1000.0 + 5 * i,
                         "label": label, "technique_id": tid})
    df = pd.DataFrame(rows)
    z = rng.normal(size=(len(df), N_FEATURES)) + 4.0 * df["label"].to_numpy()[:, None]
    e = rng.normal(size=(len(df), EMBED_DIM))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    raw = np.expm1(np.clip(z, 0, None))
    obs = build_observations(z, e, rng.uniform(size=len(df)), stats=raw)
    return TraceSet.from_frame(df, obs)


def test_parallel_api():
    parallel_api_test(MarlIdsEnv(make_traces(), n_defenders=3, max_steps=40), num_cycles=200)


def test_seed_determinism():
    parallel_seed_test(lambda: MarlIdsEnv(make_traces(), n_defenders=3, max_steps=40))


def _rollout(env: MarlIdsEnv, seed: int, policy) -> list:
    obs, infos = env.reset(seed=seed)
    out = []
    while env.agents:
        acts = {a: policy(a, infos) for a in env.agents}
        obs, rew, term, trunc, infos = env.step(acts)
        out.append((rew, {a: i.get("label") for a, i in infos.items()},
                    {a: float(o.sum()) for a, o in obs.items()}))
    return out


def test_same_seed_same_episode():
    pol = lambda a, infos: 1 if a == "attacker_0" else np.array([0, 0])  # noqa: E731
    r1 = _rollout(MarlIdsEnv(make_traces(), max_steps=50), 7, pol)
    r2 = _rollout(MarlIdsEnv(make_traces(), max_steps=50), 7, pol)
    assert r1 == r2
    r3 = _rollout(MarlIdsEnv(make_traces(), max_steps=50), 8, pol)
    assert r1 != r3


def test_traces_cut_episodes_with_background():
    tr = make_traces()
    assert tr.sites == ["site_a", "site_b"] and tr.techniques == ["T1046", "T1498.001"]
    scan = [e for e in tr.episodes if e.technique_id == "T1046"]
    assert len(scan) == 2 and all(len(set(tr.label[e.indices])) == 2 for e in scan)  # benign background kept
    for idx in tr.benign.values():
        assert (tr.label[idx] == 0).all()
    assert tr.attack_class[tr.label == 1].min() > 0 and (tr.attack_class[tr.label == 0] == 0).all()


def test_attack_replays_episode_and_rewards_are_cost_sensitive():
    tr = make_traces()
    env = MarlIdsEnv(tr, n_defenders=2, max_steps=30, attack_budget=1)
    env.reset(seed=1)
    flood_k = env.techniques.index("T1498.001")
    # the attacker launches the flood on defender_1; defenders never alert
    quiet = {"defender_0": np.array([0, 0]), "defender_1": np.array([0, 0])}
    _, _, _, _, infos = env.step({**quiet, "attacker_0": 1 + flood_k * 2 + 1})
    assert infos["defender_1"]["label"] == 1 and infos["defender_1"]["technique_id"] == "T1498.001"
    assert infos["defender_0"]["label"] == 0
    # missed attack: the defender loses, the attacker earns
    _, rew, _, _, infos = env.step({**quiet, "attacker_0": 0})
    rc = RewardConfig()
    assert rew["attacker_0"] == pytest.approx(rc.attacker_undetected - rc.attacker_step_cost)
    own1, own0 = -rc.fn_cost, rc.tn_reward
    team = (own0 + own1) / 2
    assert rew["defender_1"] == pytest.approx(0.5 * own1 + 0.5 * team)
    # detected with the right class: earns; budget spent, so further launches are waits
    flood_cls = ATTACK_CLASSES.index("flood")
    _, rew, _, _, infos = env.step({"defender_0": np.array([0, 0]),
                                    "defender_1": np.array([ALERT_THRESHOLD + 1, flood_cls]),
                                    "attacker_0": 1})
    assert rew["attacker_0"] == pytest.approx(-rc.attacker_detected - rc.attacker_step_cost)
    assert rew["defender_1"] > 0
    # a false positive costs more than a detection earns
    env.reset(seed=2)
    _, rew, _, _, _ = env.step({"defender_0": np.array([4, 1]), "defender_1": np.array([0, 0]),
                                "attacker_0": 0})
    assert rew["defender_0"] < 0 and rc.fp_cost > rc.tp_reward


@pytest.mark.parametrize(("kwargs", "match"), [({"n_defenders": 0}, "n_defenders"), ({"max_steps": 0}, "max_steps"),
                                               ({"attack_budget": -1}, "attack_budget")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarlIdsEnv(make_traces(), **kwargs)


def test_observation_layout():
    z = np.full(N_FEATURES, 50.0)
    e = np.ones(EMBED_DIM) / np.sqrt(EMBED_DIM)
    att = np.array([[0.1, 0.1, 0.8], [0.0, 0.2, 0.8]])
    x = np.zeros(N_FEATURES)
    x[0], x[1] = 2.0, 2000.0
    o = build_observation(z, e, 0.7, att, stats=x)
    assert o.shape == (OBS_DIM,) and o.dtype == np.float32
    assert o[OBS_SLICES["stats_z"]].max() == 10.0  # clipped
    # the level part keeps apart what the clipped z cannot: 2 vs 2,000 (compressed, fixed divisor)
    level = o[OBS_SLICES["stats_level"]]
    assert level[0] == pytest.approx(np.log1p(2.0) / LEVEL_DIVISOR) and level[1] == pytest.approx(np.log1p(2000.0) / LEVEL_DIVISOR)
    assert not level[2:].any()
    assert o[OBS_SLICES["score"]][0] == pytest.approx(0.7) and o[OBS_SLICES["score_available"]][0] == 1
    assert o[OBS_SLICES["attention"]][3] == pytest.approx(0.8)  # weight on the current window
    warm = build_observation(z, e, None, stats=x)
    assert warm[OBS_SLICES["score_available"]][0] == 0 and not warm[OBS_SLICES["attention"]].any()
    s = attention_summary(np.array([[1.0, 1.0, 1.0, 1.0]]))
    assert s[0, 1] == pytest.approx(1.0)  # uniform attention: entropy 1
    with pytest.raises(ValueError, match="scores"):
        build_observations(z[None], e[None], np.array([1.5]), stats=x[None])
    with pytest.raises(ValueError, match="stats"):
        build_observations(z[None], e[None], None, stats=np.full((1, N_FEATURES), np.nan))
    with pytest.raises(ValueError, match="stats"):
        build_observations(z[None], e[None], None, stats=x[None, :5])


@pytest.mark.parametrize(("tid", "cls"), [("T1046", "scan"), ("T1498.001", "flood"), ("T1498.002", "flood"),
                                          ("T1110.001", "brute_force"), ("T1499.002", "app_dos"),
                                          ("T1557.002", "arp_spoof"), ("T1059", "other"), ("", "benign")])
def test_technique_classes(tid, cls):
    assert ATTACK_CLASSES[technique_class(tid)] == cls
