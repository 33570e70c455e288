"""Post texts: fragments from `_vocab` composed into posts, then roughened with typos.

Every post is built by `make_text(rng, label, mode, typo_rate)`; `mode` (decided by the world
plan, not here) says how much the text may reveal:

- ``"clear"``: a class cue, optionally a second cue, class emoji and hashtags;
- ``"confused"``: only phrases shared by the class's text-confusable pair (`SHARED_CUES`), or, for a
  pair without a shared bank, a cue of either class of the pair — the text fits both equally;
- ``"vague"``: place-ish wording that names no place ("back again", "my happy place");
- ``"chatter"``: chatter with no place at all ("lol", "monday again");
- ``"empty"``: the empty string (the data format allows it, so the pipeline must handle it).
"""

from __future__ import annotations

import random
import re

from semloc.demo import _vocab as V

_SLOT = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"[^\W\d_]{4,}")  # typos only touch alphabetic words long enough to survive

# a QWERTY neighbour map so substitutions look like fat-finger typos, not random letters
_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_ROWS):
    for _i, _ch in enumerate(_row):
        near = _row[max(0, _i - 1) : _i] + _row[_i + 1 : _i + 2]
        for _rr in (_r - 1, _r + 1):
            if 0 <= _rr < len(_ROWS):
                near += _ROWS[_rr][max(0, _i - 1) : _i + 1]
        _NEIGHBOURS[_ch] = near


def fill(rng: random.Random, template: str) -> str:
    return _SLOT.sub(lambda m: rng.choice(V.SLOTS[m.group(1)]), template)


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)  # keep first letter: people rarely mistype it
    kind = rng.random()
    if kind < 0.35:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap
    if kind < 0.65:
        return word[:i] + word[i + 1 :]  # drop
    if kind < 0.8:
        return word[:i] + word[i] + word[i:]  # double
    near = _NEIGHBOURS.get(word[i].lower())
    return word[:i] + (rng.choice(near) if near else word[i]) + word[i + 1 :]


def add_typos(rng: random.Random, text: str, rate: float) -> str:
    if rate <= 0:
        return text
    return _WORD.sub(lambda m: _typo(rng, m.group(0)) if rng.random() < rate else m.group(0), text)


def _pair_of(label: str, pairs: list[frozenset[str]]) -> frozenset[str] | None:
    return next((p for p in pairs if label in p), None)


def _style(rng: random.Random, text: str) -> str:
    """Casing and punctuation habits, applied to a whole fragment."""
    r = rng.random()
    if r < 0.15:
        text = text[:1].upper() + text[1:]
    elif r < 0.2:
        words = text.split()
        if words:  # SHOUT one word for emphasis
            k = rng.randrange(len(words))
            words[k] = words[k].upper()
            text = " ".join(words)
    r = rng.random()
    if r < 0.15:
        text += rng.choice(["!", "!!", "!!!", "?!"])
    elif r < 0.25:
        text += rng.choice(["...", ".", " .."])
    return text


def _decorations(
    rng: random.Random, emoji: list[str], tags: list[str], p_emoji: float, p_tags: float
) -> tuple[str, str]:
    """Emoji and hashtags: class-specific pools mixed with generic ones."""
    em = ""
    if rng.random() < p_emoji:
        n = rng.choice([1, 1, 1, 2, 3])
        pool = emoji if emoji and rng.random() < 0.6 else V.GENERIC_EMOJI
        em = "".join(rng.choice(pool) for _ in range(n))
    ht = ""
    if rng.random() < p_tags:
        n = rng.choice([1, 1, 2, 3])
        chosen = []
        for _ in range(n):
            pool = tags if tags and rng.random() < 0.6 else V.GENERIC_TAGS
            chosen.append("#" + fill(rng, rng.choice(pool)).replace(" ", ""))
        ht = " ".join(dict.fromkeys(chosen))
    return em, ht


def _compose(
    rng: random.Random,
    cues: list[str],
    emoji: list[str],
    tags: list[str],
    p_emoji: float = 0.5,
    p_tags: float = 0.4,
) -> str:
    opener = fill(rng, rng.choice(V.OPENERS)) if rng.random() < 0.35 else ""
    n_cues = 2 if len(cues) > 1 and rng.random() < 0.25 else 1
    parts = [_style(rng, fill(rng, cue)) for cue in rng.sample(cues, n_cues)]
    if rng.random() < 0.2:
        parts.append(fill(rng, rng.choice(V.TIMES)))
    if rng.random() < 0.45:
        feeling = _style(rng, fill(rng, rng.choice(V.FEELINGS)))
        if rng.random() < 0.3:
            parts.insert(0, feeling)
        else:
            parts.append(feeling)
    if rng.random() < 0.25:
        parts.append(fill(rng, rng.choice(V.CLOSERS)))
    sep = rng.choice([" ", " ", " ", ", ", " - ", ". "])
    text = sep.join(parts)
    if opener:  # openers carry their own punctuation ("update:", "ngl"), so only a space
        text = f"{opener} {text}"
    em, ht = _decorations(rng, emoji, tags, p_emoji, p_tags)
    if em:
        # emoji go at the end mostly, sometimes right after the first fragment
        text = f"{text} {em}" if rng.random() < 0.8 else f"{em} {text}"
    if ht:
        text = f"{text} {ht}"
    return text


def make_text(
    rng: random.Random,
    label: str,
    mode: str,
    typo_rate: float,
    text_pairs: list[frozenset[str]] | None = None,
) -> str:
    """One post text of class `label` in the given `mode` (see the module docstring)."""
    if mode == "empty":
        return ""
    if mode == "chatter":
        parts = [fill(rng, rng.choice(V.CHATTER))]
        if rng.random() < 0.3:
            parts.append(fill(rng, rng.choice(V.CHATTER)))
        text = _style(rng, " ".join(parts))
        em, ht = _decorations(rng, [], [], 0.55, 0.25)
        if rng.random() < 0.08:  # pure emoji posts exist
            text = em or rng.choice(V.GENERIC_EMOJI) * rng.randint(1, 4)
        else:
            text = " ".join(p for p in (text, em, ht) if p)
        return add_typos(rng, text, typo_rate)
    if mode == "vague":
        text = _compose(rng, V.VAGUE, [], [], p_emoji=0.5, p_tags=0.35)
        return add_typos(rng, text, typo_rate)
    if mode == "confused":
        pair = _pair_of(label, text_pairs or [])
        if pair is None:
            raise ValueError(f"class {label!r} has no text-confusable partner")
        if pair in V.SHARED_CUES:
            cues, emoji, tags = V.SHARED_CUES[pair], V.SHARED_EMOJI[pair], V.SHARED_TAGS[pair]
        else:  # no hand-written shared bank: draw from either class, so both look alike
            a, b = sorted(pair)
            cues = V.CUES[a] + V.CUES[b]
            emoji = V.CLASS_EMOJI[a] + V.CLASS_EMOJI[b]
            tags = V.CLASS_TAGS[a] + V.CLASS_TAGS[b]
        return add_typos(rng, _compose(rng, cues, emoji, tags), typo_rate)
    if mode == "clear":
        text = _compose(rng, V.CUES[label], V.CLASS_EMOJI[label], V.CLASS_TAGS[label])
        return add_typos(rng, text, typo_rate)
    raise ValueError(f"unknown text mode {mode!r}")
