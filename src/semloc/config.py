"""One typed config tree for every verb: a YAML/JSON file plus dotted overrides.

    cfg = load_config("exp.yaml", ["model.dim=128", "train.lr=3e-4"])

Unknown keys and wrongly-typed values are errors that name the key. The *resolved* config (every
default filled in) is what runs save, so a run can always be repeated from its directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from semloc.errors import ConfigError

T = TypeVar("T")


@dataclass
class ModelConfig:
    """Which model to build and its size. Fields a model does not use are ignored by it."""

    name: str = "sgmft"  # sgmft, or a baseline name (see `semloc.models.MODEL_NAMES`)
    dim: int = 256  # model width d
    num_heads: int = 4  # attention heads in every attention block
    sim_layers: int = 2  # SIM layers L (0 = no Similarity-Guided Interaction Module)
    fusion_layers: int = 1  # SFM cross-attention blocks
    mlp_ratio: float = 2.0  # FFN hidden width = mlp_ratio * dim
    dropout: float = 0.1
    coarse_similarity: bool = True  # off: interpolation gate fixed at a = 0.5
    # the coarse guidance's attention: "interpolation" = (1 - a) A_self + a A_cross (two
    # attentions); "prefix" = one attention over both modalities' tokens, the other's keys
    # biased by logit(a) (MKGformer's prefix-guided interaction, similarity-aware)
    coarse_attention: Literal["interpolation", "prefix"] = "interpolation"
    # the fine guidance: "token" = each token's best-matching partner tokens, by the token-level
    # cosine E, added to its FFN input (the default since 2026-12-06: the channel FiLM below
    # scored 1.3-1.9 dev points lower on both study worlds, docs/model.md); "channel" = FiLM of
    # the FFN's hidden units by e = u * w; "none" = plain FFN
    fine_similarity: Literal["channel", "token", "none"] = "token"
    # the channel FiLM's form (fine_similarity=channel): W_s of rank film_rank (0 = full,
    # p x 2 hidden; a lower rank gives its parameters back as FFN width), dropout on its input
    # e, and film_gate: (gamma, beta) scaled by the coarse gate a, so a post the coarse
    # similarity calls mismatched gets no element-wise modulation either
    film_rank: int = 0
    film_dropout: float = 0.0
    film_gate: bool = False
    fusion: Literal["sfm", "concat"] = "sfm"
    similarity_weighting: bool = True  # SFM modality weights from [z_t; z_v; s] (off: fixed 1/2)
    gate_scale_init: float = 2.0  # k in a = sigmoid(k (s - b) / similarity_std)
    gate_bias_init: float | None = None  # b; None = median matched-pair cosine of the train split
    # where the gate starts: "data" = b at the train-split median, k = gate_scale_init per std of
    # s; "backbone" = a starts as the backbone's own pair probability sigmoid(scale cos + bias)
    # (sets k and b; needs a store whose header records a sigmoid similarity, i.e. SigLIP)
    gate_init: Literal["data", "backbone"] = "data"
    similarity_center: float | None = None  # b0 s is standardised around; None = gate_bias_init
    # (the training command fills it in with gate_init=backbone, where b is not the median)
    similarity_std: float | None = None  # spread s is standardised by; None = the train split's
    # std of the pair cosine (filled by the training command); 1.0 = the raw cosine
    fusion_gate: bool = True  # the gate a also scales the SFM's cross-attention (off: always on)
    similarity_prior: bool = True  # pi_image's logit gets kappa * standardised s (off: MLP only)
    prior_scale_init: float = 1.0  # kappa at init (0 = pi starts at the MLP alone, then learns)
    pooled_embeddings: bool = True  # u, w projected into z_t, z_v (off: only through s)
    # deep supervision of the unimodal streams (sgmft, cross_transformer): in training, the
    # classifier head is also applied to z_t (every post) and z_v (posts with a picture), each
    # term weight x cross-entropy added to the loss; 0 = off (no effect on the model or outputs);
    # None = the model's own default, measured on dev: 0.0 for both (sgmft's was 1.0 until
    # 2026-12-07, docs/model.md "Deep supervision on the web-caption demo CLIP")
    unimodal_supervision: float | None = None
    # training only: each post's token part of the pooled text feature z_t is dropped with this
    # probability, leaving the pooled CLIP text embedding's projection (needs pooled_embeddings)
    text_token_dropout: float = 0.0
    # similarity-aware fallback to the text (sgmft): a linear text classifier on u and a
    # picture-match probability r = P(the picture belongs to the text | s, the text classifier's
    # confidence), learned against in-batch mismatched pictures; the output is the mixture
    # r p_fused + (1 - r) p_text (r = 0 without picture). r learns only from the mismatches, so
    # a fused path that memorises training posts cannot teach it to trust their pictures
    text_fallback: bool = False
    token_temperature: float = 0.1  # tau in softmax(E / tau) of the token-level variant
    max_text_tokens: int = 77  # positional table size for models that embed token positions


@dataclass
class TrainConfig:
    """The generic trainer's settings (spec: training defaults)."""

    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 0.01
    # learning-rate multiplier of the 0-dim parameters (SG-MFT's gate k, b and prior kappa; any
    # model's scalars), which AdamW otherwise moves by about lr per step: 1 = the same lr as the
    # rest; the warm-up/cosine schedule scales their lr like every other group's
    scalar_lr_scale: float = 1.0
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    patience: int = 5  # early stopping on dev macro-F1; 0 disables
    seed: int = 0
    class_weights: Literal["none", "balanced"] = "none"
    label_smoothing: float = 0.0
    # mismatch augmentation (semloc.features.batch.swap_pictures): each training post with a
    # picture takes another post's picture with this probability, keeping its label; 0 = off
    swap_pictures: float = 0.0
    # picture dropout (semloc.features.batch.drop_pictures): each training post with a picture
    # is trained without it with this probability, so the text path also learns alone; 0 = off
    drop_pictures: float = 0.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0  # DataLoader worker processes reading the feature store
    progress: bool = True
    # speed (semloc.precision): autocast precision; auto = bf16 where the hardware runs it
    # natively (CUDA with bf16, CPUs with AVX-512-BF16/AMX), else fp32; fp16 adds loss scaling
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "fp32"
    num_threads: int = 0  # torch CPU threads while training (0 = torch's default, one per core)
    compile: bool = False  # torch.compile the model (needs a C++ compiler on CPU)
    # tracking (semloc.tracking): any of tensorboard, mlflow; written under tracking_dir
    report_to: list[Literal["tensorboard", "mlflow"]] = field(default_factory=list)
    tracking_dir: str = ""  # empty = the run directory (an experiment: its output directory)


