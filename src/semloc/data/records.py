"""Post records: reading CSV, JSONL and Parquet files, pandas DataFrames or lists of dicts of
posts, validating every row. `read_posts` is the one place records are read and validated;
`validate_record` checks one record the same way (the server's request parsing calls it).

One record per post (see the README's data format table):

| field   | type                                   | meaning                                  |
|---------|----------------------------------------|------------------------------------------|
| `id`    | string, or an integer (written decimal) | unique, non-empty                        |
| `text`  | string; absent/null/NaN = no text       | may be empty                             |
| `image` | string path; absent/null/NaN/"" = none  | relative to the data file (or base_dir)  |
| `label` | string; absent/null/NaN/"" = unlabelled | class name                               |
| `split` | `train` / `dev` / `test`                | optional; absent: a seeded stratified split |
| `user`  | string, or an integer (written decimal) | optional author id (profiles, routines)  |
| `created_at` | ISO 8601 (offset, or naive in `data.timezone`) or epoch seconds | optional; see `semloc.data.timestamps` |

Anything else in these fields (a list, a dict, a bool, a number where a string is required, bytes)
is a bad row, named. Surrounding whitespace of id, label and split is stripped (CSV exports pad
cells); text is kept as written. Lone surrogates (which JSON escapes and Python strings allow but
UTF-8 and the tokenizer do not) are replaced by U+FFFD in text and counted (`counts`); in an id,
label, split or image path they make the row bad, since changing an identifier would silently
break joins with other data.

Validation collects *every* bad row with its row number and reason and raises one `DataError`;
nothing is dropped silently. Row numbers are 1-based positions of the record in its source (the
CSV header is not a record). Columns may be mapped (`data.text_column=caption`, ...) instead of
renaming files. Counts of what was found (posts, empty texts, images, labels, replaced characters)
are in `PostTable.counts`, and suspicious column choices (no text at all, labels missing) are
logged as warnings that name the likely column.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import numbers
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semloc.config import DataConfig
from semloc.data.timestamps import canonical_timestamp, resolve_timezone
from semloc.errors import DataError, SemlocError

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("id", "text", "image", "label", "split", "user", "created_at")
SPLITS = ("train", "dev", "test")
log = logging.getLogger(__name__)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# csv's default field limit (131072 characters) refuses real long posts; this bounds one cell at
# 64 Mi characters, far above any post, while a runaway unclosed quote still ends with an error
CSV_FIELD_LIMIT = 64 * 1024 * 1024
MAX_ID_CHARS = 4096  # an id is a key, not content; longer ones are refused by row


@dataclass
class Post:
    id: str
    text: str
    image: str | None  # as written in the source, relative to the table's base_dir
    label: str | None
    split: str | None
    row: int  # 1-based record number in the source
    user: str | None = None  # author id, as written
    created_at: str | None = None  # canonical ISO 8601 with offset (semloc.data.timestamps)

    def image_path(self, base_dir: str | Path) -> Path | None:
        if not self.image:
            return None
        p = Path(self.image)
        return p if p.is_absolute() else Path(base_dir) / p


@dataclass
class PostTable:
    records: list[Post]
    path: Path | None  # the posts file; None for a DataFrame or a list of records
    base_dir: Path
    split_assigned: bool  # True when splits were made by the seeded stratified split
    source: str = ""  # how messages name the source: the path, or "<DataFrame>"/"<records>"
    # posts, empty_text, with_image, labelled, text_chars_replaced, posts_text_replaced
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # also logged at WARNING
    ignored_columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[str]:
        return sorted({p.label for p in self.records if p.label is not None})


# ----------------------------------------------------------------------------------------------
# text and cells


def clean_text(text: str) -> tuple[str, int]:
    """`text` as valid Unicode (encodable as UTF-8), and how many code points were replaced.

    Surrogate pairs written as two code points (``"\\ud83d\\ude00"``) are joined into the
    character they encode; lone surrogates become U+FFFD. Every verb and the server use this
    for post text, so the tokenizer never sees a string it cannot encode.
    """
    if text.isascii():
        return text, 0
    try:
        text.encode("utf-8")
        return text, 0
    except UnicodeEncodeError:
        pass
    fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return fixed, fixed.count("\ufffd") - text.count("\ufffd")


def has_lone_surrogate(text: str) -> bool:
    """True when `text` cannot be encoded as UTF-8 (it holds an unpaired surrogate)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


