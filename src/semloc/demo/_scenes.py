"""Scene layouts, the unrelated pictures (selfies, pets, memes), captions and photo effects.

Each class has two or three layouts; two class pairs also share a *neutral* layout that is drawn
from the same distribution whichever class it belongs to (a dining area for home/restaurant, a
busy hall for shop/station), so a fraction of their images cannot be told apart — which is what
makes those pairs image-confusable. Many objects occur in several classes (a laptop at home, in
the office and at school; a cup at home, in the office and in restaurants; a bench in parks,
stations and gyms), and a few clutter objects turn up anywhere.

A picture is drawn at twice its size, cropped a little at random and downsampled (cheap
anti-aliasing plus framing variety), then given lighting/colour jitter and sensor noise.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageFont

from semloc.demo import _draw as D
from semloc.demo._draw import RGB, Canvas, Thing

SUPERSAMPLE = 2

_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
_PLURALS = {
    "person": "people",
    "shelf": "shelves",
    "bench": "benches",
    "wine glass": "wine glasses",
    "rack of dumbbells": "racks of dumbbells",
    "flowers": "flowers",
    "plate": "plates of food",
    "bus": "buses",
}


def _plural(noun: str) -> str:
    if noun in _PLURALS:
        return _PLURALS[noun]
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


def _mention(t: Thing) -> str:
    noun = {"plate": "plate of food"}.get(t.noun, t.noun)
    if t.noun == "plate" and t.adj:
        noun = f"plate of {t.adj}"
        adj = ""
    else:
        adj = t.adj
    if noun == "flowers":
        return f"some {adj} flowers" if adj else "some flowers"
    if adj.startswith("in "):  # "a person in red"
        return f"{_article(noun)} {noun} {adj}"
    words = f"{adj} {noun}" if adj else noun
    return f"{_article(words)} {words}"


def _article(words: str) -> str:
    return "an" if words[0] in "aeiou" else "a"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def describe(things: list[Thing], max_items: int = 5) -> str:
    """'a red sofa, two chairs and a tv': first mentions first, repeats counted."""
    order: list[str] = []
    groups: dict[str, list[Thing]] = {}
    for t in things:
        if t.noun not in groups:
            order.append(t.noun)
            groups[t.noun] = []
        groups[t.noun].append(t)
    parts = []
    for noun in order[:max_items]:
        g = groups[noun]
        if len(g) == 1:
            parts.append(_mention(g[0]))
        else:
            parts.append(f"{_NUMBER_WORDS.get(len(g), 'several')} {_plural(noun)}")
    return _join(parts)


class Scene:
    """Objects are queued, then drawn back to front (by their ground line) so that nearer objects
    cover farther ones; the caption lists them by importance, not by drawing order."""

    def __init__(self, c: Canvas, rng: random.Random) -> None:
        self.c, self.rng = c, rng
        self._queue: list[tuple[float, int, Callable[..., Thing], tuple, dict, int]] = []
        self.things: list[tuple[int, int, Thing]] = []

    def add(self, fn: Callable[..., Thing], x: float, y: float, s: float, rank: int = 1, **kw):
        """rank 0 = key object (mentioned first), 1 = furniture, 2 = clutter, -1 = never named."""
        self._queue.append((y, len(self._queue), fn, (x, y, s), kw, rank))

    def draw(self) -> list[Thing]:
        for _, i, fn, (x, y, s), kw, rank in sorted(self._queue, key=lambda q: (q[0], q[1])):
            t = fn(self.c, self.rng, x, y, s, **kw)
            if rank >= 0:
                self.things.append((rank, i, t))
        self._queue.clear()
        return [t for _, _, t in sorted(self.things, key=lambda r: (r[0], r[1]))]


def _depth_scale(y: float, h: float, base: float) -> float:
    """Perspective: the same object is drawn bigger the lower (nearer) it stands."""
    d = (y - h) / max(1e-6, 1 - h)
    return base * (0.55 + 0.75 * d)


# ------------------------------------------------------------------------------------------------
# backgrounds


def _wall(c: Canvas, rng: random.Random, h: float, colours: list[RGB], brick: float = 0.0) -> RGB:
    wall = D.jit(rng, rng.choice(colours), 12)
    c.rect(0, 0, 1, h, wall)
    if rng.random() < brick:
        mortar = D.shade(wall, 1.25)
        rows = 14
        for r in range(rows):
            y = h * r / rows
            c.line([(0, y), (1, y)], mortar, 0.003)
            off = 0.04 if r % 2 else 0
            for k in range(13):
                x = off + k * 0.08
                c.line([(x, y), (x, y + h / rows)], mortar, 0.003)
    elif rng.random() < 0.2:  # wallpaper stripes
        stripe = D.shade(wall, 0.92)
        for k in range(0, 20, 2):
            c.rect(k * 0.05, 0, k * 0.05 + 0.05, h, stripe)
    c.rect(0, h - 0.012, 1, h, D.shade(wall, 0.7))  # skirting board
    return wall


_FLOORS: dict[str, list[RGB]] = {
    "wooden floor": [(160, 110, 70), (190, 150, 100), (120, 80, 50)],
    "carpet": [(120, 120, 125), (80, 95, 130), (150, 130, 110), (110, 60, 60)],
    "tiled floor": [(225, 225, 220), (200, 200, 200), (235, 230, 215)],
    "checkered floor": [(235, 235, 230)],
    "rubber floor": [(40, 40, 42), (55, 55, 60)],
    "concrete floor": [(165, 165, 160), (140, 140, 138)],
    "stone floor": [(190, 185, 175), (170, 165, 160)],
}


def _floor(c: Canvas, rng: random.Random, h: float, kind: str) -> str:
    base = D.jit(rng, rng.choice(_FLOORS[kind]), 10)
    c.rect(0, h, 1, 1, base)
    vx, vy = rng.uniform(0.3, 0.7), h - 0.35  # vanishing point above the horizon
    if kind == "wooden floor":
        for k in range(-6, 18):
            x = k / 10
            c.line([(vx + (x - vx) * 0.3, h), (x, 1)], D.shade(base, 0.8), 0.004)
    elif kind in ("tiled floor", "checkered floor", "stone floor"):
        dark = (40, 40, 45) if kind == "checkered floor" else D.shade(base, 0.85)
        rows = 6
        for r in range(rows):
            t0, t1 = (r / rows) ** 1.6, ((r + 1) / rows) ** 1.6
            y0, y1 = h + (1 - h) * t0, h + (1 - h) * t1
            c.line([(0, y0), (1, y0)], D.shade(base, 0.8), 0.003)
            if kind == "checkered floor":
                n = 8
                for k in range(-n, 2 * n):
                    if (k + r) % 2:
                        xa0 = vx + (k / n - vx) * ((y0 - vy) / (1 - vy))
                        xa1 = vx + ((k + 1) / n - vx) * ((y0 - vy) / (1 - vy))
                        xb0 = vx + (k / n - vx) * ((y1 - vy) / (1 - vy))
                        xb1 = vx + ((k + 1) / n - vx) * ((y1 - vy) / (1 - vy))
                        c.poly([(xa0, y0), (xa1, y0), (xb1, y1), (xb0, y1)], dark)
        if kind != "checkered floor":
            for k in range(-8, 18):
                x = k / 10
                c.line([(vx + (x - vx) * 0.3, h), (x, 1)], D.shade(base, 0.8), 0.003)
    elif kind == "rubber floor":
        for k in range(8):
            y = h + (1 - h) * (k / 8) ** 1.5
            c.line([(0, y), (1, y)], D.shade(base, 1.3), 0.003)
    else:  # carpet / concrete: speckles
        for _ in range(60):
            x, y = rng.uniform(0, 1), rng.uniform(h, 1)
            c.rect(x, y, x + 0.006, y + 0.006, D.shade(base, rng.uniform(0.85, 1.15)))
    return kind


def _ceiling_lights(c: Canvas, rng: random.Random, kind: str = "panel") -> None:
    n = rng.randint(2, 4)
    for k in range(n):
        x = (k + 0.5) / n + rng.uniform(-0.03, 0.03)
        if kind == "panel":
            c.rect(x - 0.08, 0.02, x + 0.08, 0.045, (250, 250, 240))
        else:
            c.rect(x - 0.15, 0.015, x + 0.15, 0.03, (245, 245, 250))


def _sky(c: Canvas, rng: random.Random, h: float) -> str:
    mood = rng.choice(["sunny", "sunny", "cloudy", "sunset"])
    top, bottom = {
        "sunny": ((70, 130, 220), (170, 210, 245)),
        "cloudy": ((150, 160, 175), (205, 210, 215)),
        "sunset": ((90, 80, 150), (245, 160, 90)),
    }[mood]
    c.vgradient(0, h, D.jit(rng, top, 10), D.jit(rng, bottom, 10), steps=16)
    if mood == "sunny" and rng.random() < 0.6:
        c.circle(rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.25), 0.05, (255, 240, 170))
    for _ in range(rng.randint(0, 3) + (3 if mood == "cloudy" else 0)):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.05, h * 0.6)
        for _ in range(3):
            r = rng.uniform(0.03, 0.06)
            c.circle(
                cx + rng.uniform(-0.05, 0.05),
                cy + rng.uniform(-0.01, 0.01),
                r,
                (245, 245, 248) if mood != "cloudy" else (225, 228, 232),
            )
    return {"sunny": "on a sunny day", "cloudy": "on a cloudy day", "sunset": "at sunset"}[mood]


# ------------------------------------------------------------------------------------------------
# layouts: each draws a full scene into a Scene and returns (setting, surface phrase)

HOME_WALLS = [(230, 215, 190), (190, 210, 225), (190, 205, 175), (235, 205, 200), (240, 225, 170)]
OFFICE_WALLS = [(235, 235, 232), (205, 208, 210), (200, 215, 230), (220, 220, 215)]
SCHOOL_WALLS = [(200, 225, 195), (240, 230, 180), (195, 215, 235), (235, 225, 205)]
RESTAURANT_WALLS = [(130, 45, 40), (120, 85, 60), (50, 80, 60), (150, 80, 60), (220, 180, 120)]
SHOP_WALLS = [(245, 245, 245), (225, 225, 228), (240, 220, 150), (230, 150, 120)]
GYM_WALLS = [(60, 60, 65), (35, 35, 38), (90, 90, 95), (150, 40, 40)]
HALL_WALLS = [(210, 205, 195), (225, 220, 210), (190, 195, 200), (200, 210, 215)]


def _clutter(sc: Scene, rng: random.Random, h: float, n: int) -> None:
    for _ in range(n):
        y = rng.uniform(h + 0.08, 0.98)
        sc.add(rng.choice(D.CLUTTER), rng.uniform(0.05, 0.95), y, _depth_scale(y, h, 0.08), rank=2)


def _living_room(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.5, 0.62)
    _wall(c, rng, h, HOME_WALLS, brick=0.1)
    surface = _floor(c, rng, h, rng.choice(["wooden floor", "wooden floor", "carpet"]))
    if rng.random() < 0.7:
        sc.add(D.window, rng.uniform(0.15, 0.85), h - rng.uniform(0.1, 0.2), 0.28)
    if rng.random() < 0.6:
        sc.add(D.painting, rng.uniform(0.15, 0.85), h - 0.22, rng.uniform(0.12, 0.2))
    if rng.random() < 0.2:
        sc.add(D.clock, rng.uniform(0.1, 0.9), 0.18, 0.1)
    if rng.random() < 0.3:
        sc.add(D.bookshelf, rng.choice([0.08, 0.92]), h + 0.06, rng.uniform(0.4, 0.5))
    if rng.random() < 0.3:
        sc.add(D.rug, rng.uniform(0.35, 0.65), rng.uniform(0.85, 0.97), 0.12)
    if rng.random() < 0.85:
        y = h + rng.uniform(0.1, 0.18)
        sc.add(D.sofa, rng.uniform(0.3, 0.7), y, _depth_scale(y, h, 0.24), rank=0)
    if rng.random() < 0.7:
        y = h + rng.uniform(0.05, 0.15)
        sc.add(D.tv, rng.choice([0.15, 0.85]), y, _depth_scale(y, h, 0.2), rank=0)
    if rng.random() < 0.5:  # coffee table with things on it
        y = rng.uniform(0.82, 0.92)
        x = rng.uniform(0.35, 0.65)
        s = _depth_scale(y, h, 0.13)
        sc.add(D.table, x, y, s)
        top = y - s * 0.8 + 0.001
        sc.add(rng.choice([D.cup, D.laptop, D.book]), x + rng.uniform(-0.06, 0.06), top, s * 0.45)
    if rng.random() < 0.4:
        sc.add(D.floor_lamp, rng.uniform(0.05, 0.95), h + 0.1, 0.38)
    if rng.random() < 0.5:
        sc.add(D.plant, rng.uniform(0.05, 0.95), h + rng.uniform(0.05, 0.2), 0.2)
    if rng.random() < 0.12:
        y = rng.uniform(0.85, 0.97)
        sc.add(D.dog, rng.uniform(0.2, 0.8), y, _depth_scale(y, h, 0.12))
    _clutter(sc, rng, h, rng.randint(0, 2))
    return "a living room", surface


def _bedroom(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.48, 0.6)
    _wall(c, rng, h, HOME_WALLS)
    surface = _floor(c, rng, h, rng.choice(["wooden floor", "carpet"]))
    if rng.random() < 0.7:
        sc.add(D.window, rng.uniform(0.2, 0.8), h - 0.12, 0.26)
    if rng.random() < 0.5:
        sc.add(D.painting, rng.uniform(0.15, 0.85), h - 0.25, 0.14)
    y = h + rng.uniform(0.2, 0.3)
    x = rng.uniform(0.4, 0.6)
    s = _depth_scale(y, h, 0.24)
    sc.add(D.bed, x, y, s, rank=0)
    if rng.random() < 0.3:
        sc.add(
            rng.choice([D.laptop, D.book, D.phone]),
            x + rng.uniform(-0.1, 0.15),
            y - s * 0.55,
            s * 0.3,
        )
    if rng.random() < 0.5:
        sc.add(D.floor_lamp, rng.choice([0.08, 0.92]), h + 0.12, 0.35)
    if rng.random() < 0.4:
        sc.add(D.plant, rng.uniform(0.05, 0.95), h + 0.08, 0.18)
    _clutter(sc, rng, h, rng.randint(0, 2))
    return "a bedroom", surface


def _kitchen(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.5, 0.62)
    _wall(c, rng, h, [*HOME_WALLS, (240, 240, 240)])
    surface = _floor(c, rng, h, rng.choice(["tiled floor", "wooden floor", "checkered floor"]))
    if rng.random() < 0.6:
        sc.add(D.window, rng.uniform(0.3, 0.7), h - 0.22, 0.2)
    y = h + 0.12
    sc.add(D.kitchen_counter, rng.uniform(0.35, 0.6), y, 0.26, rank=0)
    if rng.random() < 0.8:
        sc.add(D.fridge, rng.choice([0.1, 0.9]), y + 0.01, 0.5, rank=0)
    for _ in range(rng.randint(0, 2)):
        sc.add(rng.choice([D.cup, D.bottle]), rng.uniform(0.25, 0.7), y - 0.25, 0.07)
    if rng.random() < 0.4:
        ty = rng.uniform(0.85, 0.95)
        sc.add(D.table, rng.uniform(0.3, 0.7), ty, _depth_scale(ty, h, 0.15))
    if rng.random() < 0.3:
        sc.add(D.plant, rng.uniform(0.1, 0.9), h + 0.05, 0.15)
    _clutter(sc, rng, h, rng.randint(0, 1))
    return "a kitchen", surface


def _dining(sc: Scene, rng: random.Random) -> tuple[str, str]:
    """Neutral layout shared by home and restaurant: same distribution for both."""
    c = sc.c
    h = rng.uniform(0.45, 0.6)
    _wall(c, rng, h, HOME_WALLS[:2] + RESTAURANT_WALLS[2:], brick=0.2)
    surface = _floor(c, rng, h, rng.choice(["wooden floor", "checkered floor", "tiled floor"]))
    if rng.random() < 0.4:
        sc.add(D.window, rng.uniform(0.15, 0.85), h - 0.12, 0.25)
    if rng.random() < 0.4:
        sc.add(D.painting, rng.uniform(0.15, 0.85), h - 0.22, 0.14)
    if rng.random() < 0.6:
        for _ in range(rng.randint(1, 2)):
            sc.add(D.pendant_lamp, rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.3), 0.1)
    for _ in range(rng.randint(1, 2)):
        y = rng.uniform(h + 0.2, 0.95)
        x = rng.uniform(0.25, 0.75)
        s = _depth_scale(y, h, 0.2)
        for side in (-1, 1):
            if rng.random() < 0.7:
                sc.add(D.chair, x + side * s * 1.15, y - 0.01, s * 1.1)
        sc.add(D.table, x, y, s, rank=0)
        top = y - s * 0.8
        for _ in range(rng.randint(1, 3)):
            fn = rng.choice([D.plate, D.plate, D.cup, D.wine_glass, D.bottle])
            sc.add(fn, x + rng.uniform(-s * 0.6, s * 0.6), top + 0.002, s * 0.3, rank=0)
    if rng.random() < 0.4:
        sc.add(D.plant, rng.choice([0.07, 0.93]), h + 0.1, 0.22)
    _clutter(sc, rng, h, rng.randint(0, 1))
    return "a dining area", surface


def _open_office(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.45, 0.58)
    _wall(c, rng, h, OFFICE_WALLS)
    _ceiling_lights(c, rng)
    surface = _floor(c, rng, h, rng.choice(["carpet", "carpet", "tiled floor"]))
    for _ in range(rng.randint(0, 2)):
        sc.add(D.blinds_window, rng.uniform(0.15, 0.85), h - 0.1, 0.25)
    if rng.random() < 0.3:
        sc.add(D.whiteboard, rng.uniform(0.25, 0.75), h - 0.15, 0.16)
    if rng.random() < 0.25:
        sc.add(D.clock, rng.uniform(0.1, 0.9), 0.15, 0.08)
    if rng.random() < 0.5:  # cubicle partitions
        pc = D.jit(rng, rng.choice([(120, 135, 160), (150, 150, 150), (110, 140, 130)]), 10)
        for k in range(rng.randint(1, 3)):
            x = rng.uniform(0.05, 0.95)
            c.rect(x - 0.12, h - 0.05 + k * 0.02, x + 0.12, h + 0.15, pc)
    n = rng.randint(1, 3)
    for k in range(n):
        y = h + (1 - h) * (0.45 + 0.5 * k / max(1, n)) + rng.uniform(-0.03, 0.03)
        x = rng.uniform(0.3, 0.7)
        s = _depth_scale(y, h, 0.2)
        sc.add(D.desk, x, y, s, rank=0)
        top = y - s + 0.002
        for m in range(rng.choice([1, 1, 2])):
            sc.add(D.monitor, x - s * 0.35 + m * s * 0.7, top, s * 0.7, rank=0)
        sc.add(D.keyboard, x, top + 0.001, s * 0.05)
        if rng.random() < 0.4:
            sc.add(D.cup, x + s * 0.8, top, s * 0.2)
        if rng.random() < 0.3:
            sc.add(D.laptop, x - s * 0.8, top, s * 0.3)
        if rng.random() < 0.6:
            sc.add(D.office_chair, x + rng.uniform(-0.1, 0.1), y + 0.04, s * 0.9)
    if rng.random() < 0.6:
        sc.add(D.plant, rng.choice([0.06, 0.94]), h + 0.15, 0.25)
    if rng.random() < 0.3:
        y = rng.uniform(h + 0.1, 0.95)
        sc.add(D.person, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.45))
    _clutter(sc, rng, h, rng.randint(0, 1))
    return "an office", surface


def _meeting_room(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.45, 0.58)
    _wall(c, rng, h, OFFICE_WALLS)
    _ceiling_lights(c, rng)
    surface = _floor(c, rng, h, rng.choice(["carpet", "wooden floor"]))
    if rng.random() < 0.5:
        sc.add(D.tv, rng.uniform(0.35, 0.65), h - 0.12, 0.2, stand=False, rank=0)
    else:
        sc.add(D.whiteboard, rng.uniform(0.35, 0.65), h - 0.12, 0.2, rank=0)
    if rng.random() < 0.5:
        sc.add(D.blinds_window, rng.choice([0.12, 0.88]), h - 0.1, 0.25)
    y = rng.uniform(0.8, 0.9)
    s = _depth_scale(y, h, 0.2)
    for k in range(rng.randint(2, 5)):
        sc.add(D.office_chair, 0.15 + k * 0.17 + rng.uniform(-0.02, 0.02), y - 0.08, s * 0.9)
    sc.add(D.desk, 0.5, y, s * 1.4, rank=0)
    top = y - s * 1.4 + 0.002
    for _ in range(rng.randint(1, 3)):
        sc.add(
            rng.choice([D.laptop, D.cup, D.book, D.phone]), rng.uniform(0.25, 0.75), top, s * 0.3
        )
    if rng.random() < 0.4:
        sc.add(D.plant, rng.choice([0.05, 0.95]), h + 0.12, 0.22)
    return "a meeting room", surface


def _classroom(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.48, 0.6)
    _wall(c, rng, h, SCHOOL_WALLS)
    _ceiling_lights(c, rng, "tube")
    surface = _floor(c, rng, h, rng.choice(["tiled floor", "wooden floor"]))
    board = D.chalkboard if rng.random() < 0.65 else D.whiteboard
    sc.add(board, rng.uniform(0.4, 0.6), h - 0.1, rng.uniform(0.2, 0.26), rank=0)
    if rng.random() < 0.5:
        sc.add(D.clock, rng.choice([0.1, 0.9]), 0.17, 0.09)
    if rng.random() < 0.4:
        sc.add(D.wall_map, rng.choice([0.12, 0.88]), h - 0.12, 0.14)
    if rng.random() < 0.4:
        sc.add(D.window, rng.choice([0.08, 0.92]), h - 0.1, 0.22, curtains=False)
    if rng.random() < 0.4:  # teacher's desk
        y = h + 0.1
        sc.add(D.desk, rng.uniform(0.25, 0.75), y, 0.15)
        if rng.random() < 0.6:
            sc.add(rng.choice([D.globe, D.book, D.laptop]), rng.uniform(0.3, 0.7), y - 0.15, 0.08)
    rows = rng.randint(1, 3)
    for r in range(rows):
        y = h + (1 - h) * (0.45 + 0.5 * r / rows)
        s = _depth_scale(y, h, 0.2)
        cols = rng.randint(2, 4)
        for k in range(cols):
            x = (k + 0.5) / cols + rng.uniform(-0.03, 0.03)
            sc.add(D.school_desk, x, y, s, rank=0)
            if rng.random() < 0.15:
                sc.add(D.laptop, x, y - s + 0.002, s * 0.35)
    for _ in range(rng.randint(0, 2)):
        y = rng.uniform(0.85, 0.99)
        sc.add(D.backpack, rng.uniform(0.05, 0.95), y, _depth_scale(y, h, 0.1))
    return "a classroom", surface


def _restaurant_hall(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.42, 0.55)
    _wall(c, rng, h, RESTAURANT_WALLS, brick=0.35)
    surface = _floor(c, rng, h, rng.choice(["wooden floor", "checkered floor", "stone floor"]))
    for _ in range(rng.randint(2, 4)):
        sc.add(D.pendant_lamp, rng.uniform(0.1, 0.9), rng.uniform(0.12, 0.3), 0.09)
    if rng.random() < 0.45:
        sc.add(D.menu_board, rng.uniform(0.2, 0.8), h - 0.1, 0.2, rank=0)
    if rng.random() < 0.3:
        sc.add(D.painting, rng.uniform(0.15, 0.85), h - 0.2, 0.12)
    n = rng.randint(3, 5)
    for _ in range(n):
        y = rng.uniform(h + 0.1, 0.98)
        x = rng.uniform(0.1, 0.9)
        s = _depth_scale(y, h, 0.17)
        for side in (-1, 1):
            if rng.random() < 0.6:
                sc.add(D.chair, x + side * s * 1.1, y - 0.01, s * 1.1)
        sc.add(D.table, x, y, s, cloth=rng.random() < 0.7, rank=0)
        for _ in range(rng.randint(0, 2)):
            sc.add(
                rng.choice([D.plate, D.wine_glass, D.cup]),
                x + rng.uniform(-s * 0.5, s * 0.5),
                y - s * 0.8,
                s * 0.28,
                rank=0,
            )
    if rng.random() < 0.4:
        y = rng.uniform(h + 0.15, 0.95)
        sc.add(D.person, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.5))
    if rng.random() < 0.3:
        sc.add(D.plant, rng.choice([0.06, 0.94]), h + 0.1, 0.22)
    return "a restaurant", surface


def _cafe_counter(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.5, 0.6)
    _wall(c, rng, h, RESTAURANT_WALLS, brick=0.4)
    surface = _floor(c, rng, h, rng.choice(["wooden floor", "checkered floor"]))
    sc.add(D.menu_board, rng.uniform(0.3, 0.7), 0.28, 0.2, rank=0)
    shelf_y = h - 0.18
    c.rect(0.05, shelf_y, 0.95, shelf_y + 0.012, (100, 70, 45))
    for _ in range(rng.randint(3, 7)):
        sc.add(D.bottle, rng.uniform(0.08, 0.92), shelf_y, 0.08, rank=-1)
    for _ in range(rng.randint(1, 2)):
        sc.add(D.pendant_lamp, rng.uniform(0.15, 0.85), 0.2, 0.08)
    y = rng.uniform(0.82, 0.92)
    sc.add(D.counter, 0.5, y, 0.3, w=1.1, rank=0)
    top = y - 0.3
    if rng.random() < 0.5:
        sc.add(D.cash_register, rng.uniform(0.2, 0.8), top, 0.12)
    for _ in range(rng.randint(1, 3)):
        sc.add(rng.choice([D.cup, D.cup, D.plate, D.wine_glass]), rng.uniform(0.1, 0.9), top, 0.07)
    if rng.random() < 0.5:
        sc.add(D.person, rng.uniform(0.2, 0.8), top + 0.1, 0.4)
    return "a cafe counter", surface


def _shop_aisle(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.55, 0.68)
    _wall(c, rng, h, SHOP_WALLS)
    _ceiling_lights(c, rng, "tube")
    surface = _floor(c, rng, h, rng.choice(["tiled floor", "tiled floor", "stone floor"]))
    n = rng.randint(2, 4)
    for k in range(n):
        x = (k + 0.5) / n
        sc.add(D.store_shelf, x, h + 0.04, rng.uniform(0.45, 0.6), w=1 / n - 0.01, rank=0)
    if rng.random() < 0.5:
        sc.add(D.sale_sign, rng.uniform(0.2, 0.8), rng.uniform(0.12, 0.22), 0.09, rank=0)
    if rng.random() < 0.5:
        y = rng.uniform(0.8, 0.95)
        sc.add(D.shopping_cart, rng.uniform(0.2, 0.8), y, _depth_scale(y, h, 0.2))
    for _ in range(rng.randint(0, 2)):
        y = rng.uniform(h + 0.08, 0.98)
        sc.add(D.person, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.5))
    _clutter(sc, rng, h, rng.randint(0, 1))
    return "a store aisle", surface


def _checkout(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.5, 0.62)
    _wall(c, rng, h, SHOP_WALLS)
    _ceiling_lights(c, rng, "tube")
    surface = _floor(c, rng, h, "tiled floor")
    for k in range(rng.randint(1, 3)):
        sc.add(D.store_shelf, 0.15 + k * 0.35, h + 0.02, 0.4, rank=1)
    if rng.random() < 0.5:
        sc.add(D.sale_sign, rng.uniform(0.2, 0.8), 0.15, 0.08)
    y = rng.uniform(0.8, 0.9)
    sc.add(D.counter, rng.uniform(0.4, 0.6), y, 0.28, w=0.8, rank=0)
    sc.add(D.cash_register, rng.uniform(0.3, 0.7), y - 0.28, 0.14, rank=0)
    if rng.random() < 0.6:
        sc.add(D.person, rng.uniform(0.15, 0.85), y - 0.12, 0.42)
    for _ in range(rng.randint(0, 2)):
        sc.add(D.shopping_bag, rng.uniform(0.1, 0.9), rng.uniform(0.9, 0.99), 0.12)
    return "a shop checkout", surface


def _hall(sc: Scene, rng: random.Random) -> tuple[str, str]:
    """Neutral layout shared by shop and station (a mall or a concourse): crowds, signs, pillars."""
    c = sc.c
    h = rng.uniform(0.45, 0.58)
    _wall(c, rng, h, HALL_WALLS)
    if rng.random() < 0.5:  # big glazed front
        for _k in range(rng.randint(3, 6)):
            x = rng.uniform(0, 0.9)
            c.rect(x, h - 0.3, x + 0.08, h - 0.03, D.jit(rng, (170, 200, 225), 12))
    _ceiling_lights(c, rng, rng.choice(["panel", "tube"]))
    surface = _floor(c, rng, h, rng.choice(["tiled floor", "stone floor"]))
    for _k in range(rng.randint(1, 3)):
        sc.add(D.pillar, rng.uniform(0.05, 0.95), h + rng.uniform(0.05, 0.2), 0.7, rank=-1)
    for _ in range(rng.randint(1, 3)):
        sc.add(D.sign, rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.28), 0.06, rank=0)
    if rng.random() < 0.35:
        sc.add(D.clock, rng.uniform(0.15, 0.85), 0.12, 0.08)
    for _ in range(rng.randint(3, 8)):
        y = rng.uniform(h + 0.05, 0.99)
        sc.add(D.person, rng.uniform(0.05, 0.95), y, _depth_scale(y, h, 0.55), rank=0)
    for _ in range(rng.randint(0, 2)):
        y = rng.uniform(h + 0.1, 0.99)
        fn = rng.choice([D.shopping_bag, D.backpack])
        sc.add(fn, rng.uniform(0.05, 0.95), y, _depth_scale(y, h, 0.1))
    if rng.random() < 0.3:
        y = rng.uniform(h + 0.1, 0.9)
        sc.add(D.bench, rng.uniform(0.2, 0.8), y, _depth_scale(y, h, 0.15))
    return "a busy hall", surface


def _platform(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.4, 0.5)
    weather = ""
    if rng.random() < 0.5:
        weather = _sky(c, rng, h)
        roof = False
    else:
        c.rect(0, 0, 1, h, D.jit(rng, (110, 110, 115), 10))  # station wall
        roof = True
    if roof or rng.random() < 0.5:  # canopy
        c.rect(0, 0, 1, 0.08, D.jit(rng, (70, 70, 75), 8))
        for k in range(5):
            c.line([(k * 0.25, 0.08), (k * 0.25 + 0.12, 0)], (50, 50, 55), 0.006)
    # track bed on one side, platform on the other, seen along the tracks
    left = rng.random() < 0.5
    edge = rng.uniform(0.45, 0.6)
    bed_col = D.jit(rng, (95, 85, 75), 8)
    plat_col = D.jit(rng, (170, 170, 165), 10)
    c.rect(0, h, 1, 1, bed_col)
    for k in range(12):  # sleepers
        y = h + (1 - h) * (k / 12) ** 1.4
        c.line([(0, y), (1, y)], D.shade(bed_col, 0.7), 0.008)
    for rx in (0.25, 0.7) if left else (0.3, 0.75):
        c.line([(rx, h), (rx + (rx - 0.5) * 0.6, 1)], (150, 150, 155), 0.008)
    if left:
        c.poly([(0, h), (edge - 0.15, h), (edge, 1), (0, 1)], plat_col)
        c.line([(edge - 0.17, h), (edge - 0.03, 1)], (235, 200, 40), 0.012)
        px0, px1 = 0.03, edge - 0.1
    else:
        c.poly([(1, h), (1 - edge + 0.15, h), (1 - edge, 1), (1, 1)], plat_col)
        c.line([(1 - edge + 0.17, h), (1 - edge + 0.03, 1)], (235, 200, 40), 0.012)
        px0, px1 = 1 - edge + 0.1, 0.97
    if rng.random() < 0.6:
        sc.add(D.train, 0.5, h + 0.02, rng.uniform(0.25, 0.35), rank=0)
    for _ in range(rng.randint(1, 3)):
        sc.add(D.pillar, rng.uniform(px0, px1), rng.uniform(h + 0.1, 0.8), 0.7, rank=-1)
    if rng.random() < 0.6:
        sc.add(D.departure_board, rng.uniform(0.3, 0.7), rng.uniform(0.14, 0.22), 0.08, rank=0)
    if rng.random() < 0.35:
        sc.add(D.clock, rng.uniform(0.15, 0.85), 0.17, 0.07)
    if rng.random() < 0.5:
        y = rng.uniform(h + 0.15, 0.9)
        sc.add(D.bench, rng.uniform(px0 + 0.05, px1), y, _depth_scale(y, h, 0.14))
    for _ in range(rng.randint(1, 5)):
        y = rng.uniform(h + 0.08, 0.99)
        sc.add(D.person, rng.uniform(px0, px1), y, _depth_scale(y, h, 0.55))
    if rng.random() < 0.2:
        y = rng.uniform(h + 0.15, 0.9)
        sc.add(D.bicycle, rng.uniform(px0, px1), y, _depth_scale(y, h, 0.15))
    return "a train platform", weather


def _park(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.35, 0.55)
    weather = _sky(c, rng, h)
    grass = D.jit(rng, (90, 160, 70), 20)
    c.rect(0, h, 1, 1, grass)
    for _ in range(6):  # distant tree line
        x = rng.uniform(0, 1)
        c.circle(x, h, rng.uniform(0.04, 0.09), D.jit(rng, (45, 100, 50), 12))
    for _ in range(80):
        x, y = rng.uniform(0, 1), rng.uniform(h, 1)
        c.line([(x, y), (x + 0.004, y - 0.012)], D.shade(grass, 0.8), 0.003)
    if rng.random() < 0.6:  # a path towards the horizon
        px = rng.uniform(0.3, 0.7)
        c.poly(
            [(px - 0.02, h), (px + 0.02, h), (px + 0.25, 1), (px - 0.25, 1)],
            D.jit(rng, (205, 185, 145), 10),
        )
    if rng.random() < 0.3:
        y = rng.uniform(h + 0.1, h + 0.25)
        c.ellipse(
            rng.uniform(0, 0.4),
            y - 0.04,
            rng.uniform(0.6, 1),
            y + 0.04,
            D.jit(rng, (90, 140, 200), 12),
        )
        sc.things.append((0, -1, Thing("pond")))
    for _ in range(rng.randint(1, 4)):
        y = rng.uniform(h + 0.02, h + 0.25)
        sc.add(D.tree, rng.uniform(0, 1), y, _depth_scale(y, h, 0.5), rank=0)
    if rng.random() < 0.5:
        y = rng.uniform(h + 0.15, 0.9)
        sc.add(D.bench, rng.uniform(0.15, 0.85), y, _depth_scale(y, h, 0.15), rank=0)
    if rng.random() < 0.5:
        y = rng.uniform(h + 0.15, 0.99)
        sc.add(D.flowers, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.08))
    if rng.random() < 0.3:
        y = rng.uniform(h + 0.2, 0.99)
        sc.add(D.dog, rng.uniform(0.15, 0.85), y, _depth_scale(y, h, 0.12))
    if rng.random() < 0.25:
        y = rng.uniform(h + 0.2, 0.99)
        sc.add(D.ball, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.05))
    if rng.random() < 0.2:
        y = rng.uniform(h + 0.2, 0.95)
        sc.add(D.bicycle, rng.uniform(0.15, 0.85), y, _depth_scale(y, h, 0.15))
    for _ in range(rng.randint(0, 2)):
        y = rng.uniform(h + 0.1, 0.99)
        sc.add(D.person, rng.uniform(0.05, 0.95), y, _depth_scale(y, h, 0.45))
    if rng.random() < 0.25:
        sc.add(D.street_lamp, rng.uniform(0.05, 0.95), rng.uniform(h + 0.1, 0.8), 0.4)
    return "a park", weather


def _gym_weights(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.48, 0.6)
    _wall(c, rng, h, GYM_WALLS, brick=0.3)
    if rng.random() < 0.5:  # a painted stripe, the gym's colour
        c.rect(0, h * 0.45, 1, h * 0.52, D.jit(rng, (230, 190, 40), 30))
    _ceiling_lights(c, rng, "tube")
    surface = _floor(c, rng, h, "rubber floor")
    if rng.random() < 0.7:
        sc.add(D.mirror, rng.uniform(0.3, 0.7), h - 0.04, rng.uniform(0.22, 0.3))
    if rng.random() < 0.7:
        sc.add(D.dumbbell_rack, rng.uniform(0.25, 0.75), h + 0.12, 0.22, rank=0)
    if rng.random() < 0.6:
        y = rng.uniform(h + 0.15, 0.92)
        sc.add(D.bench, rng.uniform(0.2, 0.8), y, _depth_scale(y, h, 0.16), rank=0)
    if rng.random() < 0.5:
        y = rng.uniform(h + 0.2, 0.97)
        sc.add(D.barbell, rng.uniform(0.3, 0.7), y, _depth_scale(y, h, 0.07), rank=0)
    for _ in range(rng.randint(0, 3)):
        y = rng.uniform(h + 0.15, 0.99)
        sc.add(D.kettlebell, rng.uniform(0.05, 0.95), y, _depth_scale(y, h, 0.07))
    for _ in range(rng.randint(0, 2)):
        y = rng.uniform(h + 0.15, 0.99)
        sc.add(D.dumbbell, rng.uniform(0.05, 0.95), y, _depth_scale(y, h, 0.04))
    if rng.random() < 0.4:
        y = rng.uniform(0.85, 0.99)
        sc.add(D.exercise_mat, rng.uniform(0.3, 0.7), y, _depth_scale(y, h, 0.06))
    if rng.random() < 0.3:
        y = rng.uniform(h + 0.2, 0.99)
        sc.add(D.ball, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.14))
    if rng.random() < 0.3:
        y = rng.uniform(h + 0.1, 0.99)
        sc.add(D.person, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.5))
    if rng.random() < 0.3:
        sc.add(D.bottle, rng.uniform(0.1, 0.9), rng.uniform(0.9, 0.99), 0.07)
    return "a gym", surface


def _gym_cardio(sc: Scene, rng: random.Random) -> tuple[str, str]:
    c = sc.c
    h = rng.uniform(0.45, 0.58)
    _wall(c, rng, h, [*GYM_WALLS, (200, 200, 205)])
    _ceiling_lights(c, rng, "tube")
    surface = _floor(c, rng, h, "rubber floor")
    if rng.random() < 0.5:
        sc.add(D.mirror, 0.5, h - 0.03, 0.25)
    else:
        for k in range(rng.randint(1, 3)):
            sc.add(D.blinds_window, 0.2 + k * 0.3, h - 0.08, 0.22, rank=-1)
    if rng.random() < 0.4:
        sc.add(D.tv, rng.uniform(0.3, 0.7), 0.25, 0.12, stand=False)
    n = rng.randint(1, 3)
    y = rng.uniform(0.75, 0.92)
    for k in range(n):
        sc.add(
            D.treadmill,
            (k + 0.5) / n + rng.uniform(-0.03, 0.03),
            y - k * 0.01,
            _depth_scale(y, h, 0.22),
            rank=0,
        )
    if rng.random() < 0.3:
        y = rng.uniform(h + 0.2, 0.99)
        sc.add(D.exercise_mat, rng.uniform(0.3, 0.7), y, _depth_scale(y, h, 0.06))
    if rng.random() < 0.35:
        y = rng.uniform(h + 0.1, 0.99)
        sc.add(D.person, rng.uniform(0.1, 0.9), y, _depth_scale(y, h, 0.5))
    if rng.random() < 0.3:
        sc.add(D.bottle, rng.uniform(0.1, 0.9), rng.uniform(0.9, 0.99), 0.07)
    if rng.random() < 0.25:
        y = rng.uniform(h + 0.2, 0.95)
        sc.add(D.bench, rng.uniform(0.15, 0.85), y, _depth_scale(y, h, 0.14))
    return "a gym", surface


def _closeup(sc: Scene, rng: random.Random) -> tuple[str, str]:
    """A generic close-up that any class could have posted: the ambiguous image."""
    c = sc.c
    h = rng.uniform(0.35, 0.55)
    c.vgradient(0, h, D.jit(rng, (200, 195, 185), 40), D.jit(rng, (170, 165, 160), 40), steps=8)
    surf_name, surf = rng.choice(
        [
            ("wooden table", (150, 105, 65)),
            ("white table", (235, 235, 232)),
            ("gray table", (140, 140, 145)),
            ("marble table", (225, 222, 215)),
        ]
    )
    c.rect(0, h, 1, 1, D.jit(rng, surf, 10))
    n = rng.randint(1, 3)
    xs = sorted(rng.uniform(0.15, 0.85) for _ in range(n))
    for x in xs:
        fn = rng.choice([D.cup, D.cup, D.phone, D.laptop, D.book, D.bottle, D.plant])
        y = rng.uniform(h + 0.15, 0.95)
        s = rng.uniform(0.22, 0.4) * (1.8 if fn is D.book else 1.0)  # books lie flat: low
        sc.add(fn, x, y, s, rank=0)
    return "a close-up", f"on a {surf_name}"


LAYOUTS: dict[str, list[tuple[Callable[[Scene, random.Random], tuple[str, str]], float]]] = {
    "home": [(_living_room, 0.5), (_bedroom, 0.3), (_kitchen, 0.2)],
    "office": [(_open_office, 0.65), (_meeting_room, 0.35)],
    "school": [(_classroom, 1.0)],
    "restaurant": [(_restaurant_hall, 0.65), (_cafe_counter, 0.35)],
    "shop": [(_shop_aisle, 0.6), (_checkout, 0.4)],
    "station": [(_platform, 1.0)],
    "park": [(_park, 1.0)],
    "gym": [(_gym_weights, 0.6), (_gym_cardio, 0.4)],
}

# the neutral layout of each designed image-confusable pair
SHARED_LAYOUTS: dict[frozenset[str], Callable[[Scene, random.Random], tuple[str, str]]] = {
    frozenset({"home", "restaurant"}): _dining,
    frozenset({"shop", "station"}): _hall,
}


# ------------------------------------------------------------------------------------------------
# unrelated pictures


def _bokeh(c: Canvas, rng: random.Random) -> None:
    c.vgradient(0, 1, D.jit(rng, (120, 140, 170), 60), D.jit(rng, (90, 90, 100), 50), steps=10)
    for _ in range(rng.randint(4, 10)):
        col = D.jit(rng, (220, 210, 180), 35)
        c.circle(rng.uniform(0, 1), rng.uniform(0, 0.7), rng.uniform(0.03, 0.1), col)


def _selfie(c: Canvas, rng: random.Random) -> str:
    _bokeh(c, rng)
    skin = D.jit(rng, rng.choice(D.SKIN), 8)
    hair_name, hair = D.pick(rng, list(D.HAIR), D.HAIR)
    cname, cloth = D.pick(rng, ["red", "blue", "black", "white", "green", "yellow", "gray"])
    cx = rng.uniform(0.4, 0.6)
    fw, fh = rng.uniform(0.17, 0.22), rng.uniform(0.23, 0.28)
    cy = rng.uniform(0.4, 0.48)
    long_hair = rng.random() < 0.45
    if long_hair:
        c.rrect(cx - fw * 1.25, cy - fh * 1.05, cx + fw * 1.25, cy + fh * 1.3, 0.1, hair)
    c.ellipse(cx - 0.38, cy + fh * 1.2, cx + 0.38, 1.3, cloth)  # shoulders
    c.rect(cx - fw * 0.35, cy + fh * 0.7, cx + fw * 0.35, cy + fh * 1.35, D.shade(skin, 0.9))
    c.ellipse(cx - fw, cy - fh, cx + fw, cy + fh, skin)
    c.ellipse(cx - fw * 1.02, cy - fh * 1.12, cx + fw * 1.02, cy - fh * 0.25, hair)  # fringe
    c.rect(cx - fw * 0.9, cy - fh * 0.55, cx + fw * 0.9, cy - fh * 0.3, skin)
    for side in (-1, 1):
        ex = cx + side * fw * 0.42
        c.ellipse(ex - 0.03, cy - 0.035, ex + 0.03, cy + 0.01, (250, 250, 250))
        c.circle(ex, cy - 0.012, 0.014, (40, 30, 25))
        c.line([(ex - 0.03, cy - 0.06), (ex + 0.03, cy - 0.065)], D.shade(hair, 0.8), 0.008)
    glasses = rng.random() < 0.3
    if glasses:
        for side in (-1, 1):
            ex = cx + side * fw * 0.42
            c.circle(ex, cy - 0.012, 0.045, None, (20, 20, 20), 0.007)
        c.line([(cx - 0.03, cy - 0.015), (cx + 0.03, cy - 0.015)], (20, 20, 20), 0.006)
    smile = rng.random() < 0.7
    if smile:
        c.arc(
            cx - fw * 0.45,
            cy + fh * 0.1,
            cx + fw * 0.45,
            cy + fh * 0.6,
            10,
            170,
            (150, 50, 50),
            0.01,
        )
    else:
        c.ellipse(cx - 0.03, cy + fh * 0.4, cx + 0.03, cy + fh * 0.55, (140, 50, 50))
    bits = [f"{hair_name} hair"]
    if glasses:
        bits.append("glasses")
    who = "smiling person" if smile else "person pulling a face"
    return f"a selfie of a {who} with {_join(bits)} in {_article(cname)} {cname} top"


def _pet(c: Canvas, rng: random.Random) -> str:
    bg = D.jit(
        rng, rng.choice([(230, 225, 215), (200, 215, 230), (240, 220, 200), (210, 210, 210)]), 15
    )
    c.rect(0, 0, 1, 1, bg)
    c.rect(0, 0.8, 1, 1, D.shade(bg, 0.85))
    if rng.random() < 0.5:
        name = D.dog(
            c, rng, rng.uniform(0.47, 0.53), rng.uniform(0.8, 0.9), rng.uniform(0.38, 0.46)
        ).adj
        return f"a photo of {_article(name)} {name} dog against a plain background"
    name, fur = D.pick(rng, ["orange", "black", "white", "gray", "brown"])
    cx, cy, r = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.5), rng.uniform(0.2, 0.26)
    c.ellipse(cx - r * 1.3, cy + r * 0.6, cx + r * 1.3, 1.1, fur)  # body
    for side in (-1, 1):
        c.poly(
            [
                (cx + side * r * 0.9, cy - r * 0.3),
                (cx + side * r * 0.75, cy - r * 1.35),
                (cx + side * r * 0.2, cy - r * 0.8),
            ],
            fur,
        )
    c.circle(cx, cy, r, fur)
    eye = D.jit(rng, rng.choice([(120, 180, 60), (220, 170, 40), (80, 140, 200)]), 15)
    for side in (-1, 1):
        ex = cx + side * r * 0.4
        c.ellipse(ex - r * 0.18, cy - r * 0.25, ex + r * 0.18, cy + r * 0.05, eye)
        c.ellipse(ex - r * 0.05, cy - r * 0.22, ex + r * 0.05, cy + r * 0.02, (15, 15, 15))
        for k in (-1, 1):
            c.line(
                [
                    (cx + side * r * 0.2, cy + r * 0.35),
                    (cx + side * r * 1.1, cy + r * (0.3 + 0.12 * k)),
                ],
                (230, 230, 230) if name != "white" else (120, 120, 120),
                0.003,
            )
    c.poly(
        [(cx - r * 0.1, cy + r * 0.2), (cx + r * 0.1, cy + r * 0.2), (cx, cy + r * 0.32)],
        (230, 140, 150),
    )
    return f"a close-up photo of {_article(name)} {name} cat"


MEME_TEXTS = [
    ("me", "also me"),
    ("nobody:", "absolutely nobody:"),
    ("when it's monday", "again"),
    ("this is fine", ""),
    ("expectation", "reality"),
    ("me explaining", "my 5 brain cells"),
    ("one does not simply", "log off"),
    ("i'm not crying", "you're crying"),
    ("bold of you", "to assume"),
    ("task failed", "successfully"),
    ("it's free", "real estate"),
    ("they said", "it would be easy"),
]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _meme(c: Canvas, rng: random.Random) -> str:
    cname, bg = D.pick(rng, ["purple", "blue", "red", "yellow", "green", "black", "pink", "orange"])
    c.rect(0, 0, 1, 1, bg)
    shape = rng.choice(["face", "star", "blocks"])
    if shape == "face":
        c.circle(0.5, 0.52, 0.22, (250, 215, 70))
        c.circle(0.43, 0.47, 0.03, (30, 30, 30))
        c.circle(0.57, 0.47, 0.03, (30, 30, 30))
        c.arc(0.38, 0.45, 0.62, 0.66, 20, 160, (30, 30, 30), 0.012)
    elif shape == "star":
        pts = []
        for k in range(10):
            r = 0.22 if k % 2 == 0 else 0.1
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((0.5 + r * math.cos(a), 0.52 + r * math.sin(a)))
        c.poly(pts, D.jit(rng, (250, 250, 250), 5))
    else:
        for _ in range(4):
            x, y = rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.6)
            c.rect(
                x,
                y,
                x + rng.uniform(0.08, 0.2),
                y + rng.uniform(0.08, 0.2),
                D.jit(rng, D.shade(bg, 1.6), 40),
            )
    top, bottom = rng.choice(MEME_TEXTS)
    font = _font(max(8, c.n // 9))
    for text, yy in ((top, 0.04), (bottom, 0.82)):
        if not text:
            continue
        w = c.d.textlength(text.upper(), font=font)
        c.d.text(
            ((c.n - w) / 2, yy * c.n),
            text.upper(),
            font=font,
            fill=(255, 255, 255),
            stroke_width=max(1, c.n // 80),
            stroke_fill=(0, 0, 0),
        )
    words = f"'{top}'" + (f" and '{bottom}'" if bottom else "")
    return f"a meme with the text {words} on {_article(cname)} {cname} background"


# ------------------------------------------------------------------------------------------------
# rendering an image spec


def weighted_choice(rng: random.Random, options: list[tuple[Any, float]]) -> Any:
    r = rng.random() * sum(w for _, w in options)
    for opt, w in options:
        r -= w
        if r <= 0:
            return opt
    return options[-1][0]


_PREFIXES = ["a photo of", "a picture of", "an image of", "a photo showing", "a snapshot of"]


def _scene_caption(setting: str, things: list[Thing], surface: str, rng: random.Random) -> str:
    parts = [rng.choice(_PREFIXES), setting]
    objs = describe(things)
    if objs:
        parts.append(("of" if setting == "a close-up" else "with") + " " + objs)
    if surface:
        parts.append(
            surface
            if surface.startswith(("on ", "at "))
            else f"on a {surface}"
            if not surface.startswith("carpet")
            else "on a carpet"
        )
    return " ".join(parts)


# lighting per layout family: (brightness range, warm tint range); restaurants are dim and warm,
# offices bright and cool. Shared layouts have one entry, so lighting cannot tell the pair apart.
_LIGHT: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "a living room": ((0.75, 1.1), (0.0, 0.12)),
    "a bedroom": ((0.7, 1.05), (0.0, 0.15)),
    "a kitchen": ((0.85, 1.15), (-0.03, 0.08)),
    "a dining area": ((0.7, 1.1), (0.0, 0.15)),
    "an office": ((0.95, 1.2), (-0.1, 0.02)),
    "a meeting room": ((0.95, 1.2), (-0.1, 0.02)),
    "a classroom": ((0.9, 1.2), (-0.05, 0.05)),
    "a restaurant": ((0.65, 0.95), (0.05, 0.2)),
    "a cafe counter": ((0.75, 1.05), (0.03, 0.15)),
    "a store aisle": ((1.0, 1.2), (-0.06, 0.03)),
    "a shop checkout": ((1.0, 1.2), (-0.06, 0.03)),
    "a busy hall": ((0.85, 1.15), (-0.05, 0.05)),
    "a train platform": ((0.8, 1.15), (-0.08, 0.05)),
    "a park": ((0.85, 1.2), (-0.05, 0.08)),
    "a gym": ((0.8, 1.1), (-0.08, 0.05)),
    "a close-up": ((0.75, 1.15), (-0.08, 0.12)),
}


def _photo_effects(
    img: Image.Image, rng: random.Random, size: int, light: tuple, crop: bool = True
) -> tuple[Image.Image, str]:
    """Crop/zoom, downsample, then lighting, colour jitter and sensor noise."""
    n = img.width
    f = rng.uniform(0.85, 1.0) if crop else 1.0
    side = int(n * f)
    x0, y0 = rng.randint(0, n - side), rng.randint(0, n - side)
    img = img.resize(
        (size, size),
        Image.Resampling.BILINEAR,
        box=(x0, y0, x0 + side, y0 + side),
        reducing_gap=2.0,
    )
    (b0, b1), (w0, w1) = light
    bright, warm = rng.uniform(b0, b1), rng.uniform(w0, w1)
    contrast, sat = rng.uniform(0.85, 1.15), rng.uniform(0.75, 1.2)
    a = np.asarray(img, dtype=np.float32)
    gray = a.mean(axis=2, keepdims=True)
    a = gray + (a - gray) * sat
    a = (a - a.mean()) * contrast + a.mean()
    a = a * bright * np.array([1 + warm, 1 + warm * 0.3, 1 - warm], dtype=np.float32)
    nrng = np.random.default_rng(rng.getrandbits(63))
    a += nrng.normal(0.0, rng.uniform(2.0, 7.0), size=a.shape).astype(np.float32)
    out = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
    light_words = ""
    if bright < 0.8:
        light_words = "in dim light"
    elif warm > 0.12:
        light_words = "in warm light"
    elif bright > 1.12:
        light_words = "in bright light"
    return out, light_words


def render(
    kind: str, cls: str | None, partner: str | None, seed: str, size: int
) -> tuple[Image.Image, str]:
    """Draw one picture. ``kind``: ``scene`` (a layout of `cls`), ``confused`` (the neutral layout
    shared with `partner`), ``generic`` (an ambiguous close-up), ``selfie``, ``pet`` or ``meme``.
    Returns the image and a caption of what it shows."""
    rng = random.Random(seed)
    c = Canvas(size * SUPERSAMPLE)
    if kind in ("selfie", "pet", "meme"):
        caption = {"selfie": _selfie, "pet": _pet, "meme": _meme}[kind](c, rng)
        light = ((0.8, 1.15), (-0.05, 0.1)) if kind != "meme" else ((0.95, 1.05), (0.0, 0.0))
        img, _ = _photo_effects(c.img, rng, size, light, crop=kind != "meme")
        return img, caption
    sc = Scene(c, rng)
    if kind == "generic":
        layout = _closeup
    elif kind == "confused":
        pair = frozenset({cls, partner})
        if pair in SHARED_LAYOUTS:
            layout = SHARED_LAYOUTS[pair]
        else:  # no designed neutral layout: look like either class, so the pair blurs together
            layout = weighted_choice(rng, LAYOUTS[rng.choice(sorted(pair))])
    elif kind == "scene":
        layout = weighted_choice(rng, LAYOUTS[cls])
    else:
        raise ValueError(f"unknown image kind {kind!r}")
    setting, surface = layout(sc, rng)
    things = sc.draw()
    img, light_words = _photo_effects(c.img, rng, size, _LIGHT[setting])
    caption = _scene_caption(setting, things, surface, rng)
    if light_words:
        caption += " " + light_words
    return img, caption
