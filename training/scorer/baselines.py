"""Baseline anomaly scorers behind the same interface as :class:`edge.scorer.TemporalScorer`.

All take sequences ``(batch, T, F)`` of raw window statistics in ``fit`` (benign only) and return one score
per sequence from ``score_samples`` (higher = more anomalous):

* :class:`KitsuneEnsemble` — our implementation of KitNET (Mirsky et al., NDSS 2018): features clustered
  by correlation into groups of at most ``m``, one small autoencoder per group, an output autoencoder over
  the groups' reconstruction RMSEs; the score is the output autoencoder's RMSE. Window-level: it reads the
  last window of each sequence.
* :class:`LSTMAutoencoder` — sequence-to-sequence LSTM autoencoder (Malhotra et al., 2016); the score is
  the reconstruction error of the last window (the paper's point-wise error; ``score_on="sequence"``
  averages over all ``T`` windows instead).
* :class:`IsolationForestScorer` — scikit-learn's Isolation Forest (Liu et al., ICDM 2008) on the last
  window.

References
----------
Mirsky, Y., Doitshman, T., Elovici, Y. and Shabtai, A. "Kitsune: An Ensemble of Autoencoders for Online
Network Intrusion Detection." NDSS 2018. Malhotra, P. et al. "LSTM-based Encoder-Decoder for
Multi-sensor Anomaly Detection." ICML Anomaly Detection Workshop 2016. Liu, F. T., Ting, K. M. and Zhou,
Z.-H. "Isolation Forest." ICDM 2008.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from edge.scorer._common import (
    FeatureScaler,
    NotFittedError,
    check_positive_int,
    check_sequences,
    seed_everything,
)
from edge.site_model import correlation_groups

log = logging.getLogger(__name__)


def _last_window(X: np.ndarray) -> np.ndarray:
    return X[:, -1, :]


class KitsuneEnsemble:
    """KitNET-style ensemble of small autoencoders over correlated feature groups (Mirsky et al. 2018).

    Each window is min–max normalised with the benign range; each feature group of at most ``max_group``
    features has a one-hidden-layer sigmoid autoencoder with ``ceil(hidden_ratio · k)`` units; the vector of
    the groups' RMSEs (normalised by their benign range) feeds an output autoencoder whose RMSE is the
    anomaly score. Unlike the original online SGD (one pass, learning rate 0.1), we train both layers with
    mini-batch Adam for ``epochs`` passes over the benign windows.

    Parameters
    ----------
    max_group : int, default 10
        ``m``: largest feature group.
    hidden_ratio : float, default 0.75
        Hidden units per input of each autoencoder (``β`` in the paper).
    epochs : int, default 20
    batch_size : int, default 256
    lr : float, default 1e-2
    seed : int, default 0

    Attributes
    ----------
    groups_ : list of list of int
        Feature indices per ensemble member.
    min_, max_ : ndarray of shape (F,)
        Benign range used for normalisation.
    """

    def __init__(self, max_group: int = 10, hidden_ratio: float = 0.75, epochs: int = 20, batch_size: int = 256,
                 lr: float = 1e-2, seed: int = 0):
        self.max_group = max_group
        self.hidden_ratio = hidden_ratio
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def _modules(self, sizes: list[int]):
        import torch
        from torch import nn

        def ae(k: int) -> nn.Module:
            h = max(1, math.ceil(self.hidden_ratio * k))
            return nn.Sequential(nn.Linear(k, h), nn.Sigmoid(), nn.Linear(h, k), nn.Sigmoid())

        torch.manual_seed(int(self.seed))
        return nn.ModuleList([ae(k) for k in sizes]), ae(len(sizes))

    def _train(self, module, data, rng: np.random.Generator) -> None:
        import torch

        opt = torch.optim.Adam(module.parameters(), lr=float(self.lr))
        n = len(data)
        for _ in range(int(self.epochs)):
            order = torch.from_numpy(rng.permutation(n))
            for i in range(0, n, int(self.batch_size)):
                xb = data[order[i:i + int(self.batch_size)]]
                loss = module(xb)
                opt.zero_grad()
                loss.backward()
                opt.step()

    def _norm(self, W: np.ndarray) -> np.ndarray:
        return ((W - self.min_) / (self.max_ - self.min_ + 1e-9)).astype(np.float32)

    def _group_rmse(self, Xn):
        import torch

        outs = []
        for g, m in zip(self.groups_, self.ensemble_):
            xg = Xn[:, g]
            outs.append(torch.sqrt(torch.mean((m(xg) - xg) ** 2, dim=1)))
        return torch.stack(outs, dim=1)

    def fit(self, X: Any, y: Any = None) -> KitsuneEnsemble:
        """Fit on benign sequences ``(batch, T, F)`` (their last windows) or windows ``(n, F)``."""
        import torch

        check_positive_int("max_group", self.max_group, minimum=2)
        if not isinstance(self.hidden_ratio, (int, float)) or not 0.0 < self.hidden_ratio <= 1.0:
            raise ValueError(f"hidden_ratio={self.hidden_ratio!r} is invalid: expected a number in (0, 1]")
        check_positive_int("epochs", self.epochs)
        rng = seed_everything(int(self.seed))
        W = self._windows(X, fitting=True)
        self.min_, self.max_ = W.min(axis=0), W.max(axis=0)
        Xn = torch.from_numpy(self._norm(W))
        self.groups_ = correlation_groups(np.asarray(Xn), int(self.max_group))
        self.ensemble_, self.output_ = self._modules([len(g) for g in self.groups_])
        ens = self.ensemble_

        class _EnsLoss(torch.nn.Module):
            def __init__(s):
                super().__init__()
                s.ens = ens

            def forward(s, xb):
                return sum(torch.mean((m(xb[:, g]) - xb[:, g]) ** 2) for g, m in zip(self.groups_, s.ens))

        self._train(_EnsLoss(), Xn, rng)
        with torch.no_grad():
            R = self._group_rmse(Xn)
        self.rmin_, self.rmax_ = R.min(dim=0).values, R.max(dim=0).values
        Rn = (R - self.rmin_) / (self.rmax_ - self.rmin_ + 1e-9)
        out = self.output_

        class _OutLoss(torch.nn.Module):
            def __init__(s):
                super().__init__()
                s.out = out

            def forward(s, rb):
                return torch.mean((s.out(rb) - rb) ** 2)

        self._train(_OutLoss(), Rn, rng)
        return self

    def _windows(self, X: Any, fitting: bool = False) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float32)
        if arr.ndim == 3:
            arr = _last_window(check_sequences(arr, n_features=None if fitting else self.n_features_in_))
        elif arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all():
            raise ValueError(f"X has shape {arr.shape}: expected finite (batch, T, F) or (n, F)")
        if fitting:
            self.n_features_in_ = arr.shape[1]
        elif arr.shape[1] != self.n_features_in_:
            raise ValueError(f"X has F={arr.shape[1]} features: expected F={self.n_features_in_} as in fit")
        # signed log1p: same compression as the other scorers; min–max comes after
        return np.sign(arr) * np.log1p(np.abs(arr))

    def score_samples(self, X: Any) -> np.ndarray:
        """RMSE of the output autoencoder per sequence (last window), shape ``(batch,)``."""
        import torch

        if not hasattr(self, "output_"):
            raise NotFittedError("KitsuneEnsemble is not fitted: call fit(X) first")
        Xn = torch.from_numpy(np.clip(self._norm(self._windows(X)), -10.0, 10.0))
        with torch.no_grad():
            Rn = (self._group_rmse(Xn) - self.rmin_) / (self.rmax_ - self.rmin_ + 1e-9)
            out = torch.sqrt(torch.mean((self.output_(Rn) - Rn) ** 2, dim=1))
        return out.numpy().astype(np.float64)


class LSTMAutoencoder:
    """LSTM encoder–decoder reconstructing the whole sequence (Malhotra et al., 2016).

    The encoder's last hidden state (``hidden_size`` units) is repeated ``T`` times and decoded by a second
    LSTM into the ``T`` windows; the score is the mean squared reconstruction error in scaled units of the
    last window (``score_on="last"``, the point-wise error of the paper for the window being judged) or of
    the whole sequence (``score_on="sequence"``).

    Parameters
    ----------
    hidden_size : int, default 32
    score_on : {"last", "sequence"}, default "last"
    epochs : int, default 20
    batch_size : int, default 128
    lr : float, default 2e-3
    seed : int, default 0

    Attributes
    ----------
    scaler_ : FeatureScaler
    net_ : torch.nn.Module
    """

    def __init__(self, hidden_size: int = 32, score_on: str = "last", epochs: int = 20, batch_size: int = 128,
                 lr: float = 2e-3, seed: int = 0):
        self.hidden_size = hidden_size
        self.score_on = score_on
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> LSTMAutoencoder:
        """Fit on benign sequences ``(batch, T, F)``."""
        import torch
        from torch import nn

        check_positive_int("hidden_size", self.hidden_size)
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        if self.score_on not in ("last", "sequence"):
            raise ValueError(f"score_on={self.score_on!r} is invalid: expected 'last' or 'sequence'")
        X = check_sequences(X)
        rng = seed_everything(int(self.seed))
        self.n_features_in_ = X.shape[2]
        self.scaler_ = FeatureScaler().fit(X)
        Z = torch.from_numpy(self.scaler_.transform(X))
        H, F = int(self.hidden_size), X.shape[2]

        class Net(nn.Module):
            def __init__(s):
                super().__init__()
                s.enc = nn.LSTM(F, H, batch_first=True)
                s.dec = nn.LSTM(H, H, batch_first=True)
                s.out = nn.Linear(H, F)

            def forward(s, x):
                _, (h, _) = s.enc(x)
                rep = h[-1].unsqueeze(1).expand(-1, x.shape[1], -1)
                y, _ = s.dec(rep)
                return s.out(y)

        net = Net()
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        n = len(Z)
        for _ in range(int(self.epochs)):
            order = torch.from_numpy(rng.permutation(n))
            for i in range(0, n, int(self.batch_size)):
                xb = Z[order[i:i + int(self.batch_size)]]
                loss = torch.mean((net(xb) - xb) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net_ = net.eval()
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Mean squared reconstruction error (last window or whole sequence), shape ``(batch,)``."""
        import torch

        if not hasattr(self, "net_"):
            raise NotFittedError("LSTMAutoencoder is not fitted: call fit(X) first")
        Z = torch.from_numpy(self.scaler_.transform(check_sequences(X, n_features=self.n_features_in_)))
        outs = []
        with torch.no_grad():
            for i in range(0, len(Z), 4096):
                err = (self.net_(Z[i:i + 4096]) - Z[i:i + 4096]) ** 2
                outs.append(err[:, -1, :].mean(dim=1) if self.score_on == "last" else err.mean(dim=(1, 2)))
        out = torch.cat(outs)
        return out.numpy().astype(np.float64)