class _BadCell(Exception):
    """One field of one record is unusable; the message says why."""


def _is_missing(value: Any) -> bool:
    """None, NaN and pandas' NA/NaT: the ways tables write "no value"."""
    if value is None:
        return True
    if isinstance(value, str):
        return False
    if isinstance(value, float | np.floating):
        return bool(math.isnan(value))
    pd = sys.modules.get("pandas")  # pandas' NA exists only where pandas is already imported
    return pd is not None and (value is pd.NA or value is pd.NaT)


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"


def _string(value: Any, name: str, *, allow_int: bool = False) -> str | None:
    """A field that must be a string (or, with allow_int, an integer): None when missing."""
    if _is_missing(value):
        return None
    if isinstance(value, str):
        if has_lone_surrogate(value):
            raise _BadCell(f"{name} contains a lone surrogate (not valid Unicode): {value!r:.60}")
        if "\x00" in value:
            raise _BadCell(f"{name} contains a NUL character: {value!r:.60}")
        return value
    if allow_int and isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        try:
            return str(int(value))
        except ValueError:  # more digits than Python converts
            raise _BadCell(f"{name} is an integer with too many digits") from None
    kind = "a string or an integer" if allow_int else "a string"
    raise _BadCell(f"{name} must be {kind}, got {_describe(value)}")


# ----------------------------------------------------------------------------------------------
# sources


def _json_object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the common case costs one dict() and one comparison
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


_JSON = json.JSONDecoder(object_pairs_hook=_json_object_without_duplicates)


def _decode(data: bytes, path: Path) -> str:
    """File bytes as text: UTF-8 (a BOM, as spreadsheet programs write, is dropped) or UTF-16
    with its BOM; an undecodable byte is named with its line."""
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SemlocError(
            f"{path} is not {encoding.replace('-sig', '').upper()} text ({e.reason} at byte {e.start}, "
            f"line {line}); save it as UTF-8"
        ) from None


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    row = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        row += 1
        try:
            obj = _JSON.decode(line)
        except json.JSONDecodeError as e:
            yield row, f"not valid JSON ({e.msg} at column {e.colno})"
            continue
        except RecursionError:
            yield row, "not usable JSON (nested too deeply)"
            continue
        except ValueError as e:  # a duplicate key, or an integer past Python's digit limit
            yield row, f"not usable JSON ({str(e).split(';')[0]})"
            continue
        if not isinstance(obj, dict):
            yield row, "not a JSON object"
            continue
        yield row, obj


@contextlib.contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    # strict: an unclosed quote is an error, not the rest of the file swallowed into one cell
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    with _csv_field_limit(CSV_FIELD_LIMIT):
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise SemlocError(f"the CSV header cannot be read: {e}") from None
        if header is None:
            return
        header = [h.strip() for h in header]
        dup = sorted(h for h, n in Counter(header).items() if n > 1)
        if dup:
            raise SemlocError(f"the CSV header repeats column(s) {dup}: {header}")
        row = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                # the reader cannot go on past a broken cell: name it and stop here
                yield row + 1, f"cannot be read as CSV (line {reader.line_num}: {e})"
                return
            if not cells:
                continue
            row += 1
            if len(cells) != len(header):
                yield row, f"has {len(cells)} cells, header has {len(header)}"
                continue
            yield row, dict(zip(header, cells, strict=True))


def _file_rows(path: Path, fmt: str) -> list[tuple[int, dict[str, Any] | str]]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return list(enumerate(table.to_pylist(), start=1))
    text = _decode(path.read_bytes(), path)
    return list(_jsonl_rows(text) if fmt == "jsonl" else _csv_rows(text))


