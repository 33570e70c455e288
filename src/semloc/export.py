"""Export a trained run to ONNX, for serving without PyTorch (`semloc export RUN --format onnx`).

The fusion model becomes one graph with the six `FeatureBatch` arrays as inputs (dynamic batch,
text-token and image-token axes) and `logits` plus the model's explanation outputs (similarity,
gate, modality_weights, whichever it has) as outputs. `with_backbone` also exports the CLIP the
run's features were extracted with as two graphs that compute exactly those features:

    text_tower.onnx    input_ids, attention_mask (B, Nt) int64 -> text_tokens (B, Nt, text_width)
                       (last_hidden_state, after the final layer norm), text_embed (B, embed_dim)
    vision_tower.onnx  pixel_values (B, 3, S, S) float32 -> image_tokens (B, Nv, vision_width)
                       (post-layernormed, CLS first), image_embed (B, embed_dim)

Graphs come from torch's dynamo exporter (the TorchScript tracer silently bakes the example's
data-dependent shapes into this model); each is checked against PyTorch on fresh inputs of other
sizes before the export is declared done, so a graph that disagrees is never written. manifest.json
(written last, atomically) describes everything; `semloc.onnx_runtime` runs it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semloc import __version__
from semloc.errors import SemlocError
from semloc.features.batch import FeatureBatch
from semloc.io import atomic_path, atomic_write_json
from semloc.onnx_runtime import (
    EXPLANATION_OUTPUTS,
    EXPORT_FORMAT,
    FEATURE_INPUTS,
    MANIFEST,
    MODEL_FILE,
    TEXT_TOWER_FILE,
    VISION_TOWER_FILE,
    OnnxGraph,
)

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| accepted on the check inputs
# run metadata the manifest carries, so the export directory alone serves (see runs.LoadedRun)
META_KEYS = (
    "model_name",
    "config",
    "labels",
    "dims",
    "feature_header",
    "feature_fingerprint",
    "feature_manifest_sha256",
    "backbone_path",
    "store_path",
    "num_params",
    "semloc_version",
    "precision",
    "temperature",
)


class FeatureModel(nn.Module):
    """A semloc model with the FeatureBatch fields as separate tensor arguments (ONNX inputs)."""

    def __init__(self, model: nn.Module, outputs: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.outputs = tuple(outputs)

    def forward(
        self,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        image_tokens: torch.Tensor,
        image_present: torch.Tensor,
        text_embed: torch.Tensor,
        image_embed: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        out = self.model(
            FeatureBatch(
                text_tokens, text_mask, image_tokens, image_present, text_embed, image_embed
            )
        )
        return tuple(getattr(out, name) for name in self.outputs)


class TextTower(nn.Module):
    """CLIP's text tower as the feature store records it (see semloc.clip.backbone)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.text_model, self.projection = clip.text_model, clip.text_projection

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state, self.projection(out.pooler_output)


class VisionTower(nn.Module):
    """CLIP's vision tower: every token post-layernormed, the projected CLS as the embedding."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.vision_model, self.projection = clip.vision_model, clip.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vision_model(pixel_values=pixel_values)
        tokens = self.vision_model.post_layernorm(out.last_hidden_state)
        return tokens, self.projection(tokens[:, 0])


# ----------------------------------------------------------------------------------------------
# examples and checks


def example_features(dims: dict[str, int], batch: int, text_len: int, image_len: int, seed: int):
    """Random features shaped like a store's: varied text lengths, some posts without image."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, text_len + 1, (batch,), generator=g)
    lengths[0] = text_len
    mask = torch.arange(text_len)[None] < lengths[:, None]
    present = torch.arange(batch) % 3 != 1
    return FeatureBatch(
        text_tokens=torch.randn(batch, text_len, dims["text_width"], generator=g) * mask[..., None],
        text_mask=mask,
        image_tokens=torch.randn(batch, image_len, dims["vision_width"], generator=g)
        * present[:, None, None],
        image_present=present,
        text_embed=torch.randn(batch, dims["embed_dim"], generator=g),
        image_embed=torch.randn(batch, dims["embed_dim"], generator=g) * present[:, None],
    )


