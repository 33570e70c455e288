"""Fixtures shared across test modules."""

from clip_fixtures import tiny_backbone, tiny_clip_dir  # noqa: F401
