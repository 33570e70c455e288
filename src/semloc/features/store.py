"""The feature store: frozen CLIP features of many posts, computed once, read many times.

Layout of a store directory::

    header.json            what is being extracted (backbone, weights hash, preprocessing, dtype,
                           widths); written first, checked on resume
    shards/000000/         one committed shard = up to `shard_size` consecutive posts
        text_tokens.npy    (sum of real text tokens, text_width)  ragged: no padding stored
        text_offsets.npy   (n + 1,) int64 start of each post's tokens in text_tokens
        image_tokens.npy   (n, num_image_tokens, vision_width)    CLS first; zeros when no image
        text_embed.npy     (n, embed_dim)    CLIP's projected pooled text embedding
        image_embed.npy    (n, embed_dim)    CLIP's projected pooled image embedding
        image_present.npy  (n,) bool
        posts.json         {"ids": [...], "labels": [...], "splits": [...]}, plus "users" and
                           "created_at" when the posts file had those columns
        checksums.json     {file: {"bytes": n, "sha256": h}} of the files above, at commit
    manifest.json          written last: header + counts + label list + shard list (with each
                           shard's checksums); a store without it is incomplete and is refused

Opening a store checks what is cheap — the manifest's keys and types, that the shard list is
0..n-1 and matches the shard directories, that every name stays inside the store, post counts,
label and split lists, and each array's shape, dtype and byte size from its `.npy` header — and
names what is wrong (`DamagedStoreError`) instead of failing later inside numpy. `verify_store`
also recomputes every file's SHA-256 against the checksums recorded at commit
(`semloc extract --verify STORE`).

A shard is written into a temporary directory and renamed into place, so it is either fully there
or not there at all: an extraction killed at any point resumes from the committed shards and
produces the same store as an uninterrupted run.

Reading memory-maps each shard's arrays and copies only the rows of a batch. After each batch the
touched pages are released from this process (`madvise(MADV_DONTNEED)`; the OS page cache keeps
them), so resident memory stays flat however large the store is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semloc import __version__
from semloc.data.records import SPLITS
from semloc.errors import SemlocError, StoreMismatchError
from semloc.features.batch import FeatureBatch, FeatureDims
from semloc.io import atomic_write_json, output_dir, sha256_file, sha256_json

FORMAT_VERSION = 1
_ARRAYS = (
    "text_tokens",
    "text_offsets",
    "image_tokens",
    "text_embed",
    "image_embed",
    "image_present",
)
# header keys that define what the features *mean*: two stores (or a store and a checkpoint) whose
# fingerprints differ hold incomparable features
FINGERPRINT_KEYS = ("backbone", "preprocessing", "dtype", "dims")
CHECKSUMS = "checksums.json"
_SHARD_NAME = re.compile(r"^[0-9]{6}$")


class DamagedStoreError(SemlocError):
    """A feature store whose files do not match its manifest (edited, truncated, mixed)."""


# keys under FINGERPRINT_KEYS that only *name* things: a CLIP directory moved or renamed is the
# same model (its weights hash and preprocessing are its identity), so these never differ a store
LABEL_KEYS = ("backbone.name",)


def feature_identity(header: dict[str, Any]) -> dict[str, Any]:
    """The parts of a feature header that define what the features mean (labels left out)."""
    out = {k: header.get(k) for k in FINGERPRINT_KEYS}
    for dotted in LABEL_KEYS:
        section, name = dotted.split(".")
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != name}
    return out


def feature_fingerprint(header: dict[str, Any]) -> str:
    return sha256_json(feature_identity(header))


@dataclass
class ShardData:
    """One shard's worth of posts, as the extractor produces them (numpy, any float dtype)."""

    ids: list[str]
    labels: list[str | None]
    splits: list[str | None]
    text_tokens: list[np.ndarray]  # per post (num_real_tokens, text_width)
    image_tokens: np.ndarray  # (n, num_image_tokens, vision_width)
    text_embed: np.ndarray  # (n, embed_dim)
    image_embed: np.ndarray  # (n, embed_dim)
    image_present: np.ndarray  # (n,) bool
    users: list[str | None] | None = None  # author ids, when the posts file has a user column
    created_at: list[str | None] | None = None  # canonical ISO 8601 times (data.timestamps)

    def __len__(self) -> int:
        return len(self.ids)

    def validate(self) -> None:
        n = len(self.ids)
        for name in ("labels", "splits", "text_tokens", "users", "created_at"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"shard has {n} ids but {len(getattr(self, name))} {name}")
        for name in ("image_tokens", "text_embed", "image_embed", "image_present"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"shard has {n} ids but {name} has {getattr(self, name).shape[0]}")


