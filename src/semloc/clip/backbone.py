"""A frozen Hugging Face dual encoder: loading (offline by default) and the features SG-MFT
consumes. CLIP is described below; what other families (SigLIP, Chinese-CLIP) do differently is
one `semloc.clip.families.BackboneFamily` each.

Features, for a post with text tokens t_1..t_n (BOS and EOS included) and an image:

    text_tokens   (n, text_width)     `text_model.last_hidden_state`, which HF computes after the
                                      text tower's `final_layer_norm`; real tokens only
    image_tokens  (Nv, vision_width)  the vision tower's `last_hidden_state` with
                                      `vision_model.post_layernorm` applied to *every* token
                                      (CLS first). HF applies that norm only to the pooled CLS
                                      token; the spec asks for tokens after CLIP's final norm, so
                                      image_tokens[0] is exactly the normed CLS token HF pools
    text_embed    (embed_dim,)        `CLIPModel.get_text_features`: text_projection(EOS token)
    image_embed   (embed_dim,)        `CLIPModel.get_image_features`: visual_projection(CLS)

Texts longer than the context (`max_text_tokens`, 77 for OpenAI's CLIPs) keep their first
`max_text_tokens - 1` tokens plus EOS, exactly like the tokenizer's own truncation; each
truncation is reported.

Images are preprocessed by `ImagePreprocessing`: resize, center crop, rescale and normalise written
with PIL + numpy so it runs cheaply in worker processes, bit-for-bit equal to the Hugging Face
image processor for the settings it accepts (`tests/test_backbone.py` checks this). Settings it
does not implement are refused, never approximated.

Loading never falls back to defaults: the tokenizer and the image processor must come from the
same directory as the weights, and what was used (plus the weights' SHA-256) is recorded in the
header of every feature store, so features from different backbones or preprocessing are never
mixed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from semloc.clip.families import CLIP, FAMILIES, BackboneFamily, family_for_model_type
from semloc.clip.images import DECODING, to_rgb
from semloc.errors import SemlocError
from semloc.io import sha256_file

# bump when the meaning of the stored features changes (which layer, which norm, which tokens);
# each family has its own (`BackboneFamily.features`), CLIP's is this one
FEATURE_LAYOUT = CLIP.features

_PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_SUPPORTED_PROCESSORS = tuple(p for f in FAMILIES.values() for p in f.image_processors)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ----------------------------------------------------------------------------------------------
# image preprocessing


@dataclass(frozen=True)
class ImagePreprocessing:
    """CLIP's image preprocessing: RGB, resize, center crop, rescale, normalise.

    Equal to `CLIPImageProcessor` (PIL backend) for the settings it accepts: resizing by
    ``shortest_edge`` or to an exact ``height`` x ``width`` with any PIL filter, an optional center
    crop (zero-padding images smaller than the crop, as HF does), rescale and normalise.
    Rescale + normalise are one 256-entry lookup table per channel, computed with the very float
    operations HF performs, so the result is identical, not just close.
    """

    do_resize: bool
    size: dict[str, int]  # {"shortest_edge": s} or {"height": h, "width": w}
    resample: int  # PIL filter id (3 = bicubic)
    do_center_crop: bool
    crop_size: dict[str, int]  # {"height": h, "width": w}
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    @classmethod
    def from_processor(
        cls, processor: Any, where: str, supported: Sequence[str] = _SUPPORTED_PROCESSORS
    ) -> ImagePreprocessing:
        """Read the settings of a loaded HF image processor, refusing ones we do not implement."""
        name = type(processor).__name__
        if name not in supported:
            raise SemlocError(
                f"{where}: image processor {name} is not supported (supported: "
                f"{', '.join(supported)})"
            )

        def size_dict(value: Any) -> dict[str, int]:
            if value is None:
                return {}
            items = value.items() if hasattr(value, "items") else vars(value).items()
            return {k: int(v) for k, v in items if v is not None}

        size = size_dict(processor.size)
        crop = size_dict(getattr(processor, "crop_size", None))
        problems = []
        do_resize = bool(processor.do_resize)
        if do_resize and set(size) not in ({"shortest_edge"}, {"height", "width"}):
            problems.append(f"resize size {size} (supported: shortest_edge, or height + width)")
        do_crop = bool(getattr(processor, "do_center_crop", False))
        if do_crop and set(crop) != {"height", "width"}:
            problems.append(f"crop_size {crop} (supported: height + width)")
        if getattr(processor, "do_pad", None):
            problems.append("do_pad=True")
        if getattr(processor, "do_convert_rgb", True) is False:
            problems.append("do_convert_rgb=False (grayscale/RGBA images would not fit the model)")
        resample = processor.resample
        resample = int(getattr(resample, "value", resample) if resample is not None else 2)
        if resample not in (0, 1, 2, 3, 4, 5):
            problems.append(f"resample={processor.resample!r}")
        mean = tuple(float(x) for x in np.broadcast_to(processor.image_mean, (3,)))
        std = tuple(float(x) for x in np.broadcast_to(processor.image_std, (3,)))
        if problems:
            raise SemlocError(f"{where}: unsupported image preprocessing: {'; '.join(problems)}")
        return cls(
            do_resize=do_resize,
            size=size if do_resize else {},
            resample=resample,
            do_center_crop=do_crop,
            crop_size=crop if do_crop else {},
            do_rescale=bool(processor.do_rescale),
            rescale_factor=float(processor.rescale_factor),
            do_normalize=bool(processor.do_normalize),
            image_mean=mean,  # type: ignore[arg-type]
            image_std=std,  # type: ignore[arg-type]
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every output, or None when it depends on the input."""
        if self.do_center_crop:
            return self.crop_size["height"], self.crop_size["width"]
        if self.do_resize and "height" in self.size:
            return self.size["height"], self.size["width"]
        return None

    @property
    def lut(self) -> np.ndarray:
        """(3, 256) float32: uint8 value -> normalised value, per channel."""
        cached = self.__dict__.get("_lut")
        if cached is None:
            v = np.arange(256, dtype=np.uint8)[:, None]
            x = np.broadcast_to(v, (256, 3))
            if self.do_rescale:
                # HF rescales in float64, then casts to float32
                x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
            else:
                x = x.astype(np.float32)
            if self.do_normalize:
                mean = np.array(self.image_mean, dtype=np.float32)
                std = np.array(self.image_std, dtype=np.float32)
                x = (x - mean) / std
            cached = np.ascontiguousarray(x.T, dtype=np.float32)
            object.__setattr__(self, "_lut", cached)
        return cached

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of a height x width image after the resize step (before the crop)."""
        if "height" in self.size:
            return self.size["height"], self.size["width"]
        # torchvision's rule, as HF implements it: the short side becomes `s`, the long side is
        # scaled and truncated (not rounded)
        s = self.size["shortest_edge"]
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = s, int(s * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def __call__(self, img: Image.Image) -> np.ndarray:
        """(3, H, W) float32 pixel values for one decoded image."""
        img = to_rgb(img)
        if self.do_resize:
            h, w = self.resized_size(img.height, img.width)
            img = img.resize((w, h), resample=self.resample)
        pixels = np.asarray(img)  # (H, W, 3) uint8
        if self.do_center_crop:
            pixels = _center_crop(pixels, self.crop_size["height"], self.crop_size["width"])
        chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
        return np.take_along_axis(self.lut, chw.reshape(3, -1), axis=1).reshape(chw.shape)


def _center_crop(pixels: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """HF's center crop on (H, W, C): offsets floor((H - h) / 2); zero-pads a too-small image."""
    h, w = pixels.shape[:2]
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    if top >= 0 and left >= 0:
        return pixels[top : top + crop_h, left : left + crop_w]
    new_h, new_w = max(crop_h, h), max(crop_w, w)
    padded = np.zeros((new_h, new_w, pixels.shape[2]), dtype=pixels.dtype)
    top_pad, left_pad = ceil((new_h - h) / 2), ceil((new_w - w) / 2)
    padded[top_pad : top_pad + h, left_pad : left_pad + w] = pixels
    top, left = top + top_pad, left + left_pad
    return padded[max(0, top) : min(new_h, top + crop_h), max(0, left) : min(new_w, left + crop_w)]