@dataclass
class DataConfig:
    """How posts are read (which column holds which field) and split when there is no split."""

    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    # IANA zone (e.g. Europe/Berlin) for `created_at` values without an offset and for epoch
    # seconds; times written with an offset keep it (the poster's own wall clock)
    timezone: str = "UTC"
    # the source column holding each field, for files whose columns have other names
    # (e.g. data.text_column=caption) instead of renaming them
    id_column: str = "id"
    text_column: str = "text"
    image_column: str = "image"
    label_column: str = "label"
    split_column: str = "split"
    user_column: str = "user"
    created_at_column: str = "created_at"


@dataclass
class ExtractConfig:
    """CLIP feature extraction."""

    backbone: str = ""  # Hugging Face CLIP directory or hub id
    allow_network: bool = False  # hub downloads only when explicitly allowed
    batch_size: int = 32
    # bf16 autocast for the towers (checked against fp32 in the tests); auto = where the device
    # runs bf16 natively (semloc.precision.resolve_precision), else fp32
    bf16: bool | Literal["auto"] = False
    dtype: Literal["float16", "float32"] = "float16"  # storage dtype of the features
    shard_size: int = 1024  # posts per committed shard (the unit of resume)
    # image decoding processes and torch threads for the towers; -1 / 0 = chosen for this
    # machine's cores (`semloc.clip.extract.thread_budget`)
    num_workers: int = -1
    num_threads: int = 0
    image_policy: Literal["text-only", "skip", "fail"] = "text-only"
    max_image_pixels: int = 40_000_000  # larger images are refused (decompression bombs)
    engine: Literal["local", "ray"] = "local"
    ray_address: str = ""  # empty = start a local Ray instance
    # where the Ray engine decodes and resizes images: in Ray tasks feeding the CLIP actors, or
    # inside each actor (no object-store round trip of pixels); auto = tasks, which cost less
    # CPU per post (`semloc.scale.ray_extract.plan_actors`, docs/scale.md)
    ray_decode: Literal["auto", "actors", "tasks"] = "auto"
    progress: bool = True
    device: str = "auto"  # where the towers run: auto (cuda when present) | cpu | cuda | cuda:N


