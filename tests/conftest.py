"""Fixtures shared across test modules, and the test-wide torch settings."""

import torch

from clip_fixtures import tiny_backbone, tiny_clip_dir, tiny_family_dirs  # noqa: F401


def pytest_configure(config):
    # Test models are tiny: each op takes microseconds, and on a 2-core machine a second OpenMP
    # thread spends far longer waiting for the other than computing (measured: ~20x slower under
    # load). Subprocesses the tests start (torchrun, Ray workers) choose their own threads.
    torch.set_num_threads(1)
