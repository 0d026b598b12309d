"""The site anomaly model: a KitNET-style autoencoder ensemble learned from one site's grace period.

Kitsune (Mirsky et al., NDSS 2018) meets a network it has never seen by learning that network's normal
traffic in a grace period and scoring everything afterwards by how badly its autoencoders reconstruct it.
marlids learns the same kind of model per site, from the same grace-period windows as the site baseline
(:mod:`edge.baseline`), and feeds its score to the defender as one part of the Observation
(``site_score``, :mod:`edge.observation`): the policy combines "unlike this site's normal" with what it
learned from labelled attacks on other networks, instead of relying on either alone.

Model (numpy only: it is trained on the edge device when the grace period ends):

1. each window's statistics are signed-``log1p`` compressed and min–max normalised with the grace
   period's range (values outside are clipped to [−1, 2]);
2. features are clustered by correlation into groups of at most ``max_group``
   (:func:`correlation_groups`, KitNET's feature mapper);
3. each group has a one-hidden-layer sigmoid autoencoder (``ceil(0.75·k)`` hidden units); the vector of
   the groups' reconstruction RMSEs, normalised by their grace range, feeds an output autoencoder;
4. both layers are trained with mini-batch Adam (learning rate 0.01, ``epochs`` passes, seeded);
5. the **site score** of a window is ``log(RMSE / RMSE_ref)`` of the output autoencoder, clipped to
   [−5, 10], where ``RMSE_ref`` is the 95th percentile of the grace windows' RMSEs: about 0 for a window
   as unusual as the grace period's most unusual twentieth, positive beyond. (Kitsune alerts above the
   grace maximum; the percentile keeps a few attack windows inside the grace period from raising it.)

The model is fitted once, when the grace period ends, and then kept (as Kitsune's is); it is saved with the
site's baseline.

References
----------
Mirsky, Y., Doitshman, T., Elovici, Y. and Shabtai, A. "Kitsune: An Ensemble of Autoencoders for Online
Network Intrusion Detection." NDSS 2018. Müllner, D. "Modern hierarchical, agglomerative clustering
algorithms." arXiv:1109.2378, 2011. Kingma, D. P. and Ba, J. "Adam: A Method for Stochastic
Optimization." ICLR 2015.
"""

from __future__ import annotations

import math

import numpy as np

#: Range of the site score (log units).
SCORE_CLIP = (-5.0, 10.0)
#: Percentile of the grace windows' RMSEs that the score is relative to.
REF_PERCENTILE = 95.0
#: Version of :meth:`SiteAnomalyModel.to_dict`.
STATE_VERSION = 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def average_linkage(dist: np.ndarray) -> tuple[dict[int, tuple[int, int]], int]:
    """Agglomerative clustering with average linkage (UPGMA) of ``n`` items: the dendrogram.

    The nearest-neighbour-chain algorithm (Murtagh 1983; Müllner 2011, §3): follow nearest neighbours from a
    cluster until two clusters are each other's nearest, merge them, continue from the rest of the chain. The
    distance of a merged cluster to any other is the size-weighted mean of its parts' distances (Lance and
    Williams 1967), i.e. the mean pairwise distance. Ties are broken as ``scipy.cluster.hierarchy.linkage(...,
    method="average")`` breaks them (a chain starts at the lowest-numbered cluster, a nearest neighbour is the
    lowest-numbered of equals unless the chain's previous cluster is among them, a merged cluster takes the
    higher-numbered slot), so the dendrogram is scipy's even on the many equal distances of constant
    statistics (``tests/test_scorer_baselines.py`` checks it against scipy). Written with numpy because the
    edge daemon fits a site model when each grace period ends, and scipy's clustering and spatial modules then
    stayed in its memory for the rest of its life (28 MiB, ``docs/deploy.md``) for one clustering of ≤ 100
    features (O(n²) here: about a millisecond for 64).

    Parameters
    ----------
    dist : ndarray of shape (n, n)
        Symmetric distances, zero diagonal.

    Returns
    -------
    (children, root)
        ``children[node] = (a, b)`` for every merged node; leaves are ``0 … n−1``, the ``m``-th merge is node
        ``n + m``; ``root`` is the last merge (``0`` when ``n`` = 1).

    Raises
    ------
    ValueError
        If ``dist`` is not square.
    """
    d = np.array(dist, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"average_linkage needs a square distance matrix, got shape {d.shape}")
    n = d.shape[0]
    size = np.ones(n, dtype=np.int64)  # 0: the slot's cluster was merged into another slot
    node = list(range(n))  # slot -> the dendrogram node it holds now
    children: dict[int, tuple[int, int]] = {}
    chain: list[int] = []
    for m in range(n - 1):
        if not chain:
            chain.append(int(np.flatnonzero(size)[0]))
        while True:
            x = chain[-1]
            y, best = (chain[-2], d[x, chain[-2]]) if len(chain) > 1 else (-1, np.inf)
            row = np.where(size > 0, d[x], np.inf)
            row[x] = np.inf
            i = int(np.argmin(row))  # the first of equals
            if row[i] < best:
                y = i
            if len(chain) > 1 and y == chain[-2]:
                break
            chain.append(y)
        del chain[-2:]
        x, y = min(x, y), max(x, y)
        nx, ny = size[x], size[y]
        merged = (nx * d[:, x] + ny * d[:, y]) / (nx + ny)
        d[:, y], d[y, :] = merged, merged
        size[x], size[y] = 0, nx + ny
        children[n + m] = (node[x], node[y])
        node[y] = n + m
    return children, (2 * n - 2 if n > 1 else 0)


