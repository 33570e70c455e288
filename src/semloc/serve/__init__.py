"""`semloc serve`: an HTTP API and a web page over one trained run.

`create_app(run_dir, cfg)` (in `semloc.serve.app`, whose docstring lists the server's files and
their jobs) loads the checkpoint and the CLIP its features came from; `MicroBatcher` (in
`semloc.serve.batcher`) groups concurrent requests into one model call; `run_server` (in
`semloc.serve.server`) runs an app under uvicorn with the `serve.*` limits. The batcher needs
neither FastAPI nor uvicorn, so it works without the serve extra.
"""

from semloc.serve.batcher import MicroBatcher

__all__ = ["MicroBatcher", "create_app"]


def __getattr__(name: str):  # create_app on demand: importing FastAPI costs a second
    if name == "create_app":
        from semloc.serve.app import create_app

        return create_app
    raise AttributeError(name)
