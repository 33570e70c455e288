"""`semloc serve`: the API on a tiny trained run, a battery of bad inputs (each a clear 4xx, the
server still serving afterwards), served == offline `semloc predict`, the micro-batcher, the CLIP
check, and the CLI."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from clip_fixtures import TINY_CLIP_KWARGS, TOKENIZER_TEXTS, random_image, write_posts
from hostile_requests import png_header_claiming
from semloc.cli import main
from semloc.clip.extract import extract_to_store
from semloc.config import ExtractConfig, ServeConfig
from semloc.errors import SemlocError
from semloc.serve.batcher import MicroBatcher

NUM_POSTS = 24
# small limits, so each one is easy to cross
LIMITS = dict(
    max_upload_bytes=200_000,
    max_image_pixels=1_000_000,
    max_text_chars=300,
    max_batch_posts=8,
    max_batch_request_bytes=2_000_000,
)


def build_served_run(root: Path, backbone: Any) -> tuple[Path, Path, Path]:
    """A posts file, its feature store (float16, as `semloc extract` writes by default) and a
    one-epoch SG-MFT run trained on it: (posts, store, run)."""
    posts = write_posts(root / "data", NUM_POSTS, image_every=2)
    store = root / "store"
    extract_to_store(
        posts, store, ExtractConfig(num_workers=0, progress=False, shard_size=64), backbone=backbone
    )
    run = root / "run"
    code = main(
        ["train", str(store), "--out", str(run), "train.epochs=1", "model.dim=32",
         "model.num_heads=2", "train.progress=false"]
    )  # fmt: skip
    assert code == 0
    return posts, store, run


def shared_served_run(
    tmp_path_factory: pytest.TempPathFactory, backbone: Any
) -> tuple[Path, Path, Path]:
    """`build_served_run` once per test session (this module and the browser test share it)."""
    root = tmp_path_factory.getbasetemp() / "served-run"
    done = root / "run" / "best.pt"
    if not done.exists():
        root.mkdir(exist_ok=True)
        return build_served_run(root, backbone)
    return root / "data" / "posts.jsonl", root / "store", root / "run"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_backbone) -> dict[str, Any]:
    from semloc.serve.app import create_app

    posts, store, run = shared_served_run(tmp_path_factory, tiny_backbone)
    cfg = ServeConfig(device="cpu", max_batch_size=8, max_wait_ms=20, **LIMITS)
    app = create_app(run, cfg, backbone=tiny_backbone)
    with TestClient(app) as client:
        yield {"posts": posts, "store": store, "run": run, "app": app, "client": client}


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (60, 40)) -> bytes:
    buf = io.BytesIO()
    random_image(seed, size).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def predict(client: TestClient, text: str | None, image: bytes | None = None, **params) -> Any:
    data = {} if text is None else {"text": text}
    files = {"image": ("photo.jpg", image, "image/jpeg")} if image is not None else None
    return client.post("/predict", params=params, data=data, files=files)


def assert_still_serving(client: TestClient) -> None:
    r = predict(client, "quiet library, exams next week", jpeg_bytes(3))
    assert r.status_code == 200, r.text
    assert r.json()["image"]["outcome"] == "present"


# ----------------------------------------------------------------------------------------------
# the API


def test_predict_returns_label_probabilities_and_explanations(served) -> None:
    client, labels = served["client"], served["app"].state.run.labels
    r = predict(client, "sunny afternoon in the park", jpeg_bytes(1, (90, 50)), explain="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predicted_label"] in labels
    assert body["label"] == body["predicted_label"]  # the deprecated alias
    assert list(body["probabilities"]) == labels
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["predicted_label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["text_replaced_characters"] == 0
    assert -1.0 <= body["similarity"] <= 1.0 and 0.0 <= body["gate"] <= 1.0
    assert body["modality_weights"]["text"] + body["modality_weights"]["image"] == pytest.approx(1)
    assert body["image"] == {"outcome": "present", "detail": None}
    ex = body["explanation"]
    grid = TINY_CLIP_KWARGS["image_size"] // TINY_CLIP_KWARGS["patch_size"]
    assert ex["grid_size"] == grid
    assert np.asarray(ex["patch_similarity"]).shape == (grid, grid)
    assert np.isfinite(ex["patch_similarity"]).all()
    # a 90x50 photo is resized to 57x32 and cropped to 32x32 from x=12; in the photo's pixels:
    sx = 57 / 90
    assert ex["crop"] == pytest.approx({"x": 12 / sx, "y": 0.0, "width": 32 / sx, "height": 50.0})
    # without explain, no heat-map and the same numbers
    plain = predict(client, "sunny afternoon in the park", jpeg_bytes(1, (90, 50))).json()
    assert plain.get("explanation") is None
    for a, b in zip(plain["probabilities"].values(), body["probabilities"].values(), strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_text_only_post(served) -> None:
    r = served["client"].post("/predict?explain=true", data={"text": "gym session done 💪"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"]["outcome"] == "no_image"
    assert body["gate"] == 0.0  # no image: SG-MFT attends within the text only
    assert body["explanation"] is None and "no image" in body["explanation_note"]


def test_labels_health_and_offline_docs(served) -> None:
    client, run = served["client"], served["app"].state.run
    assert client.get("/labels").json() == {"labels": run.labels}
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "sgmft"
    assert health["backbone"]["weights_sha256"] == run.feature_header["backbone"]["weights_sha256"]
    batching = health["batching"]  # the sizes formed add up to the posts computed
    assert sum(int(k) * n for k, n in batching["batch_sizes"].items()) == batching["posts"]
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/labels", "/health"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/predict/batch" in docs.text
    assert client.get("/redoc").status_code == 404
    # nothing the pages load comes from another host
    for path in ("/", "/docs", "/static/app.js", "/static/style.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text, path
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/app.js"' in page.text


def test_image_policy_text_only_reports_the_outcome(served) -> None:
    client = served["client"]
    r = predict(client, "beach sunset", b"this is not an image", image_policy="text-only")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"]["outcome"] == "not_an_image" and body["image"]["detail"]
    text_only = client.post("/predict", data={"text": "beach sunset"}).json()
    assert body["probabilities"] == pytest.approx(text_only["probabilities"], abs=1e-5)


def test_batch_endpoint_keeps_order_and_equals_single_posts(served) -> None:
    client = served["client"]
    img = jpeg_bytes(5)
    posts = [
        {"id": "a", "text": "coffee shop with latte art", "image": base64.b64encode(img).decode()},
        {"id": "b", "text": "leg day at the gym"},
        {
            "text": "night market",
            "image": "data:image/jpeg;base64," + base64.b64encode(img).decode(),
        },
    ]
    r = client.post("/predict/batch", json={"posts": posts})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["id"] for p in preds] == ["a", "b", None]
    assert [p["image"]["outcome"] for p in preds] == ["present", "no_image", "present"]
    single = predict(client, "coffee shop with latte art", img).json()
    assert preds[0]["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    assert preds[0]["similarity"] == pytest.approx(single["similarity"], abs=1e-5)


def test_concurrent_requests_each_get_their_own_answer(served) -> None:
    import httpx

    app = served["app"]
    texts = [f"{w} #weekend" for w in ("coffee", "park", "gym", "library", "beach", "noodles")]
    images = [jpeg_bytes(10 + i) if i % 2 else None for i in range(len(texts))]
    expected = [
        predict(served["client"], t, im).json()["probabilities"]
        for t, im in zip(texts, images, strict=True)
    ]

    async def burst() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:

            async def one(t: str, im: bytes | None) -> Any:
                files = {"image": ("p.jpg", im, "image/jpeg")} if im else None
                return await c.post("/predict", data={"text": t}, files=files)

            return await asyncio.gather(*(one(t, im) for t, im in zip(texts, images, strict=True)))

    for r, want in zip(asyncio.run(burst()), expected, strict=True):
        assert r.status_code == 200, r.text
        assert r.json()["probabilities"] == pytest.approx(want, abs=1e-5)


# ----------------------------------------------------------------------------------------------
# bad input: a clear 4xx for each, then the server still answers a good request


def _multipart_body(parts: list[tuple[str, str | None, str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "semlocboundary"
    out = b""
    for name, filename, ctype, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        out += (f"Content-Type: {ctype}\r\n" if ctype else "").encode() + b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _bad_requests(server_image: Path) -> dict[str, tuple[dict[str, Any], int, str]]:
    big = b"\xff\xd8" + b"\0" * 300_000  # > max_upload_bytes
    streamed, streamed_type = _multipart_body(
        [("text", None, None, b"x"), ("image", "a.jpg", "image/jpeg", big)]
    )

    def chunks():  # no Content-Length: the limit must hold while streaming
        for i in range(0, len(streamed), 16_384):
            yield streamed[i : i + 16_384]

    good_b64 = base64.b64encode(jpeg_bytes(2)).decode()
    return {
        "oversized upload": (
            dict(data={"text": "x"}, files={"image": ("a.jpg", big, "image/jpeg")}),
            413, "upload_too_large",
        ),
        "oversized streamed upload": (
            dict(content=chunks(), headers={"content-type": streamed_type}), 413, "upload_too_large"
        ),
        "decompression bomb (100000x100000 PNG header)": (
            dict(data={"text": "x"}, files={"image": ("bomb.png", png_header_claiming(100_000, 100_000), "image/png")}),
            413, "image_too_large",
        ),
        "too many pixels for the limit (2000x1000)": (
            dict(data={"text": "x"}, files={"image": ("big.png", png_header_claiming(2000, 1000), "image/png")}),
            413, "image_too_large",
        ),
        "too-long text": (dict(data={"text": "a" * 301}), 422, "text_too_long"),
        "text/plain as the image": (
            dict(data={"text": "x"}, files={"image": ("a.txt", b"hello", "text/plain")}),
            415, "wrong_content_type",
        ),
        "JSON body to the multipart endpoint": (dict(json={"text": "x"}), 415, "unsupported_media_type"),
        "no Content-Type": (dict(content=b"text=x"), 415, "unsupported_media_type"),
        "multipart without a boundary": (
            dict(content=b"--zz\r\ngarbage", headers={"content-type": "multipart/form-data"}),
            400, "malformed_multipart",
        ),
        "undecodable image bytes": (
            dict(data={"text": "x"}, files={"image": ("a.jpg", b"\xff\xd8\xff garbage", "image/jpeg")}),
            422, "invalid_image",
        ),
        "truncated JPEG": (
            dict(data={"text": "x"}, files={"image": ("a.jpg", jpeg_bytes(4)[:300], "image/jpeg")}),
            422, "invalid_image",
        ),
        "empty image file": (
            dict(data={"text": "x"}, files={"image": ("a.jpg", b"", "image/jpeg")}), 422, "invalid_image"
        ),
        "HEIC photo": (
            dict(data={"text": "x"}, files={"image": ("a.heic", b"\0\0\0\x18ftypheic" + b"\0" * 64, "image/heic")}),
            415, "unsupported_image_format",
        ),
        "missing text field": (
            dict(files={"image": ("a.jpg", jpeg_bytes(1), "image/jpeg")}), 422, "missing_field"
        ),
        "a server path as the image (form field)": (
            dict(data={"text": "x", "image": str(server_image)}), 422, "image_not_a_file"
        ),
        "a server path as the image (multipart part without a file)": (
            dict(data={"text": "x"}, files={"image": (None, str(server_image))}), 422, "image_not_a_file"
        ),
        "a path-like extra field": (
            dict(data={"text": "x", "image_path": str(server_image)}), 422, "unknown_field"
        ),
        "two posts in one /predict": (
            dict(content=_multipart_body([("text", None, None, b"a"), ("text", None, None, b"b")])[0],
                 headers={"content-type": _multipart_body([])[1]}),
            422, "repeated_field",
        ),
        "bad query parameter": (dict(params={"explain": "perhaps"}, data={"text": "x"}), 422, "invalid_parameter"),
        "batch: a server path as the image": (
            dict(url="/predict/batch", json={"posts": [{"text": "x", "image": str(server_image)}]}),
            422, "invalid_base64",
        ),
        "batch: a path-like key": (
            dict(url="/predict/batch", json={"posts": [{"text": "x", "image_file": str(server_image)}]}),
            422, "unknown_field",
        ),
        "batch: too many posts": (
            dict(url="/predict/batch", json={"posts": [{"text": "x"}] * 9}), 413, "too_many_posts"
        ),
        "batch: missing text": (
            dict(url="/predict/batch", json={"posts": [{"image": good_b64}]}), 422, "missing_field"
        ),
        "batch: not JSON": (
            dict(url="/predict/batch", content=b"{posts: oops", headers={"content-type": "application/json"}),
            400, "invalid_json",
        ),
        "batch: multipart instead of JSON": (
            dict(url="/predict/batch", data={"text": "x"}, files={"image": ("a.jpg", jpeg_bytes(1), "image/jpeg")}),
            415, "unsupported_media_type",
        ),
        "batch: one bomb among good posts": (
            dict(url="/predict/batch", json={"posts": [
                {"text": "x", "image": good_b64},
                {"text": "y", "image": base64.b64encode(png_header_claiming(100_000, 100_000)).decode()},
            ]}),
            413, "image_too_large",
        ),
    }  # fmt: skip


BAD_CASES = list(_bad_requests(Path("/placeholder")))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(
    served, tmp_path: Path, case: str
) -> None:
    client = served["client"]
    # a real image on the server's disk: if the server ever opened a client's path, this case
    # would succeed instead of being refused
    server_image = tmp_path / "on_server.jpg"
    server_image.write_bytes(jpeg_bytes(7))
    kwargs, status, code = _bad_requests(server_image)[case]
    kwargs = dict(kwargs)
    url = kwargs.pop("url", "/predict")
    # these cases are about refusals: an unusable image is a 4xx only under image_policy=fail
    kwargs["params"] = {"image_policy": "fail", **kwargs.get("params", {})}
    r = client.post(url, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    if "batch: one bomb" in case:
        assert error.get("post") == 1
    assert_still_serving(client)


def test_an_unknown_route_and_method_are_json_errors(served) -> None:
    client = served["client"]
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    assert client.get("/predict").json()["error"]["code"] == "method_not_allowed"
    assert_still_serving(client)


# ----------------------------------------------------------------------------------------------
# served == offline


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def test_served_predictions_equal_offline_predict(served, tmp_path: Path) -> None:
    """Every post of the posts file, sent as text + image bytes, gets the probabilities (and
    similarity, gate, modality weights) `semloc predict` computes from the extracted store."""
    client, run, labels = served["client"], served["run"], served["app"].state.run.labels
    out = tmp_path / "offline.csv"
    assert main(["predict", str(run), str(served["store"]), "-o", str(out)]) == 0
    offline = _read_csv(out)
    out2 = tmp_path / "offline_posts.csv"  # and predicted straight from the posts file
    assert main(["predict", str(run), str(served["posts"]), "-o", str(out2)]) == 0
    offline_posts = _read_csv(out2)
    records = [json.loads(line) for line in served["posts"].read_text().splitlines()]
    base = served["posts"].parent
    served_rows: dict[str, Any] = {}
    for start in range(0, len(records), LIMITS["max_batch_posts"]):
        chunk = records[start : start + LIMITS["max_batch_posts"]]
        posts = [
            {"id": rec["id"], "text": rec["text"]}
            | ({"image": base64.b64encode((base / rec["image"]).read_bytes()).decode()}
               if rec.get("image") else {})
            for rec in chunk
        ]  # fmt: skip
        r = client.post("/predict/batch", json={"posts": posts})
        assert r.status_code == 200, r.text
        served_rows |= {p["id"]: p for p in r.json()["predictions"]}
    # and one through the single-post endpoint
    first = records[0]
    single = predict(client, first["text"], (base / first["image"]).read_bytes()).json()
    assert single["probabilities"] == pytest.approx(
        served_rows[first["id"]]["probabilities"], abs=1e-5
    )

    assert set(served_rows) == set(offline)
    for pid, want in offline.items():
        got = served_rows[pid]
        assert got["predicted_label"] == want["predicted_label"], pid
        assert got["image"]["outcome"] == offline_posts[pid]["image_outcome"], pid
        for lab in labels:
            assert got["probabilities"][lab] == pytest.approx(float(want[f"p_{lab}"]), abs=1e-5)
        assert got["similarity"] == pytest.approx(float(want["similarity"]), abs=1e-5)
        assert got["gate"] == pytest.approx(float(want["gate"]), abs=1e-5)
        assert got["modality_weights"]["text"] == pytest.approx(
            float(want["weight_text"]), abs=1e-5
        )
        if offline_posts is not None:
            p = offline_posts[pid]
            for lab in labels:
                assert got["probabilities"][lab] == pytest.approx(float(p[f"p_{lab}"]), abs=1e-5)


# ----------------------------------------------------------------------------------------------
# the CLIP check


def test_the_run_finds_its_own_clip_and_refuses_another(served, tmp_path: Path) -> None:
    from semloc.clip.tiny import build_clip_from_scratch
    from semloc.prediction import load_run_backbone
    from semloc.runs import load_run

    run = load_run(served["run"])
    found = load_run_backbone(run)  # through the feature store the run records
    assert found.weights_sha256 == run.feature_header["backbone"]["weights_sha256"]

    other = build_clip_from_scratch(
        tmp_path / "other", TOKENIZER_TEXTS, **{**TINY_CLIP_KWARGS, "seed": 1}
    )
    with pytest.raises(SemlocError, match="weights_sha256") as e:
        load_run_backbone(run, override=str(other))
    assert "--backbone" in str(e.value)


# ----------------------------------------------------------------------------------------------
# the micro-batcher


def test_micro_batcher_groups_waiting_requests_and_routes_results() -> None:
    entered, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def run_batch(items: list[int]) -> list[Any]:
        calls.append(list(items))
        if len(calls) == 1:  # hold the first call until the others have queued behind it
            entered.set()
            release.wait(10)
        return [ValueError(f"bad {x}") if x == 13 else x * 10 for x in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run_batch, max_batch_size=8, max_wait_ms=50)
    try:
        first = batcher.submit_future(0)
        assert entered.wait(10)
        rest = [batcher.submit_future(i) for i in range(1, 20)]
        release.set()
        assert first.result(10) == 0
        for i, fut in zip(range(1, 20), rest, strict=True):
            if i == 13:  # an error reaches its own caller only
                with pytest.raises(ValueError, match="bad 13"):
                    fut.result(10)
            else:
                assert fut.result(10) == i * 10
    finally:
        batcher.close()
    # 19 items were waiting when the first call returned: they left in batches of 8, 8, 3
    assert [len(c) for c in calls] == [1, 8, 8, 3]
    assert sorted(x for c in calls for x in c) == list(range(20))
    assert batcher.stats()["model_calls"] == 4 and batcher.stats()["posts"] == 20
    assert batcher.stats()["batch_sizes"] == {"1": 1, "3": 1, "8": 2}  # what /health shows


def test_micro_batcher_async_submissions_and_a_failing_batch() -> None:
    fail = {"on": False}

    def run_batch(items: list[str]) -> list[str]:
        if fail["on"]:
            raise RuntimeError("model exploded")
        return [s.upper() for s in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(run_batch, max_batch_size=4, max_wait_ms=50)

    async def go() -> None:
        words = [f"w{i}" for i in range(10)]
        got = await asyncio.gather(*(batcher.submit(w) for w in words))
        assert got == [w.upper() for w in words]
        assert await batcher.submit_many(["a", "b"]) == ["A", "B"]
        fail["on"] = True
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit("x")
        fail["on"] = False
        assert await batcher.submit("still here") == "STILL HERE"

    try:
        asyncio.run(go())
    finally:
        batcher.close()
    assert max(batcher.batch_sizes) > 1  # ten at once, a 50 ms window: they shared calls
    assert max(batcher.batch_sizes) <= 4


def test_micro_batcher_off_means_one_post_per_call() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda xs: xs, max_batch_size=1, max_wait_ms=5)
    futures = [batcher.submit_future(i) for i in range(6)]
    assert [f.result(10) for f in futures] == list(range(6))
    batcher.close()
    assert dict(batcher.batch_sizes) == {1: 6}
    with pytest.raises(ValueError):
        MicroBatcher(lambda xs: xs, max_batch_size=0, max_wait_ms=5)


# ----------------------------------------------------------------------------------------------
# the CLI


def test_cli_serve_reports_bad_arguments(tmp_path: Path, capsys) -> None:
    assert main(["serve", str(tmp_path / "no-such-run"), "--port", "0"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert "not a TCP port" in capsys.readouterr().err
    for setting in ("serve.read_timeout_s=0", "serve.max_connections=-1", "serve.max_wait_ms=-1"):
        assert main(["serve", str(tmp_path), setting]) == 2
        assert f"config key '{setting.split('=')[0]}'" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "serve.image_policy=skip"]) == 2  # not a server policy
    assert "serve.image_policy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("size", "mode"), [((60, 40), "RGB"), ((33, 97), "RGBA"), ((32, 32), "L"), ((200, 31), "P")]
)
def test_early_resize_gives_the_same_pixels(tiny_backbone, size, mode) -> None:
    """The server resizes uploads on the request's thread; CLIP's preprocessing must then see
    exactly what it would have made itself."""
    from semloc.serve.predictor import presize

    prep = tiny_backbone.preprocessing
    img = random_image(9, size, mode)
    np.testing.assert_array_equal(prep(presize(img, prep)), prep(img))
