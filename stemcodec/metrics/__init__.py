"""Evaluation metrics: timbre stability, identity, coherence, leakage, codec quality."""