def _max_difference(graph: OnnxGraph, module: nn.Module, args: dict[str, torch.Tensor]) -> float:
    with torch.inference_mode():
        expected = module(*args.values())
    got = graph.run_arrays({k: v.numpy() for k, v in args.items()})
    return max(
        float(np.max(np.abs(got[name] - e.float().numpy()), initial=0.0))
        for name, e in zip(graph.outputs, expected, strict=True)
    )


def _export_graph(
    module: nn.Module,
    args: dict[str, torch.Tensor],
    dynamic: dict[str, dict[int, Any]],
    output_names: Sequence[str],
    path: Path,
    checks: Sequence[dict[str, torch.Tensor]],
    what: str,
) -> dict[str, Any]:
    """Export `module` to `path` (atomically) after checking it on `checks`; returns its spec."""
    module.eval()
    quiet = io.StringIO()
    try:
        # no_grad: a tensor built from parameters inside forward (SG-MFT's prefix-attention mask)
        # would otherwise be traced with autograd on, which the exporter cannot lower
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                tuple(args.values()),
                input_names=list(args),
                output_names=list(output_names),
                dynamic_shapes=dynamic,
                dynamo=True,
                verbose=False,
            )
    except Exception as e:
        raise SemlocError(f"exporting the {what} to ONNX failed: {e}") from None
    spec = {
        "file": path.name,
        "inputs": [
            {
                "name": name,
                "dtype": str(t.dtype).removeprefix("torch."),
                "shape": _axes(t, name, dynamic),
            }
            for name, t in args.items()
        ],
        "outputs": [{"name": name} for name in output_names],
    }
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)
        graph = OnnxGraph(tmp, spec)
        worst = max(_max_difference(graph, module, check) for check in checks)
        if not worst <= PARITY_TOLERANCE:
            raise SemlocError(
                f"the ONNX {what} disagrees with PyTorch by {worst:.3g} (> {PARITY_TOLERANCE}); "
                "nothing was written"
            )
    spec["max_abs_difference"] = worst
    for out, dim in zip(spec["outputs"], _output_ranks(module, args), strict=True):
        out["rank"] = dim
    return spec


def _axes(t: torch.Tensor, name: str, dynamic: dict[str, dict[int, Any]]) -> list[Any]:
    named = {axis: dim.__name__ for axis, dim in dynamic.get(name, {}).items()}
    return [named.get(i, size) for i, size in enumerate(t.shape)]


def _output_ranks(module: nn.Module, args: dict[str, torch.Tensor]) -> list[int]:
    with torch.inference_mode():
        return [t.ndim for t in module(*args.values())]


# ----------------------------------------------------------------------------------------------
# the export


def _feature_dynamic() -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch")
    text, image = torch.export.Dim("text_tokens"), torch.export.Dim("image_tokens")
    return {
        "text_tokens": {0: batch, 1: text},
        "text_mask": {0: batch, 1: text},
        "image_tokens": {0: batch, 1: image},
        "image_present": {0: batch},
        "text_embed": {0: batch},
        "image_embed": {0: batch},
    }


def export_model(model: nn.Module, dims: dict[str, int], path: Path) -> dict[str, Any]:
    """The fusion model as ONNX at `path`; its outputs are those the model returns (not None)."""
    model = model.eval().cpu()
    example = example_features(dims, 3, 5, 4, seed=0)  # distinct sizes, so no axis is merged
    with torch.inference_mode():
        out = model(example)
    outputs = ["logits", *(n for n in EXPLANATION_OUTPUTS if getattr(out, n, None) is not None)]
    wrapped = FeatureModel(model, outputs)
    checks = [
        {n: getattr(example_features(dims, b, t, v, seed=s), n) for n in FEATURE_INPUTS}
        for b, t, v, s in ((7, 11, 6, 1), (2, 1, 9, 2), (1, 3, 4, 3))
    ]
    args = {n: getattr(example, n) for n in FEATURE_INPUTS}
    return _export_graph(wrapped, args, _feature_dynamic(), outputs, path, checks, "model")


