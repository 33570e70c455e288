"""The offline demo: a generated world of posts (`semloc.demo.world`) to run the pipeline on."""

# What the demo CLIP can learn from (`semloc.demo.pipeline.write_clip_pairs`); here, light to
# import, for the command line's choices. The default, captions+web, keeps the demo's own posts
# unseen by its CLIP, as a real CLIP never saw a user's posts (docs/model.md).
CLIP_DATA: tuple[str, ...] = ("captions", "captions+posts", "captions+web")
DEFAULT_CLIP_DATA = "captions+web"
