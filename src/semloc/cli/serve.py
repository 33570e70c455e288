"""semloc serve RUN [--host H] [--port P] [--image-policy text-only|fail]

Serves a trained run over HTTP: POST /predict (one post), POST /predict/batch (many), GET /labels,
GET /health, GET /openapi.json and /docs, and a web page at /. The CLIP backbone is the one the
run's features were extracted with (found through the checkpoint and its feature store, checked
by weights hash); --backbone points elsewhere when that directory has moved.
"""

from __future__ import annotations

import argparse

from semloc.errors import SemlocError

HELP = "serve a trained run over HTTP, with a web page (POST /predict, GET /)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from semloc.cli import add_config_arguments

    parser.add_argument("run", help="run directory (or checkpoint file) to serve")
    parser.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: serve.port, 8000)")
    parser.add_argument(
        "--backbone",
        metavar="DIR",
        help="CLIP directory, when the one recorded with the run has moved (default: "
        "serve.backbone; it must have the weights the run was trained on)",
    )
    parser.add_argument("--device", help="cpu | cuda | cuda:N | auto (default: serve.device)")
    parser.add_argument(
        "--image-policy",
        choices=["text-only", "fail"],
        help="what an unusable image does when a request does not say (?image_policy=): "
        "text-only predicts from the text and reports the image's outcome, fail is a 4xx "
        "(default: serve.image_policy, text-only, as every other verb)",
    )
    parser.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        help="run the model on torch or on its ONNX export (default: serve.runtime, torch)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from semloc.config import load_config

    try:
        from semloc.serve.app import check_serve_settings, create_app
        from semloc.serve.server import run_server
    except ImportError as e:
        raise SemlocError(
            f"semloc serve needs FastAPI and uvicorn ({e.name} is missing): "
            "pip install 'semloc[serve]'"
        ) from None
    cfg = load_config(args.config, args.overrides)
    serve = cfg.serve
    if args.host:
        serve.host = args.host
    if args.port is not None:
        serve.port = args.port
    if args.backbone:
        serve.backbone = args.backbone
    if args.device:
        serve.device = args.device
    if args.image_policy:
        serve.image_policy = args.image_policy
    if args.runtime:
        serve.runtime = args.runtime
    if not 0 <= serve.port <= 65535:
        raise SemlocError(f"--port {serve.port} is not a TCP port")
    check_serve_settings(serve)
    _check_port_free(serve.host, serve.port)
    app = create_app(args.run, cfg)
    print(f"serving {args.run} on http://{serve.host}:{serve.port}/  (API docs: /docs)")
    run_server(app, serve)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """A clear error before the model loads, rather than uvicorn's exit after it."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise SemlocError(f"cannot listen on {host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise SemlocError(
                f"cannot listen on {host}:{port}: {e.strerror} (choose another --port)"
            ) from None