def export_towers(backbone: Any, out_dir: Path) -> dict[str, dict[str, Any]]:
    """The CLIP text and vision towers of a loaded `semloc.clip.backbone.Backbone` (fp32)."""
    clip = backbone.model
    if next(clip.parameters()).device.type != "cpu":
        raise SemlocError("export the towers from a backbone loaded on cpu")
    bos, eos = backbone.tokenize([""])[0][0]
    vocab = int(clip.config.text_config.vocab_size)
    specials = {bos, eos, backbone.pad_token_id}

    def ids(batch: int, longest: int, seed: int) -> dict[str, torch.Tensor]:
        # BOS ... EOS texts of varied lengths, padded as semloc pads them (encode_token_ids)
        g = torch.Generator().manual_seed(seed)
        x = torch.full((batch, longest), backbone.pad_token_id, dtype=torch.long)
        m = torch.zeros((batch, longest), dtype=torch.long)
        for i in range(batch):
            n = longest if i == 0 else int(torch.randint(2, longest + 1, (1,), generator=g))
            middle = torch.randint(0, vocab, (n - 2,), generator=g).tolist()
            row = [bos, *(t if t not in specials else bos + 1 for t in middle), eos]
            x[i, :n] = torch.as_tensor(row)
            m[i, :n] = 1
        return {"input_ids": x, "attention_mask": m}

    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("text_tokens")
    text = _export_graph(
        TextTower(clip),
        ids(3, 7, 0),
        {"input_ids": {0: batch, 1: tokens}, "attention_mask": {0: batch, 1: tokens}},
        ["text_tokens", "text_embed"],
        out_dir / TEXT_TOWER_FILE,
        [ids(5, min(12, backbone.max_text_tokens), 1), ids(2, 4, 2), ids(1, 2, 3)],
        "text tower",
    )
    vision = export_vision_tower(clip, int(backbone.image_size), out_dir / VISION_TOWER_FILE)
    return {"text_tower": text, "vision_tower": vision}


def export_vision_tower(clip: nn.Module, image_size: int, path: Path) -> dict[str, Any]:
    """A CLIPModel's vision tower as ONNX at `path` (dynamic batch; fixed image size)."""

    def pixels(batch: int, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {"pixel_values": torch.randn(batch, 3, image_size, image_size, generator=g)}

    return _export_graph(
        VisionTower(clip),
        pixels(3, 0),
        {"pixel_values": {0: torch.export.Dim("batch")}},
        ["image_tokens", "image_embed"],
        path,
        [pixels(2, 1), pixels(5, 2)],
        "vision tower",
    )


def export_run(
    run: str | Path,
    out_dir: str | Path | None = None,
    *,
    fmt: str = "onnx",
    with_backbone: bool = False,
    backbone_override: str | None = None,
) -> dict[str, Any]:
    """Export the run (directory or checkpoint) to `out_dir` (default RUN/onnx); returns the
    manifest, which is written last so a directory with manifest.json is a complete export."""
    from semloc.runs import load_run

    if fmt not in FORMATS:
        raise SemlocError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    loaded = load_run(run, "cpu")
    out = Path(out_dir) if out_dir else loaded.path / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until the new manifest is written
    dims = dict(loaded.meta["dims"])
    graphs = {"model": export_model(loaded.model, dims, out / MODEL_FILE)}
    log.info("exported the %s model to %s", loaded.meta["model_name"], out / MODEL_FILE)
    backbone_info = None
    if with_backbone:
        from semloc.prediction import load_run_backbone

        backbone = load_run_backbone(loaded, backbone_override, "cpu")
        graphs.update(export_towers(backbone, out))
        backbone_info = {
            "name": backbone.name,
            "image_size": int(backbone.image_size),
            "max_text_tokens": int(backbone.max_text_tokens),
            "pad_token_id": int(backbone.pad_token_id),
            "preprocessing": backbone.preprocessing.as_dict(),
        }
        log.info("exported the CLIP text and vision towers to %s", out)
    meta = {k: loaded.meta[k] for k in META_KEYS if k in loaded.meta}
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "semloc_version": __version__,
        "run": str(loaded.path.resolve()),
        "model_name": loaded.meta["model_name"],
        "labels": loaded.labels,
        "dims": dims,
        "feature_header": loaded.feature_header,
        "graphs": graphs,
        "meta": meta,
    }
    if "temperature" in loaded.meta:
        manifest["temperature"] = loaded.meta["temperature"]
    if backbone_info:
        manifest["backbone"] = backbone_info
    atomic_write_json(out / MANIFEST, manifest)
    return manifest