# ----------------------------------------------------------------------------------------------
# loading


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the duration of a load, so no library underneath may try the hub."""
    if not offline:
        yield
        return
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def weight_files(directory: Path) -> list[Path]:
    """The weight files `from_pretrained` reads: safetensors when present, else PyTorch .bin."""
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        files = sorted(p for p in directory.glob(pattern) if p.is_file())
        if files:
            return files
    return []


def weights_sha256(files: Sequence[Path]) -> str:
    """SHA-256 of the weights: of the file itself, or of `name sha256` lines when sharded."""
    if len(files) == 1:
        return sha256_file(files[0])
    lines = "".join(f"{p.name} {sha256_file(p)}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _tokenizer_files(directory: Path) -> list[str]:
    """The files that define the tokenizer: tokenizer.json, else CLIP's BPE vocab + merges,
    else a WordPiece vocab.txt (BERT, Chinese-CLIP); [] when there is none."""
    for names in (["tokenizer.json"], ["vocab.json", "merges.txt"], ["vocab.txt"]):
        if all((directory / n).is_file() for n in names):
            return names
    return []


def _tokenizer_sha256(directory: Path) -> str:
    names = _tokenizer_files(directory)
    lines = "".join(f"{n} {sha256_file(directory / n)}\n" for n in names)
    return hashlib.sha256(lines.encode()).hexdigest()


def _resolve(name_or_dir: str, allow_network: bool) -> tuple[Path, str]:
    """(local directory, display name) of a CLIP given as a directory or a hub id."""
    path = Path(name_or_dir).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SemlocError(
                f"backbone {name_or_dir!r} is a file; pass the directory that holds config.json, "
                "the weights, the tokenizer and the image processor config"
            )
        return path.resolve(), path.resolve().name
    how = (
        "pass a directory written by save_pretrained (model + CLIPProcessor), or add "
        "--allow-network (extract.allow_network=true) to download a hub id"
    )
    if not _HUB_ID.match(name_or_dir) or name_or_dir.startswith((".", "~")):
        raise SemlocError(f"no CLIP model at {name_or_dir!r}: no such directory; {how}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = [
        "config.json",
        "*.safetensors",
        "*.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
        "vocab.txt",
        *_PREPROCESSOR_FILES,
    ]
    try:
        with _hub_offline(not allow_network):
            local = snapshot_download(
                name_or_dir, local_files_only=not allow_network, allow_patterns=patterns
            )
            if allow_network and not weight_files(Path(local)):
                # older repos ship only PyTorch pickles
                local = snapshot_download(
                    name_or_dir, allow_patterns=[*patterns, "pytorch_model*.bin*"]
                )
    except LocalEntryNotFoundError:
        raise SemlocError(
            f"no CLIP model at {name_or_dir!r}: it is not a local directory and not in the local "
            f"Hugging Face cache, and network access is off; {how}"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise SemlocError(
            f"could not fetch {name_or_dir!r} from the Hugging Face hub: {e}"
        ) from None
    return Path(local), name_or_dir


def _check_directory(directory: Path, shown: str) -> None:
    missing = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    if not weight_files(directory):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any((directory / f).is_file() for f in _PREPROCESSOR_FILES):
        missing.append("an image processor config (preprocessor_config.json)")
    if not _tokenizer_files(directory):
        missing.append("a tokenizer (tokenizer.json, vocab.json + merges.txt, or vocab.txt)")
    if missing:
        raise SemlocError(
            f"{shown} is not a complete backbone directory: it lacks {', '.join(missing)}. "
            "Tokenizer and image preprocessing must come with the weights (they are never "
            "replaced by defaults); save them with the model's processor (save_pretrained) into "
            "the same directory"
        )


def load_backbone(
    name_or_dir: str | Path,
    *,
    allow_network: bool = False,
    device: str = "cpu",
    bf16: bool = False,
) -> Backbone:
    """Load a dual encoder (weights, tokenizer, image processor) from a directory or a hub id.

    The family (CLIP, Chinese-CLIP, SigLIP; `semloc.clip.families`) is read from config.json,
    and the tokenizer and image processor must be that family's, from the same directory. Only
    local files are read unless `allow_network`. `bf16` runs both towers under bfloat16
    autocast (recorded in the header, as it changes the features slightly).
    """
    name_or_dir = str(name_or_dir)
    if not name_or_dir:
        raise SemlocError("no backbone given; pass --backbone DIR_OR_HUB_ID (or extract.backbone=)")
    directory, name = _resolve(name_or_dir, allow_network)
    shown = f"backbone {name_or_dir!r}" + (f" ({directory})" if name != name_or_dir else "")
    _check_directory(directory, shown)
    with _hub_offline(True):  # everything is local by now
        import importlib

        import transformers
        from transformers import AutoConfig, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise SemlocError(f"{shown}: cannot read config.json: {e}") from None
        family = family_for_model_type(config.model_type, shown)
        processor_type = _processor_type(directory)
        if processor_type not in family.image_processors:
            raise SemlocError(
                f"{shown}: image processor {processor_type!r} is not a {family.architecture} "
                f"one (supported: {', '.join(family.image_processors)})"
            )
        module, cls = family.pil_processor
        try:
            image_processor = getattr(importlib.import_module(module), cls).from_pretrained(
                directory, local_files_only=True
            )
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model = getattr(transformers, family.architecture).from_pretrained(
                directory, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError, ImportError) as e:
            raise SemlocError(f"{shown}: cannot load: {e}") from None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise SemlocError(
            f"{shown}: tokenizer {type(tokenizer).__name__} has no tokenizers (Rust) backend; "
            "save it as a tokenizer.json (load it once with sentencepiece installed and "
            "save_pretrained) into the same directory"
        )
    files = weight_files(directory)
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        preprocessing=ImagePreprocessing.from_processor(
            image_processor, shown, family.image_processors
        ),
        family=family,
        name=name,
        path=str(directory) if Path(name_or_dir).expanduser().exists() else name_or_dir,
        weights_sha256=weights_sha256(files),
        tokenizer_sha256=_tokenizer_sha256(directory),
        device=device,
        bf16=bf16,
    )


def _processor_type(directory: Path) -> str:
    for fname in _PREPROCESSOR_FILES:
        p = directory / fname
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise SemlocError(f"{p} is not valid JSON: {e}") from None
            data = data.get("image_processor", data)
            return str(
                data.get("image_processor_type") or data.get("feature_extractor_type") or "?"
            )
    return "?"


# ----------------------------------------------------------------------------------------------
# the backbone


class Backbone:
    """A frozen dual encoder with its tokenizer and image preprocessing; see the module docstring
    for what each feature is, and `family` for how this architecture computes them. Arrays come
    back as float32 numpy on the CPU."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        preprocessing: ImagePreprocessing,
        *,
        family: BackboneFamily = CLIP,
        name: str,
        path: str,
        weights_sha256: str,
        tokenizer_sha256: str,
        device: str = "cpu",
        bf16: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.name = name
        self.path = path
        self.weights_sha256 = weights_sha256
        self.tokenizer_sha256 = tokenizer_sha256
        self.bf16 = bf16
        self.family = family
        self._bf16_model: Any = None
        cfg = model.config
        self.image_size = int(cfg.vision_config.image_size)
        self._dims = family.dims(cfg)
        self.num_image_tokens = self._dims["num_image_tokens"]
        out = preprocessing.output_size()
        if out != (self.image_size, self.image_size):
            raise SemlocError(
                f"backbone {name!r}: the image processor makes {out or 'variable-size'} images "
                f"but the vision tower takes {self.image_size}x{self.image_size}"
            )
        positions = int(cfg.text_config.max_position_embeddings)
        tok_max = int(getattr(tokenizer, "model_max_length", positions) or positions)
        self.max_text_tokens = min(positions, tok_max)
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        # a private copy of the Rust tokenizer with truncation on: picklable for worker
        # processes, and it reports truncation per text (`overflowing`), which the HF call hides
        from tokenizers import Tokenizer

        self.text_tokenizer = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.text_tokenizer.no_padding()
        self.text_tokenizer.enable_truncation(max_length=self.max_text_tokens)

    # -- description ---------------------------------------------------------------------------

    @property
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    @property
    def similarity(self) -> dict[str, Any]:
        """How this backbone scores a (text, image) pair (`BackboneFamily.pair_similarity`)."""
        return self.family.pair_similarity(self.model)

    @property
    def compute_dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float32"

    def header(self, dtype: str = "float16") -> dict[str, Any]:
        """The feature-store header: what the features are, for store/checkpoint comparison.

        ``backbone_path`` (where the model was loaded from) sits outside the compared keys, so a
        moved directory still matches; the weights hash is what identifies the model.
        """
        return {
            "backbone": {
                "name": self.name,
                "architecture": self.family.architecture,
                "weights_sha256": self.weights_sha256,
                "compute_dtype": self.compute_dtype,
                **self.family.header_fields(self.model, self.max_text_tokens),
            },
            "backbone_path": self.path,
            "preprocessing": {
                "features": self.family.features,
                "image": self.preprocessing.as_dict(),
                "image_decoding": DECODING,  # EXIF orientation, bit depth (clip/images.py)
                "image_size": self.image_size,
                "tokenizer": type(self.tokenizer).__name__,
                "tokenizer_sha256": self.tokenizer_sha256,
                "max_text_tokens": self.max_text_tokens,
            },
            "dtype": dtype,
            "dims": self.dims,
        }

    # -- text ----------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids (BOS ... EOS, truncated to max_text_tokens) and a truncated flag per text."""
        encodings = [self.text_tokenizer.encode(t) for t in texts]
        return [e.ids for e in encodings], [len(e.overflowing) > 0 for e in encodings]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        from semloc.precision import autocast

        return autocast(torch.bfloat16 if self.bf16 else None, self.device)

    def _towers(self) -> Any:
        """The model to run: the fp32 one, or under bf16 a copy whose matmul weights are stored
        in bf16. Autocast would otherwise re-cast every weight on every call (a third of the
        vision tower's time on CPU); the numbers are the same, as autocast rounds identically.
        Norms and embeddings stay fp32, as under autocast. Costs half the model's size again."""
        if not self.bf16:
            return self.model
        if self._bf16_model is None:
            model = copy.deepcopy(self.model)
            for module in model.modules():
                if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                    module.to(torch.bfloat16)
            self._bf16_model = model
        return self._bf16_model

    @torch.inference_mode()
    def encode_token_ids(
        self, token_ids: Sequence[Sequence[int]]
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Per-text (n_i, text_width) token features and (B, embed_dim) text embeddings.

        CLIP's batch is padded only to its longest text: its text attention is causal, so real
        tokens never see the padding and the features equal those of max-length padding (the
        same holds for masked bidirectional towers). A family trained on max-length padding
        (SigLIP) is padded to `max_text_tokens`, as its own processor does.
        """
        n = len(token_ids)
        if n == 0:
            return [], np.zeros((0, self.dims["embed_dim"]), np.float32)
        lengths = [len(ids) for ids in token_ids]
        longest = max(lengths)
        if self.family.text_padding == "max_length":
            longest = self.max_text_tokens
        ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, longest), dtype=torch.long)
        for i, row in enumerate(token_ids):
            ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        model = self._towers()
        with self._autocast():
            hidden, embed = self.family.encode_text(model, ids, mask)  # (B, Nt, d_t), (B, p)
        hidden = hidden.float().cpu().numpy()
        tokens = [hidden[i, :k].copy() for i, k in enumerate(lengths)]
        return tokens, embed.float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray, list[bool]]:
        """(per-text token features, (B, embed_dim) embeddings, truncated flags)."""
        token_ids, truncated = self.tokenize(texts)
        tokens, embeds = self.encode_token_ids(token_ids)
        return tokens, embeds, truncated

    # -- images --------------------------------------------------------------------------------

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """(3, image_size, image_size) float32 pixel values, equal to the HF processor's."""
        return self.preprocessing(image)

    @torch.inference_mode()
    def encode_pixels(
        self, pixel_values: np.ndarray | torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, Nv, vision_width) image tokens (after the final norm; CLS first when the family
        has one), (B, embed_dim)."""
        pixels = torch.as_tensor(pixel_values, dtype=torch.float32)
        if pixels.shape[0] == 0:
            d = self.dims
            return (
                np.zeros((0, d["num_image_tokens"], d["vision_width"]), np.float32),
                np.zeros((0, d["embed_dim"]), np.float32),
            )
        model = self._towers()
        with self._autocast():
            tokens, embed = self.family.encode_image(model, pixels.to(self.device))
        return tokens.float().cpu().numpy(), embed.float().cpu().numpy()