def _shard_name(index: int) -> str:
    return f"{index:06d}"


# ----------------------------------------------------------------------------------------------
# writing


class FeatureStoreWriter:
    """Writes a store shard by shard; resumable.

    `header` must hold at least ``backbone`` (dict), ``preprocessing`` (dict), ``dtype``
    ("float16" | "float32") and ``dims`` ({text_width, vision_width, embed_dim,
    num_image_tokens}). Opening a directory that already holds a header for *different* features
    raises StoreMismatchError; the same header resumes.
    """

    def __init__(self, root: str | Path, header: dict[str, Any]) -> None:
        self.root = Path(root)
        missing = [k for k in FINGERPRINT_KEYS if k not in header]
        if missing:
            raise ValueError(f"store header lacks {missing}")
        self.header = {"format_version": FORMAT_VERSION, **header}
        self.header["fingerprint"] = feature_fingerprint(self.header)
        self.dtype = np.dtype(self.header["dtype"])
        if self.root.exists() and not self.root.is_dir():
            raise SemlocError(f"feature store {self.root} is an existing file, not a directory")
        header_path = self.root / "header.json"
        if header_path.exists():
            existing = json.loads(header_path.read_text())
            diff = _diff(existing, self.header, FINGERPRINT_KEYS)
            if diff:
                raise StoreMismatchError(
                    f"{self.root} already holds features of a different extraction; "
                    f"use another --out or delete it. Differences:\n" + "\n".join(diff)
                )
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise SemlocError(f"{self.root} exists, is not empty and is not a feature store")
            output_dir(self.root / "shards", "feature store")
            atomic_write_json(header_path, self.header)
        (self.root / "shards").mkdir(parents=True, exist_ok=True)
        self._clean_temporaries()

    def _clean_temporaries(self) -> None:
        # leftovers of a crash mid-shard: never part of the store, safe to delete
        for p in (self.root / "shards").glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)

    @property
    def is_complete(self) -> bool:
        return (self.root / "manifest.json").exists()

    def has_shard(self, index: int) -> bool:
        return (self.root / "shards" / _shard_name(index)).is_dir()

    def committed_shards(self) -> list[int]:
        return sorted(int(p.name) for p in (self.root / "shards").iterdir() if p.name.isdigit())

    def write_shard(self, index: int, data: ShardData) -> None:
        data.validate()
        final = self.root / "shards" / _shard_name(index)
        if final.exists():
            raise SemlocError(f"shard {final} is already committed")
        tmp = self.root / "shards" / f".tmp-{_shard_name(index)}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        lengths = np.array([t.shape[0] for t in data.text_tokens], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        width = self.header["dims"]["text_width"]
        text = (
            np.concatenate(data.text_tokens, axis=0)
            if len(data.text_tokens) and lengths.sum() > 0
            else np.zeros((0, width))
        )
        arrays = {
            "text_tokens": text.astype(self.dtype, copy=False),
            "text_offsets": offsets,
            "image_tokens": np.asarray(data.image_tokens).astype(self.dtype, copy=False),
            "text_embed": np.asarray(data.text_embed).astype(self.dtype, copy=False),
            "image_embed": np.asarray(data.image_embed).astype(self.dtype, copy=False),
            "image_present": np.asarray(data.image_present, dtype=bool),
        }
        for name, arr in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, arr)
                f.flush()
                os.fsync(f.fileno())
        posts: dict[str, Any] = {"ids": data.ids, "labels": data.labels, "splits": data.splits}
        for name in ("users", "created_at"):  # only when known: older readers ignore them
            values = getattr(data, name)
            if values is not None and any(v is not None for v in values):
                posts[name] = values
        with open(tmp / "posts.json", "w") as f:
            json.dump(posts, f)
            f.flush()
            os.fsync(f.fileno())
        sums = {p.name: _file_checksum(p) for p in sorted(tmp.iterdir())}
        with open(tmp / CHECKSUMS, "w") as f:
            json.dump(sums, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)  # the commit point

    def finalize(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write manifest.json from the committed shards; returns the manifest."""
        shards = self.committed_shards()
        if shards != list(range(len(shards))):
            raise SemlocError(
                f"{self.root}: shards are not contiguous ({shards}); resume extraction"
            )
        entries, labels, label_counts, split_counts = [], set(), {}, {}
        num_posts = num_images = 0
        seen: set[str] = set()
        duplicates = []
        for index in shards:
            d = self.root / "shards" / _shard_name(index)
            try:
                posts = json.loads((d / "posts.json").read_text())
                present = np.load(d / "image_present.npy")
            except (OSError, ValueError) as e:  # a committed shard edited or damaged since
                raise DamagedStoreError(
                    f"{d} is damaged ({type(e).__name__}: {e}); delete that shard directory and "
                    "run the extract command again to redo it"
                ) from None
            for pid in posts["ids"]:
                if pid in seen:
                    duplicates.append(pid)
                seen.add(pid)
            for lab in posts["labels"]:
                if lab is not None:
                    labels.add(lab)
                    label_counts[lab] = label_counts.get(lab, 0) + 1
            for sp in posts["splits"]:
                split_counts[str(sp)] = split_counts.get(str(sp), 0) + 1
            n = len(posts["ids"])
            entry: dict[str, Any] = {"name": _shard_name(index), "num_posts": n}
            if (d / CHECKSUMS).exists():
                entry["files"] = json.loads((d / CHECKSUMS).read_text())
            entries.append(entry)
            num_posts += n
            num_images += int(present.sum())
        if duplicates:
            raise SemlocError(f"{self.root}: duplicate post ids across shards: {duplicates[:10]}")
        manifest = {
            **self.header,
            "semloc_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "num_posts": num_posts,
            "num_images": num_images,
            "labels": sorted(labels),
            "label_counts": dict(sorted(label_counts.items())),
            "split_counts": dict(sorted(split_counts.items())),
            "shards": entries,
            **(extra or {}),
        }
        atomic_write_json(self.root / "manifest.json", manifest)
        return manifest


def _file_checksum(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _diff(have: dict[str, Any], want: dict[str, Any], keys: Sequence[str]) -> list[str]:
    out = []
    for key in keys:
        a, b = have.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if f"{key}.{sub}" in LABEL_KEYS:
                    continue
                if a.get(sub) != b.get(sub):
                    out.append(f"  {key}.{sub}: store has {a.get(sub)!r}, expected {b.get(sub)!r}")
        elif a != b:
            out.append(f"  {key}: store has {a!r}, expected {b!r}")
    return out


# ----------------------------------------------------------------------------------------------
# reading


class _Shard:
    """Lazily memory-mapped arrays of one shard."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {n: np.load(self.path / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
        return self._arrays

    def release(self) -> None:
        """Drop this process's resident pages of the maps (the data stays in the page cache)."""
        if self._arrays is None:
            return
        for arr in self._arrays.values():
            mm = getattr(arr, "_mmap", None)
            if mm is not None and hasattr(mm, "madvise"):
                with contextlib.suppress(OSError, ValueError):
                    mm.madvise(mmap.MADV_DONTNEED)


class FeatureStore:
    """Read access to a finished store.

    ``store.batch(indices)`` returns a padded `FeatureBatch` of float32 tensors; indices are
    global post positions (0 .. len-1), in the order the posts were extracted.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.exists():
            if (self.root / "header.json").exists():
                raise SemlocError(
                    f"feature store {self.root} is incomplete (extraction did not finish); "
                    "run the same extract command again to resume it"
                )
            raise SemlocError(f"{self.root} is not a feature store (no manifest.json)")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DamagedStoreError(f"{manifest_path} is not valid JSON: {e}") from None
        except OSError as e:
            raise DamagedStoreError(f"cannot read {manifest_path}: {e.strerror or e}") from None
        if not isinstance(self.manifest, dict):
            raise DamagedStoreError(f"{manifest_path} does not hold a JSON object")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise SemlocError(
                f"{self.root} has store format {self.manifest.get('format_version')!r}, "
                f"this semloc reads format {FORMAT_VERSION}; re-extract the features"
            )
        self.manifest_sha256 = sha256_file(manifest_path)
        self._check_manifest()
        d = self.manifest["dims"]
        self.dims = FeatureDims(d["text_width"], d["vision_width"], d["embed_dim"])
        self.num_image_tokens = int(d["num_image_tokens"])
        self.labels: list[str] = list(self.manifest["labels"])
        self._shards = [_Shard(self.root / "shards" / e["name"]) for e in self.manifest["shards"]]
        sizes = np.array([e["num_posts"] for e in self.manifest["shards"]], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self._load_post_table()
        self._check_arrays()

    def _damaged(self, what: str) -> DamagedStoreError:
        return DamagedStoreError(
            f"feature store {self.root} is damaged: {what}. Re-extract it (delete it and run "
            "the extract command again); `semloc extract --verify STORE` checks every file"
        )

    def _check_manifest(self) -> None:
        """Keys, types and the shard list: cheap, and before any file named in it is opened."""
        m = self.manifest
        need = {
            "dims": dict,
            "labels": list,
            "shards": list,
            "num_posts": int,
            "dtype": str,
            "fingerprint": str,
        }
        for key, tp in need.items():
            if not isinstance(m.get(key), tp):
                raise self._damaged(f"manifest key {key!r} is missing or not a {tp.__name__}")
        for key in ("text_width", "vision_width", "embed_dim", "num_image_tokens"):
            v = m["dims"].get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise self._damaged(f"manifest dims.{key} is {v!r}")
        if m["dtype"] not in ("float16", "float32"):
            raise self._damaged(f"manifest dtype {m['dtype']!r} is not float16/float32")
        if not all(isinstance(lab, str) for lab in m["labels"]) or len(set(m["labels"])) != len(
            m["labels"]
        ):
            raise self._damaged("manifest labels are not distinct strings")
        names = []
        for i, e in enumerate(m["shards"]):
            if not isinstance(e, dict):
                raise self._damaged(f"manifest shard entry {i} is not an object")
            name, n = e.get("name"), e.get("num_posts")
            # a shard name is six digits: nothing like "../another-store" can reach outside
            if not isinstance(name, str) or not _SHARD_NAME.match(name):
                raise self._damaged(f"manifest shard entry {i} has name {name!r}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise self._damaged(f"manifest shard {name} has num_posts {n!r}")
            names.append(name)
        if names != [_shard_name(i) for i in range(len(names))]:
            raise self._damaged(f"manifest shard list is not 000000..{len(names) - 1:06d}")
        shards_dir = self.root / "shards"
        try:
            on_disk = sorted(p.name for p in shards_dir.iterdir() if _SHARD_NAME.match(p.name))
        except OSError as e:
            raise self._damaged(f"cannot list {shards_dir} ({e.strerror or e})") from None
        if on_disk != names:
            missing = sorted(set(names) - set(on_disk))
            extra = sorted(set(on_disk) - set(names))
            raise self._damaged(
                f"shards on disk do not match the manifest (missing: {missing or 'none'}, "
                f"not in the manifest: {extra or 'none'})"
            )
        for name in names:
            d = shards_dir / name
            if d.is_symlink() or not d.resolve().is_relative_to(shards_dir.resolve()):
                raise self._damaged(f"shard {name} points outside the store")
        total = sum(e["num_posts"] for e in m["shards"])
        if total != m["num_posts"]:
            raise self._damaged(
                f"shards hold {total} posts, manifest num_posts is {m['num_posts']}"
            )

    def _load_post_table(self) -> None:
        label_index = {lab: i for i, lab in enumerate(self.labels)}
        split_index = {s: i for i, s in enumerate(SPLITS)}
        ids: list[str] = []
        label_codes, split_codes, raw_labels = [], [], []
        users: list[str | None] = []
        created_at: list[str | None] = []
        for shard, entry in zip(self._shards, self.manifest["shards"], strict=True):
            where = f"shard {entry['name']}"
            try:
                posts = json.loads((shard.path / "posts.json").read_text())
            except FileNotFoundError:
                raise self._damaged(f"{where} has no posts.json") from None
            except (OSError, ValueError) as e:
                raise self._damaged(f"{where}/posts.json cannot be read ({e})") from None
            n = entry["num_posts"]
            if not isinstance(posts, dict) or any(
                not isinstance(posts.get(k), list) or len(posts[k]) != n
                for k in ("ids", "labels", "splits")
            ):
                raise self._damaged(
                    f"{where}/posts.json does not list ids/labels/splits of {n} posts"
                )
            if not all(isinstance(i, str) for i in posts["ids"]):
                raise self._damaged(f"{where}/posts.json has ids that are not strings")
            unknown = sorted(
                {str(lab) for lab in posts["labels"] if lab is not None and lab not in label_index}
            )
            if unknown:
                raise self._damaged(
                    f"{where} has label(s) {unknown[:5]} that are not in the manifest's labels"
                )
            bad_split = sorted({str(s) for s in posts["splits"] if s is not None} - set(SPLITS))
            if bad_split:
                raise self._damaged(f"{where} has split(s) {bad_split[:5]}")
            for key in ("users", "created_at"):  # optional: stores with people
                if key in posts and (not isinstance(posts[key], list) or len(posts[key]) != n):
                    raise self._damaged(f"{where}/posts.json has {key} not of {n} posts")
            ids.extend(posts["ids"])
            users.extend(posts.get("users") or [None] * len(posts["ids"]))
            created_at.extend(posts.get("created_at") or [None] * len(posts["ids"]))
            raw_labels.extend(posts["labels"])
            label_codes.extend(
                label_index.get(lab, -1) if lab is not None else -1 for lab in posts["labels"]
            )
            split_codes.extend(split_index.get(s, -1) for s in posts["splits"])
        if len(set(ids)) != len(ids):
            raise self._damaged("post ids repeat across shards")
        self.ids = ids
        self.users = users  # author per post (None = unknown)
        self.created_at = created_at  # canonical ISO 8601 time per post (None = unknown)
        self.raw_labels: list[str | None] = raw_labels
        self.label_codes = np.asarray(label_codes, dtype=np.int64)  # -1 = no label
        self.split_codes = np.asarray(split_codes, dtype=np.int8)  # -1 = no split

    def _check_arrays(self) -> None:
        """Every array's shape, dtype and byte size from its .npy header (no data is read but
        the text offsets, which fix the text tokens' shape)."""
        dims, dtype = self.manifest["dims"], np.dtype(self.manifest["dtype"])
        nv, vw, e, tw = (
            dims["num_image_tokens"],
            dims["vision_width"],
            dims["embed_dim"],
            dims["text_width"],
        )
        for shard, entry in zip(self._shards, self.manifest["shards"], strict=True):
            n = entry["num_posts"]
            expect = {
                "text_offsets": ((n + 1,), np.dtype(np.int64)),
                "image_tokens": ((n, nv, vw), dtype),
                "text_embed": ((n, e), dtype),
                "image_embed": ((n, e), dtype),
                "image_present": ((n,), np.dtype(bool)),
            }
            for name, (shape, dt) in expect.items():
                _check_npy(self, shard.path / f"{name}.npy", entry["name"], shape, dt)
            try:
                offsets = np.load(shard.path / "text_offsets.npy")
            except (OSError, ValueError) as err:
                raise self._damaged(f"shard {entry['name']}/text_offsets.npy: {err}") from None
            if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
                raise self._damaged(f"shard {entry['name']}/text_offsets.npy is not increasing")
            _check_npy(
                self,
                shard.path / "text_tokens.npy",
                entry["name"],
                (int(offsets[-1]), tw),
                dtype,
            )

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    def indices(self, split: str | None = None) -> np.ndarray:
        """Positions of the posts of one split (all posts when split is None)."""
        if split is None or split == "all":
            return np.arange(len(self))
        if split not in SPLITS:
            raise SemlocError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.split_codes == SPLITS.index(split))

    def check_compatible(self, expected: dict[str, Any], what: str = "this run") -> None:
        """Refuse a store whose features differ from what `expected` (a header/manifest) holds."""
        diff = _diff(self.manifest, expected, FINGERPRINT_KEYS)
        if diff:
            raise StoreMismatchError(
                f"feature store {self.root} does not match {what}:\n" + "\n".join(diff)
            )

    def check_labels(self, labels: Sequence[str], indices: np.ndarray, what: str) -> None:
        """Every labelled post among `indices` must carry a label from `labels`."""
        known = set(labels)
        bad = [
            f"post {self.ids[i]!r}: label {self.raw_labels[i]!r} is not among {what}'s labels"
            for i in indices
            if self.raw_labels[i] is not None and self.raw_labels[i] not in known
        ]
        if bad:
            from semloc.errors import DataError

            raise DataError(f"{len(bad)} post(s) in {self.root} have unknown labels", bad)

    def batch(
        self,
        indices: Sequence[int] | np.ndarray,
        label_map: np.ndarray | None = None,
    ) -> FeatureBatch:
        """Gather posts into a padded batch. `label_map` maps store label codes to model codes."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("empty batch")
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        n = idx.size
        dims, nv = self.dims, self.num_image_tokens
        image_tokens = np.empty((n, nv, dims.vision_width), dtype=np.float32)
        text_embed = np.empty((n, dims.embed_dim), dtype=np.float32)
        image_embed = np.empty((n, dims.embed_dim), dtype=np.float32)
        present = np.empty(n, dtype=bool)
        texts: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        for s in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == s)
            local = idx[rows] - self._starts[s]
            order = np.argsort(local, kind="stable")  # sequential reads within a shard
            rows, local = rows[order], local[order]
            shard = self._shards[s]
            a = shard.arrays
            image_tokens[rows] = a["image_tokens"][local]
            text_embed[rows] = a["text_embed"][local]
            image_embed[rows] = a["image_embed"][local]
            present[rows] = a["image_present"][local]
            offsets = a["text_offsets"]
            for r, li in zip(rows, local, strict=True):
                texts[r] = np.asarray(a["text_tokens"][offsets[li] : offsets[li + 1]], np.float32)
            shard.release()
        max_len = max(1, max(t.shape[0] for t in texts))
        text_tokens = np.zeros((n, max_len, dims.text_width), dtype=np.float32)
        text_mask = np.zeros((n, max_len), dtype=bool)
        for r, t in enumerate(texts):
            text_tokens[r, : t.shape[0]] = t
            text_mask[r, : t.shape[0]] = True
        codes = self.label_codes[idx]
        if label_map is not None:
            codes = np.where(codes >= 0, label_map[np.maximum(codes, 0)], -1)
        return FeatureBatch(
            text_tokens=torch.from_numpy(text_tokens),
            text_mask=torch.from_numpy(text_mask),
            image_tokens=torch.from_numpy(image_tokens),
            image_present=torch.from_numpy(present),
            text_embed=torch.from_numpy(text_embed),
            image_embed=torch.from_numpy(image_embed),
            labels=torch.from_numpy(codes),
            index=torch.from_numpy(idx.copy()),
        )

    def close(self) -> None:
        for shard in self._shards:
            shard._arrays = None

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers re-open their own maps
        state = self.__dict__.copy()
        state["_shards"] = [_Shard(s.path) for s in self._shards]
        return state


def _check_npy(
    store: FeatureStore, path: Path, shard: str, shape: tuple[int, ...], dtype: np.dtype
) -> None:
    where = f"shard {shard}/{path.name}"
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                have_shape, _fortran, have_dtype = np.lib.format.read_array_header_1_0(f)
            else:
                have_shape, _fortran, have_dtype = np.lib.format.read_array_header_2_0(f)
            data_start = f.tell()
        size = path.stat().st_size
    except FileNotFoundError:
        raise store._damaged(f"{where} is missing") from None
    except (OSError, ValueError) as e:
        raise store._damaged(f"{where} is not a readable .npy file ({e})") from None
    if tuple(have_shape) != tuple(shape) or np.dtype(have_dtype) != dtype:
        raise store._damaged(
            f"{where} holds {np.dtype(have_dtype)} {tuple(have_shape)}, the manifest implies "
            f"{dtype} {tuple(shape)}"
        )
    want = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != want:
        raise store._damaged(f"{where} has {size} bytes, its header implies {want} (truncated?)")


def verify_store(root: str | Path) -> dict[str, Any]:
    """Open the store (the cheap checks) and recompute the SHA-256 of every shard file against
    the checksums recorded at commit. Returns {"posts", "shards", "files", "unchecked"};
    raises DamagedStoreError naming every file that differs."""
    store = FeatureStore(root)
    problems: list[str] = []
    files = unchecked = 0
    for shard, entry in zip(store._shards, store.manifest["shards"], strict=True):
        recorded = entry.get("files")
        if not isinstance(recorded, dict):
            unchecked += 1  # a store written before checksums were recorded
            continue
        on_disk = sorted(p.name for p in shard.path.iterdir() if p.name != CHECKSUMS)
        extra = sorted(set(on_disk) - set(recorded))
        if extra:
            problems.append(f"shard {entry['name']}: files not recorded at commit: {extra}")
        for name, want in sorted(recorded.items()):
            if "/" in name or name.startswith("."):
                problems.append(f"shard {entry['name']}: recorded file name {name!r}")
                continue
            path = shard.path / name
            if not path.is_file():
                problems.append(f"shard {entry['name']}/{name} is missing")
                continue
            have = _file_checksum(path)
            files += 1
            if have != want:
                problems.append(
                    f"shard {entry['name']}/{name}: content differs from commit "
                    f"({have['bytes']} bytes, sha256 {have['sha256'][:12]}...; recorded "
                    f"{want.get('bytes')} bytes, {str(want.get('sha256'))[:12]}...)"
                )
    if problems:
        from semloc.errors import DataError

        raise DamagedStoreError(
            str(
                DataError(
                    f"feature store {store.root} is damaged: {len(problems)} problem(s)", problems
                )
            )
        )
    return {
        "posts": len(store),
        "shards": len(store.manifest["shards"]),
        "files": files,
        "unchecked": unchecked,
    }


def label_map_for(store: FeatureStore, labels: Sequence[str]) -> np.ndarray:
    """Map the store's label codes onto the code order of `labels` (-1 where absent)."""
    pos = {lab: i for i, lab in enumerate(labels)}
    return np.array([pos.get(lab, -1) for lab in store.labels] or [-1], dtype=np.int64)