def _memory_rows(source: Any) -> list[tuple[int, dict[str, Any] | str]]:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(source, pd.DataFrame):
        names = [str(c) for c in source.columns]
        dup = sorted(c for c, n in Counter(names).items() if n > 1)
        if dup:
            raise SemlocError(f"the DataFrame repeats column(s) {dup}")
        records = source.to_dict(orient="records")
    else:
        records = list(source)
    out: list[tuple[int, dict[str, Any] | str]] = []
    for row, rec in enumerate(records, start=1):
        if not isinstance(rec, Mapping):
            out.append((row, f"not a mapping of fields (got {type(rec).__name__})"))
            continue
        bad_keys = [k for k in rec if not isinstance(k, str)]
        if bad_keys:
            out.append((row, f"field names must be strings, got {bad_keys[:3]!r}"))
            continue
        out.append((row, dict(rec)))
    return out


# ----------------------------------------------------------------------------------------------
# validation


def _column_map(cfg: DataConfig) -> dict[str, str]:
    """Our field -> the source column holding it."""
    return {
        "id": cfg.id_column,
        "text": cfg.text_column,
        "image": cfg.image_column,
        "label": cfg.label_column,
        "split": cfg.split_column,
        "user": cfg.user_column,
        "created_at": cfg.created_at_column,
    }


def validate_record(
    rec: Mapping[str, Any],
    row: int = 1,
    *,
    data_cfg: DataConfig | None = None,
    require_labels: bool = False,
    labels: Iterable[str] | None = None,
) -> tuple[Post, int]:
    """One record as a `Post` (and how many text code points were replaced), or `DataError`.

    The same rules as `read_posts`, for one record (e.g. a JSON request body); duplicate ids and
    the split column's all-or-none rule need the whole table and are checked there.
    """
    cols = _column_map(data_cfg or DataConfig())
    known = (
        None if labels is None else labels if isinstance(labels, frozenset) else frozenset(labels)
    )
    tz = resolve_timezone((data_cfg or DataConfig()).timezone)
    return _record_to_post(rec, row, cols, require_labels, known, tz)


def _record_to_post(
    rec: Mapping[str, Any],
    row: int,
    cols: dict[str, str],
    require_labels: bool,
    known: frozenset[str] | None,
    tz: Any,
) -> tuple[Post, int]:
    where = f"row {row}"
    try:
        pid = _string(rec.get(cols["id"]), "id", allow_int=True)
        pid = pid.strip() if pid is not None else None
        if not pid:
            raise _BadCell("missing or empty id")
        if len(pid) > MAX_ID_CHARS:
            raise _BadCell(f"id has {len(pid)} characters (at most {MAX_ID_CHARS})")
    except _BadCell as e:
        raise DataError(f"{where}: {e}", [f"{where}: {e}"]) from None
    try:
        raw_text = rec.get(cols["text"])
        replaced = 0
        if _is_missing(raw_text):
            text = ""
        elif isinstance(raw_text, str):
            text, replaced = clean_text(raw_text)
        else:
            raise _BadCell(f"text must be a string, got {_describe(raw_text)}")
        image = _string(rec.get(cols["image"]), "image")
        image = image if image is not None and image.strip() else None
        label = _string(rec.get(cols["label"]), "label")
        label = label.strip() or None if label is not None else None
        split = _string(rec.get(cols["split"]), "split")
        split = split.strip() or None if split is not None else None
        if require_labels and label is None:
            raise _BadCell("missing label")
        if known is not None and label is not None and label not in known:
            raise _BadCell(f"label {label!r} is not in the label list ({', '.join(sorted(known))})")
        if split is not None and split not in SPLITS:
            raise _BadCell(f"split {split!r} is not one of {SPLITS}")
        user = _string(rec.get(cols["user"]), "user", allow_int=True)
        user = user.strip() or None if user is not None else None
        raw_time = rec.get(cols["created_at"])
        try:
            created_at = canonical_timestamp(
                None if _is_missing(raw_time) else raw_time,
                tz,
            )
        except ValueError as e:
            raise _BadCell(f"created_at {raw_time!r}: {e}") from None
    except _BadCell as e:
        where = f"row {row} (id {pid!r})"
        raise DataError(f"{where}: {e}", [f"{where}: {e}"]) from None
    post = Post(
        id=pid,
        text=text,
        image=image,
        label=label,
        split=split,
        row=row,
        user=user,
        created_at=created_at,
    )
    return post, replaced


