"""LSTM encoder + multi-head temporal attention, trained to predict a device's current window.

The network reads the last ``T`` windows of one device, ``(batch, T, F)``, with the current (last) window
*masked*: its features are replaced by a learned mask vector, so the network must predict them from the
``T - 1`` windows before it. A sinusoidal positional encoding (Vaswani et al., 2017) tells the LSTM where
each window sits in the sequence; a query built from the LSTM's last state attends over all ``T`` states
with ``heads`` heads (weights ``(batch, heads, T)``, each row sums to 1) and the attended context plus the
last state are decoded into the predicted window. Trained on benign windows only, the prediction error of
the current window, normalised per feature by its benign residual variance, is the anomaly score: high when
the window is unlike what the device's recent past announced (reported as ``log1p`` of the mean
normalised squared error, so the heavy tail stays in a float32-friendly range) — the forecasting detector of Hundman et al.
(KDD 2018) with attention pooling in place of a plain LSTM read-out.

References
----------
Hundman, K. et al. "Detecting Spacecraft Anomalies Using LSTMs and Nonparametric Dynamic Thresholding."
KDD 2018. Vaswani, A. et al. "Attention Is All You Need." NeurIPS 2017. Gal, Y. and Ghahramani, Z.
"Dropout as a Bayesian Approximation." ICML 2016 (MC-dropout uncertainty).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.scorer._common import (
    FeatureScaler,
    NotFittedError,
    as_name_list,
    check_fraction,
    check_positive_int,
    check_sequences,
    seed_everything,
)

log = logging.getLogger(__name__)

#: Floor of the per-feature benign residual variance (scaled units²) used to normalise errors.
MIN_RESID_VAR: float = 1e-2


def _torch_modules():
    """Build the torch module classes lazily (no torch import at module import time)."""
    import torch
    from torch import nn

    class TemporalAttentionNet(nn.Module):
        """Masked-last-window predictor; see the module docstring.

        Parameters
        ----------
        n_features : int
            ``F``.
        hidden_size : int
            LSTM width ``H`` (divisible by ``n_heads``).
        n_heads : int
            Attention heads.
        dropout : float
            Dropout before the decoder (kept on for MC-dropout sampling).
        max_len : int
            Longest sequence the positional table covers.
        """

        def __init__(self, n_features: int, hidden_size: int = 32, n_heads: int = 4,
                     dropout: float = 0.1, max_len: int = 256):
            super().__init__()
            self.n_features = n_features
            self.hidden_size = hidden_size
            self.n_heads = n_heads
            self.head_dim = hidden_size // n_heads
            self.mask_token = nn.Parameter(torch.zeros(n_features))
            self.inp = nn.Linear(n_features, hidden_size)
            pos = torch.arange(max_len, dtype=torch.float32)[:, None]
            div = torch.exp(torch.arange(0, hidden_size, 2, dtype=torch.float32)
                            * (-math.log(10000.0) / hidden_size))
            pe = torch.zeros(max_len, hidden_size)
            pe[:, 0::2] = torch.sin(pos * div)
            pe[:, 1::2] = torch.cos(pos * div)[:, : hidden_size // 2]
            self.register_buffer("pe", pe, persistent=False)
            self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)
            self.q = nn.Linear(hidden_size, hidden_size)
            self.k = nn.Linear(hidden_size, hidden_size)
            self.v = nn.Linear(hidden_size, hidden_size)
            self.drop = nn.Dropout(dropout)
            self.dec = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.ReLU(),
                                     nn.Dropout(dropout), nn.Linear(hidden_size, n_features))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """``x`` (batch, T, F) scaled → (predicted last window (batch, F), attention (batch, heads, T))."""
            B, T, F = x.shape
            masked = torch.cat([x[:, :-1, :], self.mask_token.expand(B, 1, F)], dim=1)
            h = self.inp(masked) + self.pe[:T].unsqueeze(0)
            states, _ = self.lstm(h)                                   # (B, T, H)
            last = states[:, -1, :]                                    # (B, H)
            q = self.q(last).reshape(B, self.n_heads, 1, self.head_dim)
            k = self.k(states).reshape(B, T, self.n_heads, self.head_dim).transpose(1, 2)
            v = self.v(states).reshape(B, T, self.n_heads, self.head_dim).transpose(1, 2)
            logits = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)  # (B, h, 1, T)
            attn = torch.softmax(logits, dim=-1)
            ctx = torch.matmul(attn, v).reshape(B, self.hidden_size)   # (B, H)
            pred = self.dec(self.drop(torch.cat([ctx, last], dim=-1)))
            return pred, attn.reshape(B, self.n_heads, T)

    class ScoringGraph(nn.Module):
        """Raw features → (score, attention): scaler + network + normalised error, for ONNX export."""

        def __init__(self, net: TemporalAttentionNet, mean: np.ndarray, scale: np.ndarray,
                     resid_var: np.ndarray, log1p: bool):
            super().__init__()
            self.net = net
            self.log1p = log1p
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
            self.register_buffer("inv_var", torch.as_tensor(1.0 / resid_var, dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if self.log1p:
                x = torch.sign(x) * torch.log1p(torch.abs(x))
            z = (x - self.mean) / self.scale
            pred, attn = self.net(z)
            err = (pred - z[:, -1, :]) ** 2 * self.inv_var
            return torch.log1p(err.mean(dim=-1)), attn

    return TemporalAttentionNet, ScoringGraph


class TemporalScorer:
    """Unsupervised per-device sequence scorer: LSTM + temporal attention, masked-window prediction.

    Fit on benign sequences only; :meth:`score_samples` returns, for each sequence, the (log1p of the)
    normalised error of predicting its last window from the ``T - 1`` windows before it (higher = more
    anomalous).

    Parameters
    ----------
    hidden_size : int, default 32
        LSTM and attention width; must be divisible by ``n_heads``.
    n_heads : int, default 4
        Temporal attention heads.
    dropout : float, default 0.1
        Dropout rate in [0, 1) before and inside the decoder (used for MC-dropout uncertainty).
    epochs : int, default 20
        Passes over the benign sequences.
    batch_size : int, default 128
        Sequences per optimiser step.
    lr : float, default 2e-3
        Adam learning rate.
    weight_decay : float, default 1e-5
        Adam weight decay.
    log_scale : bool, default True
        Compress features with signed ``log1p`` before standardising (see :class:`FeatureScaler`).
    seed : int, default 0
        Seeds weight initialisation, shuffling and MC-dropout sampling.

    Attributes
    ----------
    scaler_ : FeatureScaler
        Fitted on the benign windows of ``X``.
    net_ : torch.nn.Module
        The trained ``TemporalAttentionNet``.
    resid_var_ : ndarray of shape (F,)
        Benign per-feature mean squared prediction error (scaled units²), floored at ``MIN_RESID_VAR``.
    n_features_in_ : int
        ``F``.
    seq_len_ : int
        ``T`` seen in ``fit`` (scoring needs the same ``T``).
    feature_names_in_ : list of str
        Feature names (``f0 …`` when none were given).
    loss_curve_ : list of float
        Mean training loss per epoch.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 8, 5)).astype("float32")
    >>> s = TemporalScorer(hidden_size=16, epochs=1, seed=0).fit(X)
    >>> s.score_samples(X[:3]).shape
    (3,)
    >>> s.score_with_attention(X[:3])[1].shape
    (3, 4, 8)
    """

    def __init__(self, hidden_size: int = 32, n_heads: int = 4, dropout: float = 0.1, epochs: int = 20,
                 batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 1e-5, log_scale: bool = True,
                 seed: int = 0):
        self.hidden_size = hidden_size
        self.n_heads = n_heads
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.log_scale = log_scale
        self.seed = seed

    # -- parameters ---------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-ready)."""
        return {k: getattr(self, k) for k in ("hidden_size", "n_heads", "dropout", "epochs", "batch_size",
                                              "lr", "weight_decay", "log_scale", "seed")}

    def _validate_params(self) -> None:
        check_positive_int("hidden_size", self.hidden_size, minimum=2)
        check_positive_int("n_heads", self.n_heads)
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is invalid: expected a multiple of "
                             f"n_heads={self.n_heads}")
        if self.hidden_size % 2:
            raise ValueError(f"hidden_size={self.hidden_size} is invalid: expected an even number")
        check_fraction("dropout", self.dropout, low=0.0, high=1.0 - 1e-9, inclusive=True)
        check_positive_int("epochs", self.epochs, minimum=0)
        check_positive_int("batch_size", self.batch_size)
        check_fraction("lr", self.lr, low=0.0, high=1.0)

    def _build(self, n_features: int, max_len: int):
        Net, _ = _torch_modules()
        return Net(n_features, self.hidden_size, self.n_heads, float(self.dropout), max(256, max_len))

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, feature_names: Sequence[str] | None = None,
            progress: Callable[[int, float], None] | None = None) -> TemporalScorer:
        """Train on benign sequences.

        Parameters
        ----------
        X : array-like of shape (batch, T, F)
            Raw window statistics of benign sequences (``T >= 2``).
        y : ignored
            Present for scikit-learn compatibility; filter benign rows before calling.
        feature_names : sequence of str, optional
            Names of the ``F`` features (used by explanations and checkpoints).
        progress : callable, optional
            Called as ``progress(epoch, mean_loss)`` after each epoch (the CLI drives a progress bar).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On invalid parameters or an ``X`` that is not a finite, non-empty ``(batch, T >= 2, F)`` array.
        """
        import torch

        self._validate_params()
        X = check_sequences(X)
        if X.shape[1] < 2:
            raise ValueError(f"X has T={X.shape[1]} windows: expected T >= 2 (the last one is predicted "
                             "from the ones before)")
        rng = seed_everything(int(self.seed))
        self.n_features_in_ = X.shape[2]
        self.seq_len_ = X.shape[1]
        self.feature_names_in_ = as_name_list(feature_names, self.n_features_in_)
        self.scaler_ = FeatureScaler(log=bool(self.log_scale)).fit(X)
        Z = torch.from_numpy(self.scaler_.transform(X))
        net = self._build(self.n_features_in_, self.seq_len_)
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        self.loss_curve_ = []
        n = len(Z)
        for epoch in range(int(self.epochs)):
            net.train()
            order = torch.from_numpy(rng.permutation(n))
            total = 0.0
            for i in range(0, n, int(self.batch_size)):
                xb = Z[order[i:i + int(self.batch_size)]]
                pred, _ = net(xb)
                loss = torch.mean((pred - xb[:, -1, :]) ** 2)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                opt.step()
                total += loss.item() * len(xb)
            self.loss_curve_.append(total / n)
            log.debug("epoch %d loss %.5f", epoch, total / n)
            if progress is not None:
                progress(epoch, total / n)
        net.eval()
        self.net_ = net
        with torch.no_grad():
            resid = np.concatenate([(self._predict_scaled(Z[i:i + 4096]) - Z[i:i + 4096, -1, :].numpy()) ** 2
                                    for i in range(0, n, 4096)])
        self.resid_var_ = np.maximum(resid.mean(axis=0), MIN_RESID_VAR)
        return self

    # -- scoring ------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("TemporalScorer is not fitted: call fit(X) or load a checkpoint first")

    def _predict_scaled(self, Z) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net_(Z)[0].numpy()

    def _forward(self, X: Any, batch: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scaled inputs, predicted last windows (scaled) and attention for raw ``X``."""
        import torch

        self._check_fitted()
        X = check_sequences(X, n_features=self.n_features_in_)
        Z = self.scaler_.transform(X)
        preds, attns = [], []
        self.net_.eval()
        with torch.no_grad():
            for i in range(0, len(Z), batch):
                p, a = self.net_(torch.from_numpy(Z[i:i + batch]))
                preds.append(p.numpy())
                attns.append(a.numpy())
        return Z, np.concatenate(preds), np.concatenate(attns)

    def score_with_attention(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly scores ``(batch,)`` and attention weights ``(batch, heads, T)`` (rows sum to 1).

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            If ``X`` is not a finite ``(batch, T, F)`` array with the fitted ``F``.
        """
        Z, pred, attn = self._forward(X)
        err = (pred - Z[:, -1, :]) ** 2 / self.resid_var_
        return np.log1p(err.mean(axis=1, dtype=np.float64)), attn

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly score per sequence, shape ``(batch,)``; higher = more anomalous.

        ``log1p`` of the mean over features of the squared prediction error of the last window divided by
        the benign residual variance ``resid_var_`` (≈ ``log 2`` on benign training data).
        """
        return self.score_with_attention(X)[0]

    def score_uncertainty(self, X: Any, n_samples: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """MC-dropout estimate: mean and standard deviation of the score over ``n_samples`` dropout masks.

        Dropout is switched on at inference (Gal & Ghahramani, 2016); sampling is seeded by ``seed`` so the
        result is reproducible. Returns two arrays of shape ``(batch,)``.
        """
        import torch

        self._check_fitted()
        check_positive_int("n_samples", n_samples, minimum=2)
        X = check_sequences(X, n_features=self.n_features_in_)
        Z = torch.from_numpy(self.scaler_.transform(X))
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(int(self.seed))
        draws = []
        try:
            for m in self.net_.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.train()
            with torch.no_grad():
                for _ in range(int(n_samples)):
                    pred = self.net_(Z)[0].numpy()
                    err = ((pred - Z[:, -1, :].numpy()) ** 2) / self.resid_var_
                    draws.append(np.log1p(err.mean(axis=1, dtype=np.float64)))
        finally:
            self.net_.eval()
            torch.random.set_rng_state(gen_state)
        d = np.stack(draws)
        return d.mean(axis=0), d.std(axis=0)

    # -- export -------------------------------------------------------------------------------------
    def scoring_module(self):
        """A torch module mapping raw ``(batch, T, F)`` float32 to ``(score (batch,), attention)``."""
        self._check_fitted()
        _, Graph = _torch_modules()
        g = Graph(self.net_, self.scaler_.mean_, self.scaler_.scale_, self.resid_var_, self.scaler_.log)
        return g.eval()
