"""Edge daemon: slot-by-slot Observations equal the training path, replay clock, edge → fog → cloud
in-process, and one-line errors of ``marlids edge run`` (live capture without CAP_NET_RAW included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from edge.daemon import EdgeConfig, EdgeDaemon, PcapReplay
from edge.live import check_live_capture, has_cap_net_raw
from edge.features import FEATURE_NAMES
from edge.observation import OBS_SLICES, FusionPipeline
from edge.online import SiteFusion, fuse_frame
from fog.server import FogConfig, FogServer
from tests.transport_support import (
    CAPTURES,
    KEY,
    REPO,
    Receiver,
    bundled_windows,
    expected_alerts,
    make_policy,
    port_is_free,
    read_store,
    shared_embedder,
)

MARLIDS = str(Path(sys.executable).with_name("marlids"))


@pytest.fixture(scope="module")
def scored_pipeline(tmp_path_factory):
    """A fusion pipeline with a small trained temporal scorer (T = 4), fitted on site_a."""
    from edge.scorer import save_checkpoint
    from training.scorer.train import TrainConfig, train_from_frame

    frame = bundled_windows("site_a")
    ckpt = tmp_path_factory.mktemp("scorer")
    scorer, threshold, summary = train_from_frame(frame, TrainConfig(seq_len=4, epochs=1, hidden_size=8, n_heads=2,
                                                                     batch_size=64, seed=0))
    save_checkpoint(ckpt, scorer, threshold, extra=summary)
    return FusionPipeline(str(ckpt)).fit(frame)


def test_slot_by_slot_observations_equal_the_offline_path(scored_pipeline):
    """The edge's SiteFusion fed slot by slot (texts embedded on the way, baseline learning from the
    decisions) gives the Observations of fuse_frame over the whole capture (training, eval, fog detect)."""
    frame = bundled_windows("site_a")
    emb = shared_embedder()
    pkts = list(frame.columns).index("pkts")

    def decide(v):  # alert the busiest third of the windows: the baseline learns from the others only
        hot = v[:, 0] > np.quantile(v[:, 0], 0.66) if len(v) > 2 else np.zeros(len(v), bool)
        n = len(v)
        return np.where(hot, 3, 0), np.where(hot, 2, 0), np.ones(n, np.float32), hot

    want = fuse_frame(scored_pipeline, frame, emb.embed(frame["proto_text"].tolist()), decide=decide)
    online = SiteFusion(scored_pipeline, emb)
    slots = (frame["t_start"] // 5).to_numpy()
    got = np.zeros_like(want.vectors)
    learning = np.zeros(len(frame), bool)
    att_rows = []
    for k in np.unique(slots):
        idx = np.flatnonzero(slots == k)
        batch = online.transform(frame.iloc[idx])
        got[idx] = batch.vectors
        learning[idx] = batch.learning
        if not batch.learning.all():
            online.learn(batch, ~decide(batch.vectors)[3])
            att_rows += [(i, batch.attention[j], batch.attention_t[j]) for j, i in enumerate(idx)]
    assert pkts >= 0 and online.baseline.fitted_
    np.testing.assert_array_equal(learning, want.learning)
    assert learning.sum() > 50, "the first 60 s learn the site baseline"
    np.testing.assert_allclose(got, want.vectors, atol=1e-5)
    scored = got[~learning, OBS_SLICES["score_available"].start] == 1
    assert scored.all(), "after the grace period every window is scored (its history was filled in the grace period)"
    # the attention times are the device's previous windows, oldest first
    i, a, t = att_rows[-1]
    dev = frame[frame["device_id"] == frame.at[i, "device_id"]].sort_values("t_start")
    assert list(t) == list(dev["t_start"].to_numpy()[-4:]) and abs(a.sum() - 1) < 1e-4


def test_new_peers_is_kept_across_slots():
    frame = bundled_windows("site_b")
    pipe = FusionPipeline().fit(frame)
    online = SiteFusion(pipe, shared_embedder())
    slots = (frame["t_start"] // 5).to_numpy()
    j = list(FEATURE_NAMES).index("new_peers")
    x = np.zeros(len(frame))
    for k in np.unique(slots):
        idx = np.flatnonzero(slots == k)
        x[idx] = online.transform(frame.iloc[idx].assign(new_peers=-1.0)).x[:, j]
    np.testing.assert_array_equal(x, frame["new_peers"].to_numpy())


def test_replay_follows_the_capture_clock():
    stop = threading.Event()
    replay = PcapReplay(CAPTURES / "site_a.pcap", "site_a", 5.0, 200.0, "local", stop)
    t0, times, n_windows, ends = None, [], 0, []
    for t_end, windows in replay:
        now = time.monotonic()
        t0 = t0 or now
        times.append(now - t0)
        ends.append(t_end)
        n_windows += len(windows)
        assert (windows["t_end"] == t_end).all()
    span = (replay.last_ts - replay.first_ts) / 200.0
    assert n_windows == len(bundled_windows("site_a")) and np.all(np.diff(ends) == 5.0)
    assert span * 0.8 <= times[-1] <= span + 1.0, (times[-1], span)
    # a slot is released when the replay clock reaches its end: halfway through, about half the slots
    mid = np.searchsorted(times, times[-1] / 2)
    assert abs(mid / len(times) - 0.5) < 0.15


def test_edges_stream_to_the_fog_which_posts_exactly_the_offline_alerts(tmp_path):
    frames = {s: bundled_windows(s) for s in ("site_a", "site_b")}
    both = pd.concat(frames.values(), ignore_index=True)
    policy = make_policy(tmp_path / "policy", both)
    emb = shared_embedder()
    want = expected_alerts(both, emb.embed(both["proto_text"].tolist()), policy)
    from fog.detect import detect

    n_grace = int(detect(both, emb.embed(both["proto_text"].tolist()), policy)["learning"].sum())
    assert 60 < len(want) < len(both) and 100 < n_grace < len(both) / 2
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    with Receiver(tmp_path / "cloud.sqlite", KEY) as rec:
        fog = FogServer(FogConfig(listen="127.0.0.1:0", policy_dir=policy, cloud_url=rec.url, ingest_key=KEY,
                                  sites=("site_a", "site_b"), outbox_path=tmp_path / "outbox.sqlite",
                                  tick_timeout_s=0.5, decisions_path=tmp_path / "decisions.jsonl")).start()
        edges = [EdgeDaemon(EdgeConfig(site_id=s, fog=f"127.0.0.1:{fog.port}", pcap=CAPTURES / f"{s}.pcap",
                                       replay_speed=0, fusion_dir=policy, buffer_path=tmp_path / f"{s}.sqlite",
                                       baseline_path=tmp_path / f"{s}.baseline.json"),
                            embedder=emb).start() for s in frames]
        try:
            for e in edges:
                assert e.wait(timeout=120), e.stats()
            deadline = time.monotonic() + 30
            while fog.outbox.pending and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = fog.stats()
        finally:
            for e in edges:
                e.stop()
            fog.stop()
    got, posts = read_store(tmp_path / "cloud.sqlite")
    assert set(got) == set(want)
    assert len(posts) == len(want), "every alert was posted exactly once"
    for aid, a in got.items():
        w = want[aid]
        assert (a["site_id"], a["device_id"], a["level"], a["attack_class"], a["ts"]) == \
               (w["site_id"], w["device_id"], w["level"], w["attack_class"], w["ts"])
        assert a["confidence"] == pytest.approx(w["confidence"], abs=1e-5)
        assert [f["name"] for f in a["evidence"]["top_features"]] == [f["name"] for f in w["evidence"]["top_features"]], \
            [(f["name"], f["z"]) for f in a["evidence"]["top_features"]] + [(f["name"], f["z"]) for f in w["evidence"]["top_features"]]
    assert stats["decisions"] == len(both) - n_grace and stats["duplicates"] == 0
    assert stats["observations"] == len(both) - n_grace and stats["grace_observations"] == n_grace
    # each edge learned from the decided windows that did not alert (and are near their site's normal), and
    # says so in its saved baseline
    from edge.observation import FusionPipeline
    from edge.online import LEARN_MAX_SITE_SCORE
    from fog.policy import DefenderActor

    actor = DefenderActor.load(policy)
    fused = fuse_frame(FusionPipeline.load(policy), both, emb.embed(both["proto_text"].tolist()),
                       decide=actor.decide_all)
    learnable = ~fused.learning & ~fused.decisions["alert"] & (fused.site_scores <= LEARN_MAX_SITE_SCORE)
    assert 0 < learnable.sum() < len(both) - n_grace - len(want)
    assert sum(e.stats().learned_windows for e in edges) == int(learnable.sum())
    for s in frames:
        saved = tmp_path / f"{s}.baseline.json"
        assert saved.stat().st_mode & 0o777 == 0o600 and '"fitted": true' in saved.read_text()
    # the cloud heard each site learn its baseline, then detect
    states = rec.store.site_states()
    for s in frames:
        seen = [b["state"] for site, b in states if site == s]
        assert seen[0] == "learning" and seen[-1] == "detecting", seen
    assert port_is_free(fog.port)
    left = {p.pid for p in psutil.Process().children(recursive=True)} - children_before
    assert not left, f"child processes left behind: {left}"


def test_live_capture_needs_cap_net_raw():
    status = "Name:\tpython\nCapEff:\t0000000000000000\n"
    assert not has_cap_net_raw(status) and has_cap_net_raw("CapEff:\t0000000000002000\n")
    with pytest.raises(PermissionError, match="needs CAP_NET_RAW"):
        check_live_capture("lo", status_text=status)
    with pytest.raises(ValueError, match="no such network interface"):
        check_live_capture("no-such-if0")


def _marlids(*args: str, user: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [MARLIDS, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--inh-caps=-all", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
                          env={**os.environ, "HOME": "/tmp", **(env or {})})


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root (to drop to an unprivileged user) and setpriv")
def test_live_capture_as_an_unprivileged_user_is_a_clear_error():
    work = Path(tempfile.mkdtemp(prefix="marlids-nobody-"))
    try:
        os.chmod(work, 0o777)
        policy = make_policy(work / "policy", bundled_windows("site_a"))
        for p in (policy, *policy.iterdir()):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        r = _marlids("edge", "run", "--iface", "lo", "--fog", "127.0.0.1:1", "--site", "s", "--insecure",
                     "--fusion", str(policy), "--buffer", str(work / "b.sqlite"), user="65534")
    finally:
        shutil.rmtree(work)
    assert r.returncode == 2, r.stderr
    assert "marlids: error: live capture on lo needs CAP_NET_RAW" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--pcap", "x.pcap", "--iface", "lo"], "exactly one of --pcap FILE and --iface IFACE"),
    (["--pcap", "data/captures/site_a.pcap", "--replay-speed", "-1"], "--replay-speed must be ≥ 0"),
    (["--pcap", "missing.pcap"], "--pcap missing.pcap: no such file"),
    (["--pcap", "README.md"], "not a pcap/pcapng capture"),
    (["--pcap", "data/captures/site_a.pcap", "--site", "bad site"], "--site 'bad site' is invalid"),
    (["--pcap", "data/captures/site_a.pcap", "--fog", "nohost"], "--fog 'nohost' is invalid"),
    (["--pcap", "data/captures/site_a.pcap", "--fusion", "."], "no fusion.json"),
    (["--pcap", "data/captures/site_a.pcap", "--buffer-policy", "drop-newest"], "--buffer-policy must be one of"),
])
def test_edge_run_errors_are_one_line(tmp_path, args, message):
    policy = make_policy(tmp_path / "policy", bundled_windows("site_a"))
    base = {"--fog": "127.0.0.1:1", "--site": "s", "--fusion": str(policy)}
    for i in range(len(args) - 1):
        if args[i] in base:
            base[args[i]] = args[i + 1]
    rest = [a for i, a in enumerate(args) if a not in base and (i == 0 or args[i - 1] not in base)]
    r = _marlids("edge", "run", "--insecure", "--buffer", str(tmp_path / "b.sqlite"),
                 *[x for kv in base.items() for x in kv], *rest)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_edge_run_without_tls_or_insecure_is_refused():
    r = _marlids("edge", "run", "--pcap", "data/captures/site_a.pcap", "--fog", "127.0.0.1:1", "--site", "s")
    assert r.returncode == 2 and "the edge needs --tls-ca" in r.stderr and "--insecure" in r.stderr