def _likely_column(
    rows: Sequence[tuple[int, dict[str, Any] | str]], candidates: Iterable[str], want: str
) -> str | None:
    """The unmapped column that most looks like text (long strings) or labels (few values)."""
    best, best_score = None, 0.0
    records = [rec for _, rec in rows if isinstance(rec, dict)]
    for col in sorted(candidates):
        values = [rec.get(col) for rec in records]
        strings = [v for v in values if isinstance(v, str) and v.strip()]
        if len(strings) < max(1, len(records) // 2):
            continue
        if want == "text":
            score = sum(len(v) for v in strings) / len(strings)
        else:  # labels: repeated values, few of them
            distinct = len(set(strings))
            if distinct > max(1, len(strings) // 2):
                continue
            score = len(strings) / distinct
        if score > best_score:
            best, best_score = col, score
    return best


def _describe_source(source: Any) -> str:
    if isinstance(source, str | Path):
        return str(source)
    try:
        import pandas as pd

        if isinstance(source, pd.DataFrame):
            return "<DataFrame>"
    except ImportError:  # pragma: no cover
        pass
    return "<records>"


def read_posts(
    source: str | Path | pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    require_labels: bool = False,
    labels: Sequence[str] | None = None,
    data_cfg: DataConfig | None = None,
    base_dir: str | Path | None = None,
) -> PostTable:
    """Read and validate posts from a file (.csv/.jsonl/.ndjson/.parquet), a pandas DataFrame or a
    list of dicts.

    require_labels: every post must have a label (training/evaluation).
    labels: when given, a label outside this list is an error (evaluation against a model).
    base_dir: what relative image paths are relative to; default the posts file's directory,
    or the current directory for a DataFrame or list of records.
    """
    data_cfg = data_cfg or DataConfig()
    name = _describe_source(source)
    path: Path | None = None
    if isinstance(source, str | Path):
        path = Path(source)
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise SemlocError(
                f"{path}: unknown posts format {path.suffix!r}; use one of {', '.join(FORMATS)}"
            )
        if path.is_dir():
            raise SemlocError(f"posts file {path} is a directory")
        if not path.is_file():
            raise SemlocError(f"posts file {path} does not exist")
        try:
            rows = _file_rows(path, fmt)
        except SemlocError as e:
            msg = str(e)
            raise SemlocError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
        except OSError as e:
            raise SemlocError(f"cannot read {path}: {e.strerror or e}") from None
        except Exception as e:  # pyarrow raises many types for a corrupt file
            raise SemlocError(f"cannot read {path} as {fmt}: {e}") from None
        base = Path(base_dir) if base_dir is not None else path.parent
    else:
        if isinstance(source, Mapping | bytes | str):
            raise SemlocError(
                "read_posts takes a path, a pandas DataFrame or a list of records, got "
                f"{type(source).__name__}"
            )
        try:
            rows = _memory_rows(source)
        except TypeError:
            raise SemlocError(
                "read_posts takes a path, a pandas DataFrame or a list of records, got "
                f"{type(source).__name__}"
            ) from None
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not rows:
        raise DataError(f"{name} contains no posts")
    table = _validate_rows(rows, name, data_cfg, require_labels=require_labels, labels=labels)
    table.path = path
    table.base_dir = base.resolve()
    return table


def _validate_rows(
    rows: list[tuple[int, dict[str, Any] | str]],
    name: str,
    data_cfg: DataConfig,
    *,
    require_labels: bool,
    labels: Sequence[str] | None,
) -> PostTable:
    cols = _column_map(data_cfg)
    present: set[str] = set()
    for _, rec in rows:
        if isinstance(rec, dict):
            present.update(rec)
    if cols["id"] not in present and present:
        hint = "" if cols["id"] == "id" else " (data.id_column)"
        raise DataError(
            f"{name}: missing required column {cols['id']!r}{hint}",
            [f"columns: {sorted(present)}"],
        )
    problems: list[str] = []
    posts: list[Post] = []
    seen: dict[str, int] = {}
    known = None if labels is None else frozenset(labels)
    tz = resolve_timezone(data_cfg.timezone)  # a bad data.timezone is an error before any row
    replaced_chars = replaced_posts = 0
    for row, rec in rows:
        if isinstance(rec, str):
            problems.append(f"row {row}: {rec}")
            continue
        try:
            post, replaced = _record_to_post(rec, row, cols, require_labels, known, tz)
        except DataError as e:
            problems.extend(e.problems)
            continue
        if post.id in seen:
            problems.append(
                f"row {row}: duplicate id {post.id!r} (first seen at row {seen[post.id]})"
            )
            continue
        seen[post.id] = row
        replaced_chars += replaced
        replaced_posts += replaced > 0
        posts.append(post)
    have_split = [p.split is not None for p in posts]
    if any(have_split) and not all(have_split):
        problems.extend(
            f"row {p.row} (id {p.id!r}): missing split (other rows have one)"
            for p in posts
            if p.split is None
        )
    if problems:
        raise DataError(f"{name}: {len(problems)} bad row(s)", problems)
    mapped = set(cols.values())
    ignored = sorted(present - mapped)
    if ignored:
        # extra columns (user, timestamp, ...) are common in real exports: kept out, said once
        log.info("%s: ignoring column(s) %s", name, ", ".join(ignored))
    counts = {
        "posts": len(posts),
        "empty_text": sum(not p.text.strip() for p in posts),
        "with_image": sum(p.image is not None for p in posts),
        "labelled": sum(p.label is not None for p in posts),
        "text_chars_replaced": replaced_chars,
        "posts_text_replaced": replaced_posts,
    }
    warnings = []
    if posts and counts["empty_text"] == len(posts):
        guess = _likely_column(rows, ignored, "text")
        warnings.append(
            f"{name}: none of the {len(posts)} posts has text (column {cols['text']!r} "
            + ("is absent" if cols["text"] not in present else "is empty")
            + ")"
            + (f"; column {guess!r} looks like text: set data.text_column={guess}" if guess else "")
        )
    if posts and counts["labelled"] == 0 and cols["label"] not in present:
        guess = _likely_column(rows, ignored, "label")
        if guess:
            warnings.append(
                f"{name}: no post has a label (column {cols['label']!r} is absent); column "
                f"{guess!r} looks like labels: set data.label_column={guess}"
            )
    if replaced_posts:
        warnings.append(
            f"{name}: {replaced_chars} lone surrogate(s) in the text of {replaced_posts} post(s) "
            "were replaced by U+FFFD"
        )
    for w in warnings:
        log.warning("%s", w)
    split_assigned = False
    if posts and not any(have_split):
        assign_splits(posts, data_cfg)
        split_assigned = True
    return PostTable(
        records=posts,
        path=None,
        base_dir=Path.cwd(),
        split_assigned=split_assigned,
        source=name,
        counts=counts,
        warnings=warnings,
        ignored_columns=ignored,
    )


def assign_splits(posts: list[Post], cfg: DataConfig) -> None:
    """Seeded stratified train/dev/test split (by label; unlabelled posts form their own stratum).

    Each class is shuffled with the seed and cut by the fractions, so every class with at least
    a few posts appears in every split and the result does not depend on the file's row order
    beyond ties.
    """
    if not 0 <= cfg.dev_fraction < 1 or not 0 <= cfg.test_fraction < 1:
        raise SemlocError("data.dev_fraction and data.test_fraction must be in [0, 1)")
    if cfg.dev_fraction + cfg.test_fraction >= 1:
        raise SemlocError("data.dev_fraction + data.test_fraction must be below 1")
    rng = np.random.default_rng(cfg.split_seed)
    by_label: dict[str | None, list[Post]] = {}
    for p in sorted(posts, key=lambda p: p.id):
        by_label.setdefault(p.label, []).append(p)
    for label in sorted(by_label, key=lambda x: (x is None, x or "")):
        group = by_label[label]
        order = rng.permutation(len(group))
        n = len(group)
        n_test = round(n * cfg.test_fraction)
        n_dev = round(n * cfg.dev_fraction)
        if n - n_test - n_dev < 1:  # tiny class: keep at least one training example
            n_test = n_dev = 0
        for rank, i in enumerate(order):
            group[i].split = (
                "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
            )


def split_counts(posts: Sequence[Post]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for p in posts:
        out.setdefault(p.split or "none", Counter())[p.label or "<none>"] += 1
    return out