def correlation_groups(X: np.ndarray, max_size: int) -> list[list[int]]:
    """Cluster features into groups of at most ``max_size`` by correlation distance.

    Agglomerative clustering (average linkage, :func:`average_linkage`) on the distance ``1 - |corr(i, j)|``
    (constant features count as uncorrelated), then the dendrogram is cut top-down: a node with more than
    ``max_size`` leaves is split into its two children until every group fits (KitNET's feature mapper,
    Mirsky et al. 2018, §IV-B, computed here in one batch rather than incrementally).

    Parameters
    ----------
    X : ndarray of shape (n, F)
        Benign windows.
    max_size : int
        ``m``, the largest group.

    Returns
    -------
    list of list of int
        Feature indices per group, every feature in exactly one group.
    """
    F = X.shape[1]
    if F == 1:
        return [[0]]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(X, rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)
    dist = 1.0 - np.abs(corr)
    np.fill_diagonal(dist, 0.0)
    dist = np.clip((dist + dist.T) / 2.0, 0.0, None)
    children, root = average_linkage(dist)

    def leaves(node: int) -> list[int]:
        out, stack = [], [node]
        while stack:
            v = stack.pop()
            if v < F:
                out.append(v)
            else:
                stack.extend(children[v])
        return sorted(out)

    groups: list[list[int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        members = leaves(node)
        if len(members) <= max_size:
            groups.append(members)
        else:
            stack.extend(children[node])
    return sorted(groups)


class _Autoencoder:
    """``k → h → k`` sigmoid autoencoder trained with Adam on MSE (numpy)."""

    def __init__(self, k: int, h: int, rng: np.random.Generator) -> None:
        a, b = 1.0 / math.sqrt(k), 1.0 / math.sqrt(h)
        self.params = [rng.uniform(-a, a, (k, h)), np.zeros(h), rng.uniform(-b, b, (h, k)), np.zeros(k)]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w1, b1, w2, b2 = self.params
        hidden = _sigmoid(x @ w1 + b1)
        return hidden, _sigmoid(hidden @ w2 + b2)

    def rmse(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.mean((self.forward(x)[1] - x) ** 2, axis=1))

    def fit(self, x: np.ndarray, epochs: int, batch: int, lr: float, rng: np.random.Generator) -> None:
        m = [np.zeros_like(p) for p in self.params]
        v = [np.zeros_like(p) for p in self.params]
        b1_, b2_, eps, t = 0.9, 0.999, 1e-8, 0
        n = len(x)
        for _ in range(epochs):
            order = rng.permutation(n)
            for i in range(0, n, batch):
                xb = x[order[i:i + batch]]
                w1, _, w2, _ = self.params
                hidden, out = self.forward(xb)
                d_out = 2.0 * (out - xb) / xb.size * out * (1 - out)
                d_hidden = (d_out @ w2.T) * hidden * (1 - hidden)
                grads = [xb.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_out, d_out.sum(0)]
                t += 1
                for j, g in enumerate(grads):
                    m[j] = b1_ * m[j] + (1 - b1_) * g
                    v[j] = b2_ * v[j] + (1 - b2_) * g * g
                    self.params[j] = self.params[j] - lr * (m[j] / (1 - b1_**t)) / (np.sqrt(v[j] / (1 - b2_**t)) + eps)

    def to_list(self) -> list:
        return [p.tolist() for p in self.params]

    @classmethod
    def from_list(cls, params: list) -> _Autoencoder:
        ae = cls.__new__(cls)
        ae.params = [np.asarray(p, dtype=np.float64) for p in params]
        return ae


class SiteAnomalyModel:
    """KitNET-style ensemble of autoencoders fitted on one site's grace-period windows (module docstring).

    Parameters
    ----------
    max_group : int, default 10
        Largest feature group (KitNET's ``m``).
    hidden_ratio : float, default 0.75
        Hidden units per input of each autoencoder.
    epochs : int, default 60
        Adam passes over the grace windows.
    batch_size : int, default 32
    seed : int, default 0

    Attributes
    ----------
    groups_ : list of list of int
    min_, max_ : ndarray, shape (F,)
        Grace range of the compressed statistics.
    ref_ : float
        ``RMSE_ref``, the 95th percentile of the grace windows' RMSEs.

    Raises
    ------
    ValueError
        For bad settings.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).lognormal(size=(200, 6))
    >>> m = SiteAnomalyModel(epochs=20).fit(x)
    >>> bool(m.score(x * 100).mean() > m.score(x).mean())
    True
    """

    def __init__(self, max_group: int = 10, hidden_ratio: float = 0.75, epochs: int = 60, batch_size: int = 32,
                 seed: int = 0) -> None:
        if isinstance(max_group, bool) or not isinstance(max_group, int) or max_group < 2:
            raise ValueError(f"max_group={max_group!r} is invalid: expected an integer >= 2")
        if not (isinstance(hidden_ratio, (int, float)) and 0 < hidden_ratio <= 1):
            raise ValueError(f"hidden_ratio={hidden_ratio!r} is invalid: expected a number in (0, 1]")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs={epochs!r} is invalid: expected an integer >= 1")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected an integer >= 1")
        self.max_group, self.hidden_ratio, self.epochs = max_group, float(hidden_ratio), epochs
        self.batch_size, self.seed = batch_size, int(seed)

    def _norm(self, x: np.ndarray) -> np.ndarray:
        c = np.sign(x) * np.log1p(np.abs(np.asarray(x, dtype=np.float64)))
        return np.clip((c - self.min_) / (self.max_ - self.min_ + 1e-9), -1.0, 2.0)

    def _group_rmse(self, xn: np.ndarray) -> np.ndarray:
        return np.stack([ae.rmse(xn[:, g]) for g, ae in zip(self.groups_, self.ensemble_)], axis=1)

    def fit(self, x: np.ndarray) -> SiteAnomalyModel:
        """Fit on the grace windows' raw statistics ``(n, F)``.

        Raises
        ------
        ValueError
            For fewer than 2 windows or non-finite values.
        """
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or len(a) < 2 or not np.isfinite(a).all():
            raise ValueError(f"expected at least 2 finite windows (n, F), got shape {a.shape}")
        rng = np.random.default_rng(self.seed)
        c = np.sign(a) * np.log1p(np.abs(a))
        self.min_, self.max_ = c.min(axis=0), c.max(axis=0)
        xn = self._norm(a)
        self.groups_ = correlation_groups(xn, self.max_group)
        self.ensemble_ = [_Autoencoder(len(g), max(1, math.ceil(self.hidden_ratio * len(g))), rng) for g in self.groups_]
        for g, ae in zip(self.groups_, self.ensemble_):
            ae.fit(xn[:, g], self.epochs, self.batch_size, 0.01, rng)
        r = self._group_rmse(xn)
        self.rmin_, self.rmax_ = r.min(axis=0), r.max(axis=0)
        k = len(self.groups_)
        self.output_ = _Autoencoder(k, max(1, math.ceil(self.hidden_ratio * k)), rng)
        self.output_.fit(self._rnorm(r), self.epochs, self.batch_size, 0.01, rng)
        self.ref_ = float(max(np.percentile(self._rmse(xn), REF_PERCENTILE), 1e-9))
        return self

    def _rnorm(self, r: np.ndarray) -> np.ndarray:
        return np.clip((r - self.rmin_) / (self.rmax_ - self.rmin_ + 1e-9), -1.0, 10.0)

    def _rmse(self, xn: np.ndarray) -> np.ndarray:
        return self.output_.rmse(self._rnorm(self._group_rmse(xn)))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Site scores ``(n,)`` of raw window statistics ``(n, F)``: ``log(RMSE / RMSE_ref)`` clipped to [−5, 10].

        Raises
        ------
        RuntimeError
            Before ``fit``.
        """
        if not hasattr(self, "output_"):
            raise RuntimeError("SiteAnomalyModel is not fitted")
        a = np.asarray(x, dtype=np.float64)
        if len(a) == 0:
            return np.zeros(0)
        return np.clip(np.log(np.maximum(self._rmse(self._norm(a)), 1e-12) / self.ref_), *SCORE_CLIP)

    def to_dict(self) -> dict:
        """JSON-ready state (settings and weights)."""
        return {"version": STATE_VERSION, "params": {"max_group": self.max_group, "hidden_ratio": self.hidden_ratio,
                                                     "epochs": self.epochs, "batch_size": self.batch_size,
                                                     "seed": self.seed},
                "min": self.min_.tolist(), "max": self.max_.tolist(), "groups": self.groups_,
                "ensemble": [ae.to_list() for ae in self.ensemble_], "rmin": self.rmin_.tolist(),
                "rmax": self.rmax_.tolist(), "output": self.output_.to_list(), "ref": self.ref_}

    @classmethod
    def from_dict(cls, d: dict) -> SiteAnomalyModel:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            For a corrupt or other-version state.
        """
        try:
            if d.get("version") != STATE_VERSION:
                raise ValueError(f"not a site-model state of version {STATE_VERSION}")
            m = cls(**d["params"])
            m.min_, m.max_ = np.asarray(d["min"], np.float64), np.asarray(d["max"], np.float64)
            m.groups_ = [[int(i) for i in g] for g in d["groups"]]
            m.ensemble_ = [_Autoencoder.from_list(p) for p in d["ensemble"]]
            m.rmin_, m.rmax_ = np.asarray(d["rmin"], np.float64), np.asarray(d["rmax"], np.float64)
            m.output_ = _Autoencoder.from_list(d["output"])
            m.ref_ = float(d["ref"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"corrupt site-model state ({exc!r})") from exc
        return m
