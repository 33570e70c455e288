"""Every model, by name. All take (cfg, dims, num_classes) and return a ModelOutput from
forward(batch), so the trainer, evaluation and the server never need to know which one they hold.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from semloc.config import ModelConfig
from semloc.errors import ConfigError
from semloc.features.batch import FeatureDims
from semloc.models.base import ModelOutput
from semloc.models.baselines import BASELINES
from semloc.models.sgmft import SGMFT

ModelBuilder = Callable[[ModelConfig, FeatureDims, int], nn.Module]

# name -> constructor(cfg, dims, num_classes); registering a model is one line here
MODELS: dict[str, ModelBuilder] = {
    "sgmft": SGMFT,
    **BASELINES,  # text_linear, ..., gmu, hateclipper, cross_transformer
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def build_model(cfg: ModelConfig, dims: FeatureDims, num_classes: int) -> nn.Module:
    """The model named by `cfg.name`, for features of widths `dims` and `num_classes` classes."""
    builder = MODELS.get(cfg.name)
    if builder is None:
        raise ConfigError(
            f"unknown model '{cfg.name}' (config key model.name); "
            f"known models: {', '.join(MODEL_NAMES)}"
        )
    return builder(cfg, dims, num_classes)


__all__ = ["MODELS", "MODEL_NAMES", "SGMFT", "ModelBuilder", "ModelOutput", "build_model"]
