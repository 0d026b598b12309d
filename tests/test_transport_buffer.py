"""The edge's bounded on-disk buffer: order, persistence, acks, drop-oldest and block policies."""

from __future__ import annotations

import threading
import time

import pytest

from edge.transport import observation_pb2 as pb
from edge.transport.buffer import BufferClosedError, DiskBuffer
from edge.transport.wire import watermark_message


def _msgs(n: int, t0: float = 0.0) -> list:
    return [watermark_message("s", t0 + 5 * i, i) for i in range(n)]


def _t_ends(rows) -> list[float]:
    return [pb.EdgeMessage.FromString(b).watermark.t_end for _, b in rows]


def test_order_acks_and_persistence(tmp_path):
    path = tmp_path / "b.sqlite"
    buf = DiskBuffer(path, capacity=100)
    assert buf.put(_msgs(5)) == [1, 2, 3, 4, 5]
    rows = buf.read_after(0)
    assert [s for s, _ in rows] == [1, 2, 3, 4, 5] and _t_ends(rows) == [0, 5, 10, 15, 20]
    assert pb.EdgeMessage.FromString(rows[2][1]).watermark.seq == 3  # seq is written into the message
    assert buf.ack(2) == 2 and len(buf) == 3 and buf.oldest_seq() == 3
    edge_id = buf.edge_id
    buf.close()
    again = DiskBuffer(path, capacity=100)  # a restarted edge keeps its identity, numbering and backlog
    assert again.edge_id == edge_id and len(again) == 3
    assert again.put(_msgs(1, 100)) == [6]
    assert [s for s, _ in again.read_after(0)] == [3, 4, 5, 6]
    again.ack(10)
    assert again.put(_msgs(1)) == [7], "sequence numbers are never reused, even after the buffer emptied"
    again.close()


def test_drop_oldest_keeps_the_newest_and_counts(tmp_path):
    buf = DiskBuffer(tmp_path / "b.sqlite", capacity=4, policy="drop-oldest")
    buf.put(_msgs(3))
    buf.put(_msgs(3, 100))
    assert len(buf) == 4 and buf.dropped == 2
    assert _t_ends(buf.read_after(0)) == [10, 100, 105, 110]
    buf.close()
    assert DiskBuffer(tmp_path / "b.sqlite", capacity=4).dropped == 2


def test_block_policy_waits_for_acks(tmp_path):
    buf = DiskBuffer(tmp_path / "b.sqlite", capacity=3, policy="block")
    buf.put(_msgs(3))
    with pytest.raises(TimeoutError, match="buffer full"):
        buf.put(_msgs(1), timeout=0.2)
    done = []
    t = threading.Thread(target=lambda: done.append(buf.put(_msgs(2, 100))))
    t.start()
    time.sleep(0.3)
    assert not done, "put must wait while the buffer is full"
    buf.ack(2)
    t.join(5)
    assert done == [[4, 5]] and buf.dropped == 0 and len(buf) == 3
    blocked = threading.Thread(target=lambda: pytest.raises(BufferClosedError, buf.put, _msgs(3)))
    blocked.start()
    time.sleep(0.2)
    buf.close()
    blocked.join(5)
    assert not blocked.is_alive()


@pytest.mark.parametrize("kwargs, match", [({"capacity": 0}, "capacity"), ({"capacity": 2.5}, "capacity"),
                                           ({"policy": "drop-newest"}, "policy must be one of")])
def test_bad_settings(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiskBuffer(tmp_path / "b.sqlite", **kwargs)


def test_a_batch_larger_than_the_buffer_is_refused(tmp_path):
    buf = DiskBuffer(tmp_path / "b.sqlite", capacity=2)
    with pytest.raises(ValueError, match="exceeds the buffer capacity of 2"):
        buf.put(_msgs(3))
    buf.close()
