"""Offline work on the temporal scorer (:mod:`edge.scorer` is what runs on the edge): training
(:mod:`training.scorer.train`), the comparison with baselines (:mod:`training.scorer.evaluate`) and the baseline
detectors themselves (:mod:`training.scorer.baselines`: Isolation Forest, an LSTM autoencoder, a Kitsune-style
autoencoder ensemble)."""
