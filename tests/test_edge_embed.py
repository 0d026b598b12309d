"""MiniLM embeddings of protocol text: offline, unit-norm, 384-d, cached."""

from __future__ import annotations

import numpy as np
import pytest

from edge.embed import EMBED_DIM, TextEmbedder
from edge.proto_text import ProtoGroup, amount, window_text


def test_embeddings_are_unit_norm_and_384d(embedder: TextEmbedder):
    texts = ["MQTT out: dozens of packets to 1 peer on port 1883.",
             "TCP in: thousands packets from thousands peers on port 23, SYN-only, unanswered."]
    e = embedder.embed(texts)
    assert e.shape == (2, EMBED_DIM) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert float(e[0] @ e[1]) < 0.95  # different behaviour, different vectors


def test_identical_texts_hit_the_cache(embedder: TextEmbedder):
    text = "DNS out: a few packets to 1 peer on port 53."
    before = embedder.cache_info()
    first = embedder.embed([text, text, text])
    after = embedder.cache_info()
    assert after["misses"] - before["misses"] == 1  # encoded once
    assert after["hits"] - before["hits"] == 2
    again = embedder.embed_one(text)
    assert embedder.cache_info()["hits"] == after["hits"] + 1
    np.testing.assert_array_equal(first[0], again)
    np.testing.assert_array_equal(first[1], first[2])


def test_lru_evicts_oldest():
    emb = TextEmbedder(cache_size=2)
    emb._encode = lambda texts: np.ones((len(texts), EMBED_DIM), np.float32)  # no model needed for LRU logic
    emb.embed(["a", "b"])
    emb.embed(["a"])  # a becomes most recent
    emb.embed(["c"])  # evicts b
    assert list(emb._cache) == ["a", "c"]


@pytest.mark.parametrize(("kwargs", "match"), [({"cache_size": -1}, "cache_size"), ({"batch_size": 0}, "batch_size")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TextEmbedder(**kwargs)


def test_protocol_text_is_deterministic_and_coarse():
    def groups(n_syn: int):
        g = ProtoGroup(name="TCP", outbound=False, pkts=n_syn, syn_only=n_syn)
        g.peers.update(f"198.51.100.{i}" for i in range(min(n_syn, 200)))
        g.ports.update({23: n_syn * 0.6, 2323: n_syn * 0.4})
        dns = ProtoGroup(name="DNS", outbound=True, pkts=2)
        dns.peers.add("10.0.0.1")
        dns.ports[53] = 2
        return [dns, g]

    t1, t2 = window_text(groups(1200)), window_text(reversed(groups(1500)))
    assert t1 == t2  # order-independent, counts bucketed
    assert t1.startswith("TCP in: thousands of packets from hundreds of peers on ports 23,2323, SYN-only, unanswered")
    assert "DNS out: a few packets to 1 peer on port 53" in t1
    assert window_text([]) == "silent."
    assert [amount(n) for n in (0, 1, 3, 12, 50, 500, 5000)] == [
        "0", "1", "a few", "~10", "dozens", "hundreds", "thousands"]
