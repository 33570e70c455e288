"""Training: the generic trainer and distributed helpers."""
