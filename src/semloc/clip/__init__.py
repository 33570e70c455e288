"""Frozen CLIP: loading a Hugging Face checkpoint offline, encoding posts, caching features."""