@dataclass
class ServeConfig:
    """`semloc serve`: where it listens, how requests are batched, what uploads it accepts."""

    host: str = "127.0.0.1"  # loopback by default: exposing the server is an explicit choice
    port: int = 8000
    max_batch_size: int = 32  # posts per model call (CLIP + model); 1 turns micro-batching off
    max_wait_ms: float = 5.0  # how long a lone request may wait for others to join its batch
    max_upload_bytes: int = 10_000_000  # body of POST /predict, and each image of a batch
    # width x height, checked on the header (bombs) and for the size CLIP would resize it to
    # (a 1 x 5000 strip becomes 224 x 1.1 million)
    max_image_pixels: int = 40_000_000
    max_text_chars: int = 5000
    max_batch_posts: int = 64  # posts in one POST /predict/batch
    max_batch_request_bytes: int = 100_000_000  # body of POST /predict/batch (base64 JSON)
    backbone: str = ""  # CLIP directory; empty = the one the run's features were extracted with
    device: str = "auto"  # where CLIP and the model run: auto (cuda when present) | cpu | cuda:N
    # torch CPU threads for CLIP + model (0 = torch's default, one per core); fewer than the
    # cores leaves room for HTTP parsing and image decoding, which run alongside
    num_threads: int = 0
    # what an unusable image does when a request has no ?image_policy=: text-only (predict from
    # the text and report the image's outcome, as every CLI verb does) | fail (a 4xx)
    image_policy: Literal["text-only", "fail"] = "text-only"
    # slow or stalled clients: a request's headers and body must arrive within read_timeout_s of
    # its first byte (or of the connection opening), else 408 and the connection is closed; an
    # idle keep-alive connection is closed after keep_alive_timeout_s
    read_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 5.0
    # open connections at once; a request beyond them gets 503 (retry later), so stalled
    # clients cannot take every socket and file descriptor
    max_connections: int = 128
    max_header_bytes: int = 16_384  # request line + headers; a larger head is refused with 431
    # the model's runtime: torch (the checkpoint) or onnx (`semloc export RUN --format onnx`);
    # CLIP featurisation runs in PyTorch either way
    runtime: Literal["torch", "onnx"] = "torch"


@dataclass
class ProfileConfig:
    """`semloc profile`: thresholds, privacy, outputs (flags of the verb override these)."""

    min_posts: int = 20  # per-user outputs only for users with at least this many posts
    group: str | None = None  # a column of the predictions table to compare groups by
    timezone: str | None = None  # convert every time to this zone (None: each post's own offset)
    pseudonymise: bool = False  # salted SHA-256 of every user id in every output
    salt: str | None = None  # None with pseudonymise: a random salt, never written
    home_labels: list[str] = field(default_factory=lambda: ["home"])  # home-like locations
    work_labels: list[str] = field(default_factory=lambda: ["office", "school", "work"])
    lift: float = 1.2  # home-like hour: P(home | hour) >= lift * P(home)
    min_hour_posts: int = 3  # an hour needs this many posts to be called home-/work-like
    formats: list[str] = field(default_factory=lambda: ["csv"])  # table formats: csv, parquet
    per_user_grids: bool = True  # per-user hour x day grids (the users x 168 x C memory)
    num_boot: int = 1000  # bootstrap replicates of the population and group intervals
    confidence: float = 0.95  # of every interval
    seed: int = 0  # of the bootstrap
    batch_size: int = 262_144  # rows per record batch read
    plots: bool = True  # PNG heat-maps


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)