class IsolationForestScorer:
    """scikit-learn Isolation Forest on the last window of each sequence (Liu et al., ICDM 2008).

    Parameters
    ----------
    n_estimators : int, default 200
    max_samples : int or "auto", default "auto"
    seed : int, default 0

    Attributes
    ----------
    forest_ : sklearn.ensemble.IsolationForest
    """

    def __init__(self, n_estimators: int = 200, max_samples: int | str = "auto", seed: int = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> IsolationForestScorer:
        """Fit on benign sequences ``(batch, T, F)`` (their last windows)."""
        from sklearn.ensemble import IsolationForest

        check_positive_int("n_estimators", self.n_estimators)
        X = check_sequences(X)
        self.n_features_in_ = X.shape[2]
        self.forest_ = IsolationForest(n_estimators=int(self.n_estimators), max_samples=self.max_samples,
                                       random_state=int(self.seed)).fit(_last_window(X))
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Negated sklearn ``score_samples`` (so higher = more anomalous), shape ``(batch,)``."""
        if not hasattr(self, "forest_"):
            raise NotFittedError("IsolationForestScorer is not fitted: call fit(X) first")
        X = check_sequences(X, n_features=self.n_features_in_)
        return -self.forest_.score_samples(_last_window(X)).astype(np.float64)
