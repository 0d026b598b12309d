"""Streaming use of a fitted :class:`TemporalScorer`: one window at a time, per device.

river-style ``score_one`` / ``learn_one``: ``score_one`` scores a device's newest window against its
buffered history without changing anything; ``learn_one`` appends the window to the device's history and
lets the threshold adapt (SPOT step) — unless that window was flagged, so an attacker cannot drag the
threshold up with the very windows it is caught on. The neural network itself is not updated online.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any

import numpy as np

from edge.scorer.model import TemporalScorer
from edge.scorer.threshold import SPOTThreshold


class StreamingScorer:
    """Per-device ring buffers of the last ``T - 1`` windows around a fitted scorer and threshold.

    Parameters
    ----------
    scorer : TemporalScorer
        Fitted scorer (``T = scorer.seq_len_``).
    threshold : SPOTThreshold, optional
        Fitted threshold; ``learn_one`` feeds it unflagged scores.
    adapt_threshold : bool, default True
        Update the threshold with unflagged scores in ``learn_one``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 4, 3)).astype("float32")
    >>> st = StreamingScorer(TemporalScorer(hidden_size=8, epochs=1).fit(X))
    >>> st.score_one(("site", "cam"), X[0, 0]) is None   # warm-up: no history yet
    True
    """

    def __init__(self, scorer: TemporalScorer, threshold: SPOTThreshold | None = None,
                 adapt_threshold: bool = True):
        scorer._check_fitted()
        self.scorer = scorer
        self.threshold = threshold
        self.adapt_threshold = adapt_threshold
        self.history_: dict[Hashable, deque] = {}

    def _check(self, x: Any) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32).ravel()
        if arr.size != self.scorer.n_features_in_ or not np.isfinite(arr).all():
            raise ValueError(f"x has {arr.size} values: expected {self.scorer.n_features_in_} finite features")
        return arr

    def score_one(self, key: Hashable, x: Any) -> float | None:
        """Score window ``x`` ``(F,)`` of device ``key`` (a tuple such as ``(site_id, device_id)``).

        Returns ``None`` while the device has fewer than ``T - 1`` windows of history (warm-up).
        """
        arr = self._check(x)
        hist = self.history_.get(key)
        T = self.scorer.seq_len_
        if hist is None or len(hist) < T - 1:
            return None
        seq = np.stack([*hist, arr])[None]
        return float(self.scorer.score_samples(seq)[0])

    def learn_one(self, key: Hashable, x: Any, score: float | None = None) -> None:
        """Append ``x`` to the device's history; adapt the threshold with ``score`` if it was not flagged.

        ``score`` is the value :meth:`score_one` returned for this window (computed here when omitted).
        """
        arr = self._check(x)
        if score is None:
            score = self.score_one(key, arr)
        if score is not None and self.threshold is not None and self.adapt_threshold:
            self.threshold.learn_one(score)  # no-op on flagged scores
        hist = self.history_.setdefault(key, deque(maxlen=max(1, self.scorer.seq_len_ - 1)))
        hist.append(arr)