# ----------------------------------------------------------------------------------------------
# loading, overriding, validating


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}': {value!r} is not of type {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"config key '{key}': {value!r} is not one of {', '.join(map(repr, allowed))}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_check_value(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported type {tp!r}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _apply(obj: Any, data: dict[str, Any], prefix: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = prefix + str(key)
        if key not in names:
            raise ConfigError(
                f"unknown config key '{full}' (known here: {', '.join(sorted(names))})"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, full + ".")
        else:
            setattr(obj, key, _check_value(value, hints[key], full))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (['a', 'b'], value read as YAML); ConfigError if it is not one."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    if not key:
        raise ConfigError(f"override '{text}' has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError, ValueError):
        value = raw
    return key.split("."), value


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Dotted ``section.key=value`` overrides (values read as YAML) onto any dataclass tree."""
    for text in overrides:
        path, value = parse_override(text)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        _apply(cfg, nested, "")
    return cfg


def apply_dict(tree: T, data: dict[str, Any]) -> T:
    """A nested mapping (a config file's content) onto any dataclass tree, with the same type
    checks and unknown-key errors as `Config` itself."""
    _apply(tree, data or {}, "")
    return tree


def load_tree(tree: T, config_file: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """The one config mechanism for any verb's dataclass tree (pretraining settings, the demo
    world, ...): its defaults, then a YAML/JSON file, then dotted overrides, in that order."""
    if config_file:
        apply_dict(tree, read_config_file(config_file))
    return apply_overrides(tree, overrides)


def flatten_dict(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: nested settings as dotted keys."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out |= flatten_dict(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    _apply(cfg, data or {}, "")
    return validate_config(cfg)


# value rules, by key: (lowest, highest, lowest excluded, highest excluded); None = unbounded.
# Types are checked while loading; these are the values a type allows but a run cannot use
# (epochs=0 "trains" nothing, lr<0 ascends the loss, batch_size=0 divides by zero, ...).
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "model.dim": (1, None, False, False),
    "model.num_heads": (1, None, False, False),
    "model.sim_layers": (0, None, False, False),
    "model.fusion_layers": (0, None, False, False),
    "model.mlp_ratio": (0, None, True, False),
    "model.dropout": (0, 1, False, True),
    "model.gate_bias_init": (-1, 1, False, False),
    "model.prior_scale_init": (None, None, False, False),  # any finite number
    "model.gate_scale_init": (None, None, False, False),  # NaN or inf would make every gate NaN
    "model.similarity_center": (None, None, False, False),
    "model.similarity_std": (0, None, True, False),
    "model.token_temperature": (0, None, True, False),
    "model.film_rank": (0, None, False, False),
    "model.film_dropout": (0, 1, False, True),
    "model.unimodal_supervision": (0, None, False, False),
    "model.text_token_dropout": (0, 1, False, True),
    "model.max_text_tokens": (1, None, False, False),
    "train.epochs": (1, None, False, False),
    "train.batch_size": (1, None, False, False),
    "train.eval_batch_size": (1, None, False, False),
    "train.lr": (0, None, False, False),  # 0 is a frozen model (a sanity check), <0 ascends
    "train.weight_decay": (0, None, False, False),
    "train.scalar_lr_scale": (0, None, False, False),  # 0 freezes the scalars at their init
    "train.warmup_fraction": (0, 1, False, False),
    "train.grad_clip": (0, None, False, False),
    "train.patience": (0, None, False, False),
    "train.seed": (0, 2**32 - 1, False, False),
    "train.label_smoothing": (0, 1, False, True),
    "train.swap_pictures": (0, 1, False, False),
    "train.drop_pictures": (0, 1, False, False),
    "train.num_workers": (0, None, False, False),
    "data.dev_fraction": (0, 1, False, True),
    "data.test_fraction": (0, 1, False, True),
    "data.split_seed": (0, 2**32 - 1, False, False),
    "extract.batch_size": (1, None, False, False),
    "extract.shard_size": (1, None, False, False),
    "extract.num_workers": (-1, None, False, False),
    "extract.num_threads": (0, None, False, False),
    "extract.max_image_pixels": (1, None, False, False),
    "serve.port": (0, 65535, False, False),
    "serve.max_batch_size": (1, None, False, False),
    "serve.max_wait_ms": (0, None, False, False),
    "serve.max_upload_bytes": (1, None, False, False),
    "serve.max_image_pixels": (1, None, False, False),
    "serve.max_text_chars": (0, None, False, False),
    "serve.max_batch_posts": (1, None, False, False),
    "serve.max_batch_request_bytes": (1, None, False, False),
    "serve.num_threads": (0, None, False, False),
    "serve.read_timeout_s": (0, None, True, False),
    "serve.keep_alive_timeout_s": (0, None, True, False),
    "serve.max_connections": (1, None, False, False),
    "serve.max_header_bytes": (1024, None, False, False),
}
_DEVICE_KEYS = ("train.device", "extract.device", "serve.device")
_NON_EMPTY_KEYS = (
    "data.id_column",
    "data.text_column",
    "data.image_column",
    "data.label_column",
    "data.split_column",
)


def _check_range(key: str, value: float, rule: tuple) -> None:
    lo, hi, lo_open, hi_open = rule
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{key}': {value!r} is not a finite number")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        if lo is not None and hi is not None:
            allowed = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        elif lo is not None:
            allowed = f"{'>' if lo_open else '>='} {lo}"
        else:
            allowed = f"{'<' if hi_open else '<='} {hi}"
        raise ConfigError(f"config key '{key}': {value!r} is out of range (must be {allowed})")


def check_device_name(name: str, key: str = "device") -> None:
    """auto | cpu | cuda | cuda:N | mps, or ConfigError naming the key."""
    if name in ("auto", "cpu", "cuda", "mps"):
        return
    if name.startswith("cuda:") and name[5:].isdigit():
        return
    raise ConfigError(f"config key '{key}': {name!r} is not a device (auto, cpu, cuda, cuda:N)")


def resolve_device(name: str, key: str = "device") -> str:
    """auto -> cuda when present, else cpu; a device this machine lacks is a ConfigError
    naming `key`. Returns the device's name (``torch.device(name)`` where a device is needed)."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device_available(name, key)
    return name


def check_device_available(name: str, key: str = "device") -> None:
    """Refuse a device this machine does not have (cuda without CUDA, cuda:3 on two GPUs)."""
    check_device_name(name, key)
    if name in ("auto", "cpu"):
        return
    import torch

    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"config key '{key}': mps is not available on this machine")
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"config key '{key}': {name!r} asked for, but this machine (or this torch build) has "
            "no CUDA; use auto or cpu"
        )
    index = int(name[5:]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"config key '{key}': {name!r} asked for, but there are "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )


def validate_config(cfg: Config) -> Config:
    """Check every value against the rules above (ConfigError naming the key); returns cfg."""
    for key, rule in _RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is not None:
            _check_range(key, value, rule)
    for key in _DEVICE_KEYS:
        section, name = key.split(".")
        check_device_name(getattr(getattr(cfg, section), name), key)
    for key in _NON_EMPTY_KEYS:
        section, name = key.split(".")
        if not getattr(getattr(cfg, section), name).strip():
            raise ConfigError(f"config key '{key}': must not be empty")
    if cfg.data.dev_fraction + cfg.data.test_fraction >= 1:
        raise ConfigError("config keys 'data.dev_fraction' + 'data.test_fraction' must be below 1")
    return cfg


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(
            f"config file {path} is not valid {path.suffix[1:] or 'YAML'}: {e}"
        ) from None
    except (RecursionError, ValueError) as e:  # nesting too deep, an integer past the digit limit
        raise ConfigError(f"config file {path} cannot be read: {str(e)[:200]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    base: Config | None = None,
) -> Config:
    """Defaults (or `base`, e.g. a run's saved config), then the file (if any), then dotted
    overrides, in that order."""
    cfg = base if base is not None else Config()
    if path:
        _apply(cfg, read_config_file(path), "")
    return validate_config(apply_overrides(cfg, overrides or []))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
