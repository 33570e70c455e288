"""Run an exported model (`semloc export RUN --format onnx`) on onnxruntime, without PyTorch.

    from semloc.onnx_runtime import load_export
    exported = load_export("run/onnx")               # manifest.json + model.onnx (+ towers)
    out = exported.model.run_arrays(features)        # dict of numpy arrays in, numpy out
    tokens, embed = exported.text_tower.run(input_ids, attention_mask)   # with --with-backbone

This module imports numpy and onnxruntime only. `OnnxModel` also has the call interface of the
PyTorch models (a `FeatureBatch` in, a `ModelOutput` with logits / similarity / gate /
modality_weights out, `eval()`, `forward`), so `semloc.runs.load_run(run, runtime="onnx")` hands
it to predict, evaluate, the Python API and the server unchanged; only that adapter converts to
and from torch tensors (imported when it is called).

The export directory holds (see `semloc.export`):

    manifest.json       format, labels, dims, inputs/outputs (names, dtypes, axes), the run's
                        metadata (config, feature header, backbone path, temperature when the
                        checkpoint has one) and the files below
    model.onnx          the fusion model: the six feature arrays in, logits (+ explanations) out
    text_tower.onnx     with --with-backbone: input_ids, attention_mask -> token states, embed
    vision_tower.onnx   with --with-backbone: pixel_values -> token states, embed
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semloc.errors import SemlocError

EXPORT_FORMAT = "semloc-onnx-1"
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
TEXT_TOWER_FILE = "text_tower.onnx"
VISION_TOWER_FILE = "vision_tower.onnx"
# the model's inputs: the FeatureBatch fields, in this order (see semloc.features.batch)
FEATURE_INPUTS: tuple[str, ...] = (
    "text_tokens",
    "text_mask",
    "image_tokens",
    "image_present",
    "text_embed",
    "image_embed",
)
EXPLANATION_OUTPUTS: tuple[str, ...] = ("similarity", "gate", "modality_weights", "picture_match")
_NUMPY_DTYPES = {"float32": np.float32, "bool": np.bool_, "int64": np.int64}


def _session(path: Path, threads: int = 0) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise SemlocError(
            "the ONNX runtime needs onnxruntime, which is not installed: "
            "pip install 'semloc[export]'"
        ) from None
    if not path.is_file():
        raise SemlocError(f"{path} is missing from the ONNX export")
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # a truncated or foreign file
        raise SemlocError(f"cannot load ONNX model {path}: {e}") from None


class OnnxGraph:
    """One exported graph: named numpy inputs in, named numpy outputs out."""

    def __init__(self, path: Path, spec: Mapping[str, Any], threads: int = 0) -> None:
        self.path = path
        self.session = _session(path, threads)
        self.inputs = [i["name"] for i in spec["inputs"]]
        self.input_dtypes = {i["name"]: _NUMPY_DTYPES[i["dtype"]] for i in spec["inputs"]}
        self.outputs = [o["name"] for o in spec["outputs"]]
        # the graph may have dropped inputs its model never reads (a text-only model's images)
        self.graph_inputs = {i.name for i in self.session.get_inputs()}

    def run_arrays(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [name for name in self.inputs if name not in arrays]
        if missing:
            raise SemlocError(f"{self.path.name}: missing inputs {', '.join(missing)}")
        feeds = {
            name: np.ascontiguousarray(np.asarray(arrays[name]), dtype=self.input_dtypes[name])
            for name in self.inputs
            if name in self.graph_inputs
        }
        values = self.session.run(self.outputs, feeds)
        return dict(zip(self.outputs, values, strict=True))


class OnnxModel(OnnxGraph):
    """The fusion model on onnxruntime, callable like the PyTorch model for prediction."""

    training = False

    def forward(self, batch: Any) -> Any:
        """A FeatureBatch in, a `semloc.models.base.ModelOutput` (torch tensors) out."""
        import torch

        from semloc.models.base import ModelOutput

        arrays = {name: getattr(batch, name).detach().cpu().numpy() for name in self.inputs}
        out = self.run_arrays(arrays)
        return ModelOutput(**{name: torch.from_numpy(value) for name, value in out.items()})

    __call__ = forward

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        if mode:
            raise SemlocError("an ONNX-exported model cannot be trained; train the PyTorch run")
        return self

    def to(self, device: Any) -> OnnxModel:
        if str(device) != "cpu":
            raise SemlocError(f"the ONNX runtime runs on cpu here, not {device}")
        return self


class OnnxTower(OnnxGraph):
    """A CLIP tower: (token states, pooled projected embedding) from ids or pixels."""

    def run(self, *arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.run_arrays(dict(zip(self.inputs, arrays, strict=True)))
        return out[self.outputs[0]], out[self.outputs[1]]


@dataclass
class OnnxExport:
    """A loaded export directory."""

    path: Path
    manifest: dict[str, Any]
    model: OnnxModel
    text_tower: OnnxTower | None = None
    vision_tower: OnnxTower | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.manifest["meta"])


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    path = Path(export_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SemlocError(f"cannot read the ONNX export manifest {path}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise SemlocError(f"{path} is not a semloc ONNX export manifest ({EXPORT_FORMAT})")
    return manifest


def load_export(export_dir: str | Path, *, threads: int = 0) -> OnnxExport:
    """Open an export directory written by `semloc export`; towers only if it holds them."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    graphs = manifest["graphs"]
    towers: dict[str, OnnxTower] = {}
    for key in ("text_tower", "vision_tower"):
        if key in graphs:
            towers[key] = OnnxTower(export_dir / graphs[key]["file"], graphs[key], threads)
    model = OnnxModel(export_dir / graphs["model"]["file"], graphs["model"], threads)
    return OnnxExport(export_dir, manifest, model, **towers)
