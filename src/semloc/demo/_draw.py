"""Drawing primitives and the object library of the demo world's scenes.

Coordinates are fractions of the image side (0..1), so a scene is drawn the same way at any
resolution. Every object function has the signature ``obj(c, rng, x, y, s) -> Thing``: ``(x, y)``
is where the object stands (horizontal centre, bottom edge) and ``s`` its height; the returned
`Thing` (noun + optional colour/material word) feeds the caption.

Colours are drawn from named base colours plus jitter, and the *name* goes into the caption, so
"a red cup" in a caption is red in the picture.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]


class Thing(NamedTuple):
    noun: str
    adj: str = ""


# base colours by caption name
PALETTE: dict[str, RGB] = {
    "red": (190, 40, 40),
    "orange": (230, 130, 40),
    "yellow": (235, 205, 60),
    "green": (60, 140, 70),
    "blue": (50, 90, 180),
    "navy": (30, 40, 90),
    "teal": (40, 140, 140),
    "purple": (120, 60, 150),
    "pink": (230, 130, 170),
    "brown": (120, 75, 40),
    "beige": (215, 195, 160),
    "gray": (128, 128, 128),
    "black": (30, 30, 32),
    "white": (238, 238, 235),
    "silver": (185, 188, 192),
}
WOODS: dict[str, RGB] = {
    "light wooden": (200, 160, 110),
    "wooden": (150, 100, 60),
    "dark wooden": (90, 60, 35),
}
SKIN: list[RGB] = [(241, 204, 170), (224, 172, 130), (198, 140, 100), (150, 100, 70), (95, 65, 45)]
HAIR: dict[str, RGB] = {
    "black": (25, 22, 20),
    "brown": (95, 60, 35),
    "blonde": (220, 185, 110),
    "red": (165, 70, 35),
    "gray": (160, 160, 160),
}


def clamp(v: float) -> int:
    return 0 if v < 0 else 255 if v > 255 else int(v)


def jit(rng: random.Random, c: RGB, amount: int = 18) -> RGB:
    return (
        clamp(c[0] + rng.randint(-amount, amount)),
        clamp(c[1] + rng.randint(-amount, amount)),
        clamp(c[2] + rng.randint(-amount, amount)),
    )


def shade(c: RGB, f: float) -> RGB:
    return (clamp(c[0] * f), clamp(c[1] * f), clamp(c[2] * f))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        clamp(a[0] + (b[0] - a[0]) * t),
        clamp(a[1] + (b[1] - a[1]) * t),
        clamp(a[2] + (b[2] - a[2]) * t),
    )


def pick(
    rng: random.Random, names: list[str], table: dict[str, RGB] | None = None
) -> tuple[str, RGB]:
    name = rng.choice(names)
    return name, jit(rng, (table or PALETTE)[name])


class Canvas:
    """A square RGB image addressed in fractions of its side."""

    def __init__(self, size: int, bg: RGB = (0, 0, 0)) -> None:
        self.n = size
        self.img = Image.new("RGB", (size, size), bg)
        self.d = ImageDraw.Draw(self.img)

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        n = self.n
        return [min(x0, x1) * n, min(y0, y1) * n, max(x0, x1) * n, max(y0, y1) * n]

    def _w(self, w: float) -> int:
        return max(1, round(w * self.n))

    def rect(self, x0, y0, x1, y1, fill: RGB | None, outline: RGB | None = None, w=0.006) -> None:
        self.d.rectangle(
            self._box(x0, y0, x1, y1),
            fill=fill,
            outline=outline,
            width=self._w(w) if outline else 0,
        )

    def rrect(self, x0, y0, x1, y1, r: float, fill: RGB | None, outline: RGB | None = None) -> None:
        box = self._box(x0, y0, x1, y1)
        rad = min(r * self.n, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2)
        self.d.rounded_rectangle(box, radius=max(0, rad), fill=fill, outline=outline)

    def ellipse(self, x0, y0, x1, y1, fill: RGB | None, outline: RGB | None = None, w=0.006):
        self.d.ellipse(
            self._box(x0, y0, x1, y1),
            fill=fill,
            outline=outline,
            width=self._w(w) if outline else 0,
        )

    def circle(self, cx, cy, r, fill: RGB | None, outline: RGB | None = None, w=0.006) -> None:
        self.ellipse(cx - r, cy - r, cx + r, cy + r, fill, outline, w)

    def poly(self, pts: list[tuple[float, float]], fill: RGB | None, outline: RGB | None = None):
        self.d.polygon([(x * self.n, y * self.n) for x, y in pts], fill=fill, outline=outline)

    def line(self, pts: list[tuple[float, float]], fill: RGB, w: float = 0.006) -> None:
        self.d.line([(x * self.n, y * self.n) for x, y in pts], fill=fill, width=self._w(w))

    def arc(self, x0, y0, x1, y1, start: float, end: float, fill: RGB, w: float = 0.006) -> None:
        self.d.arc(self._box(x0, y0, x1, y1), start, end, fill=fill, width=self._w(w))

    def vgradient(self, y0: float, y1: float, top: RGB, bottom: RGB, steps: int = 24) -> None:
        for i in range(steps):
            t = i / max(1, steps - 1)
            a = y0 + (y1 - y0) * i / steps
            b = y0 + (y1 - y0) * (i + 1) / steps
            self.rect(0, a, 1, b + 0.002, mix(top, bottom, t))


# ------------------------------------------------------------------------------------------------
# furniture and household


def sofa(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "blue", "gray", "green", "brown", "beige", "teal", "navy"])
    w = s * rng.uniform(1.8, 2.6)
    c.rect(x - w / 2, y - s, x + w / 2, y - s * 0.4, shade(col, 0.85))  # back
    n = rng.choice([2, 3])
    for i in range(1, n):
        xi = x - w / 2 + w * i / n
        c.line([(xi, y - s * 0.95), (xi, y - s * 0.45)], shade(col, 0.65), 0.004)
    c.rect(x - w / 2, y - s * 0.45, x + w / 2, y - s * 0.15, col)  # seat
    arm = s * 0.22
    c.rrect(
        x - w / 2 - arm, y - s * 0.7, x - w / 2 + arm * 0.3, y - s * 0.12, 0.02, shade(col, 0.9)
    )
    c.rrect(
        x + w / 2 - arm * 0.3, y - s * 0.7, x + w / 2 + arm, y - s * 0.12, 0.02, shade(col, 0.9)
    )
    for lx in (x - w / 2, x + w / 2 - s * 0.08):
        c.rect(lx, y - s * 0.15, lx + s * 0.08, y, (40, 30, 25))
    if rng.random() < 0.5:  # a cushion
        _, cc = pick(rng, ["yellow", "white", "orange", "pink", "teal"])
        cx = x + rng.uniform(-w / 3, w / 3)
        c.rrect(cx - s * 0.18, y - s * 0.75, cx + s * 0.18, y - s * 0.42, 0.015, cc)
    return Thing("sofa", name)


def bed(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    _, wood = pick(rng, list(WOODS), WOODS)
    _, blanket = pick(rng, ["blue", "white", "gray", "pink", "green", "yellow", "purple"])
    w = s * rng.uniform(2.2, 2.8)
    flip = rng.random() < 0.5
    hx0, hx1 = (x - w / 2, x - w / 2 + s * 0.12) if not flip else (x + w / 2 - s * 0.12, x + w / 2)
    c.rect(hx0, y - s * 1.1, hx1, y, wood)  # headboard
    c.rect(x - w / 2, y - s * 0.5, x + w / 2, y - s * 0.15, (240, 240, 235))  # mattress
    c.rect(x - w / 2, y - s * 0.15, x + w / 2, y, shade(wood, 0.8))  # frame
    bx0, bx1 = (x - w / 2 + s * 0.55, x + w / 2) if not flip else (x - w / 2, x + w / 2 - s * 0.55)
    c.rect(bx0, y - s * 0.58, bx1, y - s * 0.12, blanket)
    px = hx1 + s * 0.05 if not flip else hx0 - s * 0.45
    c.rrect(px, y - s * 0.7, px + s * 0.4, y - s * 0.48, 0.02, (250, 250, 250))
    return Thing("bed")


def tv(c: Canvas, rng: random.Random, x: float, y: float, s: float, stand: bool = True) -> Thing:
    w = s * rng.uniform(1.5, 1.9)
    c.rect(x - w / 2, y - s, x + w / 2, y - s * 0.1, (20, 20, 22))
    sx0, sy0, sx1, sy1 = x - w / 2 + 0.01, y - s + 0.01, x + w / 2 - 0.01, y - s * 0.1 - 0.01
    screen = rng.choice(["blue", "sport", "movie", "off"])
    if screen == "off":
        c.rect(sx0, sy0, sx1, sy1, (35, 38, 45))
    elif screen == "sport":
        c.rect(sx0, sy0, sx1, sy1, (60, 150, 70))
        c.line([((sx0 + sx1) / 2, sy0), ((sx0 + sx1) / 2, sy1)], (230, 230, 230), 0.004)
    else:
        top = jit(rng, (80, 120, 200) if screen == "blue" else (200, 120, 60), 40)
        c.rect(sx0, sy0, sx1, sy1, top)
        c.ellipse(
            sx0 + (sx1 - sx0) * 0.3,
            sy0 + (sy1 - sy0) * 0.3,
            sx1 - (sx1 - sx0) * 0.3,
            sy1 + (sy1 - sy0) * 0.4,
            jit(rng, (230, 200, 150), 40),
        )
    if stand:
        c.rect(x - s * 0.06, y - s * 0.1, x + s * 0.06, y, (30, 30, 30))
        c.rect(x - s * 0.35, y - s * 0.03, x + s * 0.35, y, (30, 30, 30))
    return Thing("tv")


def floor_lamp(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["white", "beige", "yellow", "black", "orange"])
    c.line([(x, y), (x, y - s * 0.85)], (50, 50, 50), 0.008)
    c.ellipse(x - s * 0.15, y - s * 0.04, x + s * 0.15, y + s * 0.02, (50, 50, 50))
    c.poly(
        [
            (x - s * 0.12, y - s),
            (x + s * 0.12, y - s),
            (x + s * 0.2, y - s * 0.78),
            (x - s * 0.2, y - s * 0.78),
        ],
        col,
    )
    return Thing("lamp", name)


def rug(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "blue", "beige", "gray", "green", "orange", "purple"])
    w = s * rng.uniform(3, 5)
    h = s * 0.5
    if rng.random() < 0.5:
        c.ellipse(x - w / 2, y - h, x + w / 2, y, col, shade(col, 0.7), 0.008)
    else:
        c.poly([(x - w * 0.42, y - h), (x + w * 0.42, y - h), (x + w / 2, y), (x - w / 2, y)], col)
        c.line([(x - w * 0.45, y - h / 2), (x + w * 0.45, y - h / 2)], shade(col, 0.7), 0.006)
    return Thing("rug", name)


def painting(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(0.8, 1.5)
    frame = rng.choice([(40, 30, 20), (200, 170, 90), (20, 20, 20), (240, 240, 240)])
    c.rect(x - w / 2, y - s, x + w / 2, y, frame)
    x0, y0, x1, y1 = x - w / 2 + s * 0.08, y - s + s * 0.08, x + w / 2 - s * 0.08, y - s * 0.08
    kind = rng.random()
    if kind < 0.5:  # landscape
        c.rect(x0, y0, x1, y1, jit(rng, (130, 180, 230), 30))
        c.poly([(x0, y1), ((x0 + x1) / 2, y0 + (y1 - y0) * 0.3), (x1, y1)], jit(rng, (70, 120, 70)))
        return Thing("painting", "landscape")
    c.rect(x0, y0, x1, y1, jit(rng, (235, 230, 220), 15))
    for _ in range(3):
        _, cc = pick(rng, ["red", "blue", "yellow", "black", "teal", "orange"])
        a, b = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = (x1 - x0) * rng.uniform(0.1, 0.3)
        c.ellipse(a - r, b - r, a + r, b + r, cc) if rng.random() < 0.5 else c.rect(
            a - r, b - r, min(x1, a + r), min(y1, b + r), cc
        )
    return Thing("painting", "abstract")


def window(c: Canvas, rng: random.Random, x: float, y: float, s: float, curtains=None) -> Thing:
    w = s * rng.uniform(0.7, 1.3)
    sky = rng.choice(["day", "day", "night", "sunset"])
    top = {"day": (120, 175, 235), "night": (20, 30, 70), "sunset": (240, 150, 90)}[sky]
    c.rect(x - w / 2, y - s, x + w / 2, y, (245, 245, 245))
    c.rect(x - w / 2 + 0.012, y - s + 0.012, x + w / 2 - 0.012, y - 0.012, jit(rng, top, 15))
    if sky == "day" and rng.random() < 0.5:  # a building or tree outside
        c.rect(x - w / 4, y - s * 0.5, x + w / 6, y - 0.012, jit(rng, (170, 160, 150)))
    c.line([(x, y - s), (x, y)], (240, 240, 240), 0.01)
    c.line([(x - w / 2, y - s / 2), (x + w / 2, y - s / 2)], (240, 240, 240), 0.01)
    if curtains is None:
        curtains = rng.random() < 0.5
    if curtains:
        _, cc = pick(rng, ["red", "beige", "blue", "green", "white", "purple"])
        c.rect(x - w / 2 - s * 0.12, y - s - 0.02, x - w / 2 + s * 0.12, y + 0.02, cc)
        c.rect(x + w / 2 - s * 0.12, y - s - 0.02, x + w / 2 + s * 0.12, y + 0.02, cc)
    return Thing("window")


def blinds_window(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(1.0, 1.8)
    c.rect(x - w / 2, y - s, x + w / 2, y, jit(rng, (170, 200, 225), 12))
    slat = jit(rng, (225, 225, 220), 8)
    n = 8
    for i in range(n):
        yy = y - s + s * (i + 0.5) / n
        c.line([(x - w / 2, yy), (x + w / 2, yy)], slat, 0.008)
    return Thing("window", "")


def plant(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    pot = rng.choice([(190, 100, 60), (235, 235, 235), (40, 40, 40), (90, 130, 160)])
    pw = s * 0.35
    c.poly(
        [
            (x - pw / 2, y - s * 0.35),
            (x + pw / 2, y - s * 0.35),
            (x + pw * 0.38, y),
            (x - pw * 0.38, y),
        ],
        pot,
    )
    green = jit(rng, (50, 130, 60), 25)
    if rng.random() < 0.5:  # leafy bush
        for _ in range(6):
            cx = x + rng.uniform(-s * 0.25, s * 0.25)
            cy = y - s * rng.uniform(0.5, 0.95)
            r = s * rng.uniform(0.1, 0.18)
            c.ellipse(
                cx - r, cy - r * 0.7, cx + r, cy + r * 0.7, shade(green, rng.uniform(0.8, 1.2))
            )
    else:  # tall leaves
        for _ in range(5):
            tx = x + rng.uniform(-s * 0.35, s * 0.35)
            c.line([(x, y - s * 0.35), (tx, y - s * rng.uniform(0.8, 1.05))], green, 0.014)
    return Thing("plant", "potted")


def bookshelf(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    _, wood = pick(rng, list(WOODS), WOODS)
    w = s * rng.uniform(0.6, 1.0)
    c.rect(x - w / 2, y - s, x + w / 2, y, wood)
    rows = rng.randint(3, 5)
    for r in range(rows):
        y0 = y - s + s * r / rows + 0.01
        y1 = y - s + s * (r + 1) / rows - 0.005
        c.rect(x - w / 2 + 0.01, y0, x + w / 2 - 0.01, y1, shade(wood, 0.55))
        bx = x - w / 2 + 0.012
        while bx < x + w / 2 - 0.03:
            bw = rng.uniform(0.008, 0.02)
            bh = (y1 - y0) * rng.uniform(0.6, 0.95)
            _, bc = pick(rng, ["red", "blue", "green", "yellow", "brown", "white", "navy", "teal"])
            c.rect(bx, y1 - bh, bx + bw, y1, bc)
            bx += bw + 0.002
    return Thing("bookshelf")


def fridge(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["white", "silver", "black"])
    w = s * 0.45
    c.rrect(x - w / 2, y - s, x + w / 2, y, 0.01, col)
    c.line([(x - w / 2, y - s * 0.62), (x + w / 2, y - s * 0.62)], shade(col, 0.7), 0.005)
    c.line([(x + w / 3, y - s * 0.9), (x + w / 3, y - s * 0.7)], shade(col, 0.5), 0.01)
    c.line([(x + w / 3, y - s * 0.55), (x + w / 3, y - s * 0.35)], shade(col, 0.5), 0.01)
    return Thing("fridge", name)


def kitchen_counter(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["white", "gray", "navy", "green", "beige"])
    w = s * rng.uniform(2.0, 3.2)
    c.rect(x - w / 2, y - s * 0.95, x + w / 2, y - s * 0.88, jit(rng, (60, 60, 60), 30))  # top
    c.rect(x - w / 2, y - s * 0.88, x + w / 2, y, col)
    n = max(2, int(w / (s * 0.5)))
    for i in range(1, n):
        xi = x - w / 2 + w * i / n
        c.line([(xi, y - s * 0.85), (xi, y - s * 0.03)], shade(col, 0.75), 0.004)
    for k in range(2):  # hob rings
        bx = x - w / 4 + k * s * 0.3
        c.ellipse(bx - s * 0.1, y - s * 1.0, bx + s * 0.1, y - s * 0.93, (25, 25, 25))
    return Thing("kitchen counter", name)


def table(c: Canvas, rng: random.Random, x: float, y: float, s: float, cloth=None) -> Thing:
    mname, wood = pick(rng, [*list(WOODS), "white", "black"], {**WOODS, **PALETTE})
    w = s * rng.uniform(1.6, 2.4)
    top = y - s * 0.8
    for lx in (x - w * 0.4, x + w * 0.4 - s * 0.06):
        c.rect(lx, top, lx + s * 0.06, y, shade(wood, 0.7))
    if cloth is None:
        cloth = rng.random() < 0.4
    if cloth:
        cc = rng.choice([(245, 245, 240), (200, 40, 40), (240, 235, 215)])
        c.poly(
            [
                (x - w / 2, top - s * 0.12),
                (x + w / 2, top - s * 0.12),
                (x + w * 0.55, top + s * 0.25),
                (x - w * 0.55, top + s * 0.25),
            ],
            cc,
        )
        return Thing("table", "")
    c.ellipse(x - w / 2, top - s * 0.15, x + w / 2, top + s * 0.1, wood)
    return Thing("table", mname)


def chair(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, [*list(WOODS), "white", "black", "red"], {**WOODS, **PALETTE})
    w = s * 0.45
    c.rect(x - w / 2, y - s * 0.5, x + w / 2, y - s * 0.43, col)  # seat
    for lx in (x - w / 2, x + w / 2 - s * 0.04):
        c.rect(lx, y - s * 0.45, lx + s * 0.04, y, shade(col, 0.8))
    side = -1 if rng.random() < 0.5 else 1
    bx = x + side * (w / 2 - s * 0.02)
    c.rect(bx - s * 0.025, y - s, bx + s * 0.025, y - s * 0.45, shade(col, 0.85))
    c.rect(min(bx, x) - 0.005, y - s * 0.95, max(bx, x) + 0.005, y - s * 0.85, shade(col, 0.85))
    return Thing("chair", name)


def plate(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * 1.6
    c.ellipse(x - w / 2, y - s * 0.5, x + w / 2, y, (245, 245, 245), (200, 200, 200), 0.003)
    food = rng.choice(["pasta", "salad", "steak", "pizza", "cake"])
    fc = {
        "pasta": (235, 200, 110),
        "salad": (90, 170, 70),
        "steak": (120, 60, 40),
        "pizza": (220, 120, 60),
        "cake": (240, 220, 200),
    }[food]
    c.ellipse(x - w / 4, y - s * 0.42, x + w / 4, y - s * 0.1, jit(rng, fc, 15))
    if food in ("salad", "pizza"):
        for _ in range(3):
            a = x + rng.uniform(-w / 6, w / 6)
            b = y - s * rng.uniform(0.2, 0.35)
            c.circle(a, b, s * 0.06, jit(rng, (200, 40, 40), 20))
    return Thing("plate", f"{food}")


def cup(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "white", "blue", "yellow", "green", "black", "orange"])
    w = s * 0.75
    c.ellipse(x + w / 2 - s * 0.15, y - s * 0.8, x + w / 2 + s * 0.22, y - s * 0.3, None, col, 0.01)
    c.rect(x - w / 2, y - s, x + w / 2, y, col)
    c.ellipse(x - w / 2, y - s - s * 0.1, x + w / 2, y - s + s * 0.1, (90, 55, 30))
    if rng.random() < 0.3:  # steam
        for k in (-1, 1):
            c.line(
                [(x + k * s * 0.15, y - s * 1.15), (x + k * s * 0.05, y - s * 1.5)],
                (235, 235, 235),
                0.004,
            )
    return Thing("cup", name)


def wine_glass(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    glass = (215, 225, 235)
    c.poly([(x - s * 0.25, y - s), (x + s * 0.25, y - s), (x, y - s * 0.5)], glass, (170, 180, 190))
    if rng.random() < 0.6:
        c.poly(
            [(x - s * 0.16, y - s * 0.8), (x + s * 0.16, y - s * 0.8), (x, y - s * 0.55)],
            jit(rng, (120, 20, 40), 20),
        )
    c.line([(x, y - s * 0.5), (x, y)], glass, 0.006)
    c.line([(x - s * 0.15, y), (x + s * 0.15, y)], glass, 0.006)
    return Thing("wine glass")


def bottle(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["green", "brown", "blue", "white", "red"])
    w = s * 0.3
    c.rect(x - w / 2, y - s * 0.65, x + w / 2, y, col)
    c.poly(
        [
            (x - w / 2, y - s * 0.65),
            (x + w / 2, y - s * 0.65),
            (x + w / 5, y - s * 0.8),
            (x - w / 5, y - s * 0.8),
        ],
        col,
    )
    c.rect(x - w / 5, y - s, x + w / 5, y - s * 0.8, col)
    c.rect(x - w / 2, y - s * 0.45, x + w / 2, y - s * 0.2, jit(rng, (240, 235, 220), 10))
    return Thing("bottle", name)


def pendant_lamp(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    """Hangs from the ceiling; ``y`` is the bottom of the shade."""
    name, col = pick(rng, ["black", "white", "yellow", "orange", "silver"])
    c.line([(x, 0), (x, y - s * 0.4)], (40, 40, 40), 0.004)
    c.ellipse(x - s * 0.35, y - s * 0.1, x + s * 0.35, y + s * 0.35, (255, 235, 170))  # glow
    c.poly(
        [
            (x - s * 0.12, y - s * 0.45),
            (x + s * 0.12, y - s * 0.45),
            (x + s * 0.35, y),
            (x - s * 0.35, y),
        ],
        col,
    )
    return Thing("pendant lamp", name)


def phone(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["black", "white", "pink", "blue"])
    c.rrect(x - s * 0.3, y - s, x + s * 0.3, y, 0.01, col)
    c.rect(x - s * 0.24, y - s * 0.92, x + s * 0.24, y - s * 0.08, jit(rng, (70, 120, 190), 40))
    return Thing("phone", name)


def book(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "blue", "green", "yellow", "black", "orange"])
    if rng.random() < 0.5:  # closed, lying flat
        c.rect(x - s * 0.7, y - s * 0.3, x + s * 0.7, y, col)
        c.rect(x - s * 0.65, y - s * 0.12, x + s * 0.7, y - s * 0.04, (240, 235, 220))
        return Thing("book", name)
    c.poly(
        [(x - s * 0.8, y - s * 0.4), (x, y - s * 0.3), (x, y), (x - s * 0.8, y - s * 0.1)],
        (245, 242, 232),
    )
    c.poly(
        [(x + s * 0.8, y - s * 0.4), (x, y - s * 0.3), (x, y), (x + s * 0.8, y - s * 0.1)],
        (238, 235, 225),
    )
    for k in range(3):
        yy = y - s * (0.3 - 0.07 * k)
        c.line([(x - s * 0.65, yy - s * 0.05), (x - s * 0.1, yy)], (150, 150, 150), 0.003)
    return Thing("book", "open")


# ------------------------------------------------------------------------------------------------
# office and school


def laptop(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["silver", "black", "white", "gray"])
    w = s * 1.3
    c.rect(x - w / 2, y - s, x + w / 2, y - s * 0.15, col)
    c.rect(
        x - w / 2 + 0.008,
        y - s + 0.008,
        x + w / 2 - 0.008,
        y - s * 0.15 - 0.004,
        jit(rng, rng.choice([(60, 110, 190), (235, 235, 240), (40, 45, 60)]), 25),
    )
    c.poly(
        [(x - w / 2, y - s * 0.15), (x + w / 2, y - s * 0.15), (x + w * 0.6, y), (x - w * 0.6, y)],
        shade(col, 0.85),
    )
    return Thing("laptop", name)


def desk(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, [*list(WOODS), "white", "gray"], {**WOODS, **PALETTE})
    w = s * rng.uniform(2.0, 2.8)
    c.rect(x - w / 2, y - s, x + w / 2, y - s * 0.9, col)
    c.rect(x - w / 2 + 0.01, y - s * 0.9, x - w / 2 + s * 0.08, y, shade(col, 0.75))
    if rng.random() < 0.5:
        c.rect(x + w / 2 - s * 0.6, y - s * 0.9, x + w / 2 - 0.01, y, shade(col, 0.85))  # drawers
        for k in range(1, 3):
            c.line(
                [(x + w / 2 - s * 0.6, y - s * 0.9 * k / 3), (x + w / 2, y - s * 0.9 * k / 3)],
                shade(col, 0.6),
                0.004,
            )
    else:
        c.rect(x + w / 2 - s * 0.08, y - s * 0.9, x + w / 2 - 0.01, y, shade(col, 0.75))
    return Thing("desk", name)


def monitor(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(1.3, 1.7)
    c.rect(x - w / 2, y - s, x + w / 2, y - s * 0.25, (25, 25, 28))
    scr = jit(rng, rng.choice([(225, 230, 240), (60, 110, 190), (35, 40, 50)]), 20)
    c.rect(x - w / 2 + 0.008, y - s + 0.008, x + w / 2 - 0.008, y - s * 0.25 - 0.008, scr)
    if rng.random() < 0.6:  # a spreadsheet or code
        for k in range(4):
            yy = y - s + s * 0.15 + k * s * 0.12
            c.line(
                [(x - w / 3, yy), (x - w / 3 + w * rng.uniform(0.2, 0.6), yy)],
                shade(scr, 0.6) if sum(scr) > 300 else (180, 220, 180),
                0.004,
            )
    c.rect(x - s * 0.05, y - s * 0.25, x + s * 0.05, y - s * 0.05, (40, 40, 40))
    c.rect(x - s * 0.25, y - s * 0.06, x + s * 0.25, y, (40, 40, 40))
    return Thing("monitor")


def keyboard(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    col = rng.choice([(30, 30, 30), (230, 230, 230)])
    c.rect(x - s * 2, y - s, x + s * 2, y, col)
    key = shade(col, 0.6) if col[0] > 100 else (90, 90, 90)
    for i in range(8):
        c.line(
            [(x - s * 1.8 + i * s * 0.5, y - s * 0.6), (x - s * 1.6 + i * s * 0.5, y - s * 0.6)],
            key,
            0.004,
        )
    return Thing("keyboard")


def office_chair(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["black", "gray", "blue", "red"])
    c.rrect(x - s * 0.22, y - s, x + s * 0.22, y - s * 0.5, 0.02, col)  # back
    c.rrect(x - s * 0.28, y - s * 0.52, x + s * 0.28, y - s * 0.42, 0.01, shade(col, 0.9))
    c.line([(x, y - s * 0.42), (x, y - s * 0.1)], (60, 60, 60), 0.01)
    c.line([(x - s * 0.3, y - s * 0.05), (x + s * 0.3, y - s * 0.05)], (60, 60, 60), 0.01)
    for k in (-0.3, 0, 0.3):
        c.circle(x + s * k, y - s * 0.03, s * 0.04, (20, 20, 20))
    return Thing("office chair", name)


def whiteboard(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(1.6, 2.4)
    c.rect(x - w / 2, y - s, x + w / 2, y, (248, 248, 248), (150, 150, 155), 0.008)
    for _ in range(rng.randint(2, 6)):
        col = rng.choice([(30, 60, 170), (190, 30, 30), (30, 30, 30), (30, 130, 50)])
        x0 = x - w / 2 + rng.uniform(0.02, w * 0.6)
        yy = y - s + rng.uniform(0.03, s - 0.03)
        pts = [(x0 + k * w * 0.05, yy + rng.uniform(-0.01, 0.01)) for k in range(rng.randint(2, 7))]
        c.line(pts, col, 0.005)
    if rng.random() < 0.4:  # a chart
        c.rect(x + w / 8, y - s * 0.6, x + w / 8 + 0.02, y - s * 0.15, (190, 30, 30))
        c.rect(x + w / 8 + 0.03, y - s * 0.8, x + w / 8 + 0.05, y - s * 0.15, (30, 60, 170))
    c.rect(x - w / 3, y, x + w / 3, y + s * 0.04, (150, 150, 155))
    return Thing("whiteboard")


def chalkboard(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    _, wood = pick(rng, list(WOODS), WOODS)
    board = rng.choice([(35, 75, 50), (30, 35, 35), (40, 60, 45)])
    w = s * rng.uniform(2.0, 3.0)
    c.rect(x - w / 2 - 0.015, y - s - 0.015, x + w / 2 + 0.015, y + 0.015, wood)
    c.rect(x - w / 2, y - s, x + w / 2, y, jit(rng, board, 8))
    chalk = (225, 225, 215)
    for r in range(rng.randint(2, 5)):  # lines of handwriting
        yy = y - s + s * (0.15 + 0.18 * r)
        xx = x - w / 2 + 0.03
        end = x - w / 2 + rng.uniform(0.3, 0.9) * w
        while xx < end:
            ww = rng.uniform(0.01, 0.04)
            c.line([(xx, yy), (xx + ww / 2, yy - 0.012), (xx + ww, yy)], chalk, 0.004)
            xx += ww + 0.01
    if rng.random() < 0.5:  # a drawn triangle or circle: geometry class
        cx = x + w / 4
        c.circle(cx, y - s / 2, s * 0.2, None, chalk, 0.004)
    return Thing("chalkboard")


def school_desk(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, list(WOODS), WOODS)
    seat = jit(rng, rng.choice([(60, 100, 170), (190, 60, 50), (70, 140, 80), (220, 170, 50)]))
    w = s * 0.9
    c.rect(x - w / 2, y - s, x + w / 2, y - s * 0.9, col)
    c.line([(x - w / 2 + 0.01, y - s * 0.9), (x - w / 2 + 0.01, y)], (70, 70, 75), 0.007)
    c.line([(x + w / 2 - 0.01, y - s * 0.9), (x + w / 2 - 0.01, y)], (70, 70, 75), 0.007)
    c.rect(x - w * 0.3, y - s * 0.55, x + w * 0.3, y - s * 0.48, seat)  # attached chair
    c.rect(x - w * 0.3, y - s * 0.9, x - w * 0.24, y - s * 0.55, seat)
    if rng.random() < 0.4:
        _, bc = pick(rng, ["red", "blue", "yellow", "green"])
        c.rect(x - w * 0.2, y - s * 1.04, x + w * 0.15, y - s, bc)
    return Thing("school desk", name if rng.random() < 0.3 else "")


def backpack(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "blue", "black", "green", "yellow", "purple", "orange"])
    w = s * 0.7
    c.arc(x - w / 4, y - s * 1.1, x + w / 4, y - s * 0.8, 180, 360, shade(col, 0.7), 0.008)
    c.rrect(x - w / 2, y - s * 0.95, x + w / 2, y, 0.03, col)
    c.rrect(x - w / 3, y - s * 0.45, x + w / 3, y - s * 0.08, 0.02, shade(col, 0.8))
    return Thing("backpack", name)


def globe(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    r = s * 0.35
    c.rect(x - s * 0.15, y - s * 0.06, x + s * 0.15, y, (70, 50, 30))
    c.line([(x, y - s * 0.06), (x, y - s * 0.25)], (70, 50, 30), 0.008)
    cy = y - s * 0.25 - r
    c.circle(x, cy, r, (60, 120, 200))
    for _ in range(3):
        a = x + rng.uniform(-r / 2, r / 2)
        b = cy + rng.uniform(-r / 2, r / 2)
        c.ellipse(a - r / 3, b - r / 4, a + r / 4, b + r / 3, (80, 160, 80))
    c.arc(x - r * 1.15, cy - r * 1.15, x + r * 1.15, cy + r * 1.15, 100, 260, (150, 120, 60), 0.006)
    return Thing("globe")


def wall_map(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * 1.4
    c.rect(x - w / 2, y - s, x + w / 2, y, (170, 205, 230))
    for _ in range(4):
        a = x + rng.uniform(-w / 3, w / 3)
        b = y - s / 2 + rng.uniform(-s / 4, s / 4)
        c.ellipse(a - w / 8, b - s / 6, a + w / 7, b + s / 5, jit(rng, (200, 180, 120)))
    return Thing("map")


# ------------------------------------------------------------------------------------------------
# restaurant and shop


def menu_board(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(1.0, 1.6)
    c.rect(x - w / 2, y - s, x + w / 2, y, (30, 32, 30), (120, 90, 60), 0.01)
    title = jit(rng, rng.choice([(230, 180, 60), (230, 90, 80), (120, 200, 220)]))
    c.line([(x - w / 4, y - s + 0.03), (x + w / 4, y - s + 0.03)], title, 0.012)
    for r in range(rng.randint(3, 6)):
        yy = y - s + 0.06 + r * (s - 0.08) / 6
        c.line([(x - w / 2 + 0.02, yy), (x + rng.uniform(0, w / 4), yy)], (220, 220, 210), 0.004)
        c.line([(x + w / 2 - 0.05, yy), (x + w / 2 - 0.02, yy)], (220, 220, 210), 0.004)
    return Thing("menu board")


def counter(c: Canvas, rng: random.Random, x: float, y: float, s: float, w: float = 0.0) -> Thing:
    name, col = pick(rng, [*list(WOODS), "white", "gray", "black"], {**WOODS, **PALETTE})
    w = w or s * rng.uniform(2.5, 4)
    c.rect(x - w / 2, y - s, x + w / 2, y - s * 0.9, shade(col, 1.15))
    c.rect(x - w / 2, y - s * 0.9, x + w / 2, y, col)
    return Thing("counter", name)


def cash_register(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    body = rng.choice([(40, 40, 45), (200, 200, 200), (60, 60, 70)])
    c.rect(x - s * 0.5, y - s * 0.35, x + s * 0.5, y, body)
    c.rect(
        x - s * 0.4,
        y - s * 0.3,
        x + s * 0.1,
        y - s * 0.08,
        shade(body, 0.7) if body[0] > 100 else (110, 110, 115),
    )
    c.rect(x - s * 0.15, y - s, x + s * 0.35, y - s * 0.55, (20, 20, 20))
    c.rect(x - s * 0.1, y - s * 0.95, x + s * 0.3, y - s * 0.6, jit(rng, (70, 200, 120), 30))
    c.line([(x + s * 0.1, y - s * 0.55), (x + s * 0.1, y - s * 0.35)], (20, 20, 20), 0.01)
    return Thing("cash register")


def store_shelf(
    c: Canvas, rng: random.Random, x: float, y: float, s: float, w: float = 0.0
) -> Thing:
    frame = jit(rng, rng.choice([(200, 200, 205), (150, 150, 155), (230, 230, 230)]), 10)
    w = w or s * rng.uniform(0.8, 1.4)
    c.rect(x - w / 2, y - s, x + w / 2, y, shade(frame, 0.8))
    rows = rng.randint(3, 5)
    for r in range(rows):
        y1 = y - s + s * (r + 1) / rows
        c.rect(x - w / 2, y1 - 0.008, x + w / 2, y1, frame)
        px = x - w / 2 + 0.005
        base = jit(
            rng,
            PALETTE[rng.choice(["red", "blue", "yellow", "green", "orange", "white", "pink"])],
            30,
        )
        while px < x + w / 2 - 0.015:
            pw = rng.uniform(0.012, 0.03)
            ph = (s / rows) * rng.uniform(0.45, 0.8)
            col = base if rng.random() < 0.6 else jit(rng, base, 70)
            if rng.random() < 0.3:
                c.ellipse(px, y1 - 0.008 - ph, px + pw, y1 - 0.008, col)
            else:
                c.rect(px, y1 - 0.008 - ph, px + pw, y1 - 0.008, col)
            px += pw + 0.003
    return Thing("shelf", "stocked")


def shopping_bag(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["white", "red", "brown", "pink", "yellow", "blue", "black"])
    w = s * 0.7
    c.arc(x - w / 4, y - s * 1.15, x + w / 4, y - s * 0.75, 180, 360, shade(col, 0.6), 0.008)
    c.poly(
        [(x - w / 2, y - s * 0.9), (x + w / 2, y - s * 0.9), (x + w * 0.45, y), (x - w * 0.45, y)],
        col,
    )
    if rng.random() < 0.5:
        c.circle(x, y - s * 0.45, s * 0.12, jit(rng, (40, 40, 40), 60))
    return Thing("shopping bag", name)


def shopping_cart(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["silver", "red", "blue"])
    w = s * 1.1
    pts = [
        (x - w / 2, y - s * 0.9),
        (x + w / 2, y - s * 0.9),
        (x + w * 0.4, y - s * 0.35),
        (x - w * 0.35, y - s * 0.35),
    ]
    c.poly(pts, None, col)
    for k in range(1, 5):
        t = k / 5
        c.line(
            [
                (x - w / 2 + t * 0.15 * w, y - s * (0.9 - 0.55 * t)),
                (x + w / 2 - t * 0.1 * w, y - s * (0.9 - 0.55 * t)),
            ],
            col,
            0.003,
        )
    c.line([(x + w / 2, y - s * 0.9), (x + w * 0.65, y - s * 1.05)], col, 0.008)
    c.line([(x - w * 0.35, y - s * 0.35), (x - w * 0.35, y - s * 0.08)], col, 0.005)
    c.line([(x + w * 0.4, y - s * 0.35), (x + w * 0.4, y - s * 0.08)], col, 0.005)
    c.circle(x - w * 0.35, y - s * 0.05, s * 0.05, (30, 30, 30))
    c.circle(x + w * 0.4, y - s * 0.05, s * 0.05, (30, 30, 30))
    return Thing("shopping cart", name if name != "silver" else "")


def sale_sign(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "yellow", "orange"])
    w = s * 1.2
    c.rect(x - w / 2, y - s, x + w / 2, y, col)
    ink = (255, 255, 255) if name == "red" else (180, 20, 20)
    c.circle(x - w * 0.2, y - s * 0.7, s * 0.1, None, ink, 0.006)  # a big "%"
    c.circle(x + w * 0.2, y - s * 0.3, s * 0.1, None, ink, 0.006)
    c.line([(x + w * 0.25, y - s * 0.85), (x - w * 0.25, y - s * 0.15)], ink, 0.008)
    return Thing("sale sign", name)


def sign(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    """A generic hanging sign with a pictogram and 'text': shops and stations both have them."""
    name, col = pick(rng, ["blue", "yellow", "green", "red", "white", "black"])
    w = s * rng.uniform(1.5, 3.0)
    c.line([(x - w / 3, y - s - 0.05), (x - w / 3, y - s)], (60, 60, 60), 0.004)
    c.line([(x + w / 3, y - s - 0.05), (x + w / 3, y - s)], (60, 60, 60), 0.004)
    c.rect(x - w / 2, y - s, x + w / 2, y, col)
    ink = (20, 20, 20) if name in ("yellow", "white") else (245, 245, 245)
    c.rect(x - w / 2 + s * 0.15, y - s * 0.75, x - w / 2 + s * 0.65, y - s * 0.25, ink)
    c.line([(x - w / 2 + s * 0.85, y - s / 2), (x + w / 2 - s * 0.2, y - s / 2)], ink, 0.008)
    return Thing("sign", name)


# ------------------------------------------------------------------------------------------------
# outdoors and transport


def tree(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    trunk = jit(rng, (95, 65, 40), 15)
    kind = rng.choice(["round", "round", "pine", "autumn", "blossom"])
    c.rect(x - s * 0.06, y - s * 0.45, x + s * 0.06, y, trunk)
    if kind == "pine":
        g = jit(rng, (35, 95, 55), 15)
        for k in range(3):
            top = y - s * (1.0 - 0.18 * k)
            c.poly(
                [
                    (x, top),
                    (x + s * (0.2 + 0.08 * k), top + s * 0.35),
                    (x - s * (0.2 + 0.08 * k), top + s * 0.35),
                ],
                g,
            )
        return Thing("tree", "pine")
    base = {"round": (60, 140, 60), "autumn": (210, 120, 40), "blossom": (240, 180, 200)}[kind]
    for _ in range(5):
        cx = x + rng.uniform(-s * 0.25, s * 0.25)
        cy = y - s * rng.uniform(0.55, 0.85)
        r = s * rng.uniform(0.15, 0.25)
        c.circle(cx, cy, r, shade(jit(rng, base, 20), rng.uniform(0.85, 1.1)))
    return Thing("tree", {"round": "", "autumn": "autumn", "blossom": "blossoming"}[kind])


def bench(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, [*list(WOODS), "green", "black", "gray"], {**WOODS, **PALETTE})
    w = s * rng.uniform(1.8, 2.6)
    leg = (45, 45, 48)
    c.rect(x - w / 2 + 0.01, y - s * 0.45, x - w / 2 + 0.01 + s * 0.06, y, leg)
    c.rect(x + w / 2 - 0.01 - s * 0.06, y - s * 0.45, x + w / 2 - 0.01, y, leg)
    c.rect(x - w / 2, y - s * 0.5, x + w / 2, y - s * 0.4, col)  # seat
    if rng.random() < 0.6:  # back rest (gym benches have none)
        c.rect(x - w / 2, y - s * 0.95, x + w / 2, y - s * 0.85, col)
        c.rect(x - w / 2, y - s * 0.78, x + w / 2, y - s * 0.68, col)
        c.line([(x - w / 2 + 0.02, y - s * 0.95), (x - w / 2 + 0.02, y - s * 0.5)], leg, 0.006)
        c.line([(x + w / 2 - 0.02, y - s * 0.95), (x + w / 2 - 0.02, y - s * 0.5)], leg, 0.006)
    return Thing("bench", name)


def dog(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["brown", "black", "white", "beige", "gray"])
    if name == "beige":
        name = "golden"
    w = s * 1.3
    face = 1 if rng.random() < 0.5 else -1
    c.ellipse(x - w / 2, y - s * 0.75, x + w / 2, y - s * 0.35, col)  # body
    for lx in (-0.38, -0.2, 0.15, 0.32):
        c.rect(x + w * lx, y - s * 0.45, x + w * lx + s * 0.08, y, shade(col, 0.9))
    hx = x + face * w * 0.5
    c.circle(hx, y - s * 0.8, s * 0.2, col)
    c.ellipse(
        hx + face * s * 0.1, y - s * 0.78, hx + face * s * 0.32, y - s * 0.65, shade(col, 0.95)
    )
    c.circle(hx + face * s * 0.3, y - s * 0.74, s * 0.04, (20, 20, 20))
    c.ellipse(
        hx - face * s * 0.12 - s * 0.06,
        y - s * 0.95,
        hx - face * s * 0.12 + s * 0.06,
        y - s * 0.7,
        shade(col, 0.7),
    )
    tx = x - face * w * 0.5
    c.line([(tx, y - s * 0.6), (tx - face * s * 0.2, y - s * 0.85)], col, 0.012)
    return Thing("dog", name)


def ball(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "blue", "yellow", "white", "orange", "green"])
    r = s / 2
    c.circle(x, y - r, r, col)
    if name == "white":  # football patches
        c.circle(x, y - r, r * 0.35, (20, 20, 20))
        return Thing("football")
    c.arc(x - r, y - 2 * r, x + r, y, 200, 340, shade(col, 0.6), 0.005)
    return Thing("ball", name)


def flowers(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "yellow", "pink", "purple", "white", "orange"])
    for _ in range(rng.randint(4, 9)):
        fx = x + rng.uniform(-s * 0.6, s * 0.6)
        fy = y - s * rng.uniform(0.4, 1.0)
        c.line([(fx, fy), (fx + rng.uniform(-0.01, 0.01), y)], (50, 120, 50), 0.004)
        c.circle(fx, fy, s * rng.uniform(0.07, 0.12), jit(rng, col, 20))
    return Thing("flowers", name)


def bicycle(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["red", "blue", "black", "green", "yellow"])
    r = s * 0.32
    a, b = x - s * 0.45, x + s * 0.45
    c.circle(a, y - r, r, None, (30, 30, 30), 0.007)
    c.circle(b, y - r, r, None, (30, 30, 30), 0.007)
    top = y - s * 0.85
    c.line([(a, y - r), (x - s * 0.05, y - r), (x + s * 0.25, top), (b, y - r)], col, 0.009)
    c.line([(x - s * 0.05, y - r), (x - s * 0.15, top), (x + s * 0.25, top)], col, 0.009)
    c.line([(x + s * 0.25, top), (x + s * 0.3, top - s * 0.1)], (30, 30, 30), 0.008)
    return Thing("bicycle", name)


def street_lamp(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    col = jit(rng, (40, 45, 50), 10)
    c.line([(x, y), (x, y - s)], col, 0.01)
    c.line([(x, y - s), (x + s * 0.15, y - s * 1.02)], col, 0.008)
    c.ellipse(x + s * 0.08, y - s * 1.03, x + s * 0.26, y - s * 0.95, (250, 235, 160))
    return Thing("street lamp")


def train(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    """A train seen from the side, filling most of the width; ``y`` is the rail level."""
    name, col = pick(rng, ["red", "blue", "white", "yellow", "green", "silver"])
    stripe = jit(rng, PALETTE[rng.choice(["red", "blue", "yellow", "navy", "orange"])])
    x0, x1 = x - 0.7, x + 0.7
    c.rrect(x0, y - s, x1, y - s * 0.08, 0.03, col)
    c.rect(x0, y - s * 0.35, x1, y - s * 0.25, stripe)
    wy0, wy1 = y - s * 0.85, y - s * 0.5
    xx = x0 + 0.03
    while xx < x1 - 0.05:
        c.rect(xx, wy0, xx + 0.07, wy1, (45, 55, 70))
        xx += 0.1
    c.rect(x + 0.05, y - s * 0.88, x + 0.11, y - s * 0.1, shade(col, 0.8))  # door
    for k in range(-4, 5):
        c.circle(x + k * 0.15, y - s * 0.05, s * 0.06, (25, 25, 25))
    return Thing("train", name)


def clock(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    r = s / 2
    cy = y - r
    c.circle(
        x, cy, r, (245, 245, 240), rng.choice([(20, 20, 20), (150, 40, 40), (90, 90, 90)]), 0.01
    )
    for k in range(12):
        a = k * math.pi / 6
        c.line(
            [
                (x + r * 0.8 * math.cos(a), cy + r * 0.8 * math.sin(a)),
                (x + r * 0.9 * math.cos(a), cy + r * 0.9 * math.sin(a)),
            ],
            (40, 40, 40),
            0.003,
        )
    h, m = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
    c.line(
        [(x, cy), (x + r * 0.45 * math.cos(h), cy + r * 0.45 * math.sin(h))], (20, 20, 20), 0.008
    )
    c.line(
        [(x, cy), (x + r * 0.75 * math.cos(m), cy + r * 0.75 * math.sin(m))], (20, 20, 20), 0.005
    )
    return Thing("clock")


def departure_board(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(1.8, 2.8)
    c.rect(x - w / 2, y - s, x + w / 2, y, (15, 15, 18), (70, 70, 75), 0.008)
    ink = rng.choice([(245, 190, 40), (250, 140, 30), (240, 240, 240)])
    rows = rng.randint(4, 7)
    for r in range(rows):
        yy = y - s + s * (r + 0.7) / (rows + 0.4)
        c.line([(x - w / 2 + 0.02, yy), (x - w / 2 + 0.06, yy)], ink, 0.006)  # time
        c.line([(x - w / 2 + 0.08, yy), (x + rng.uniform(-w / 6, w / 4), yy)], ink, 0.006)
        if rng.random() < 0.3:
            c.line([(x + w / 2 - 0.06, yy), (x + w / 2 - 0.02, yy)], (230, 60, 50), 0.006)
    return Thing("departure board")


def person(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    cname, cloth = pick(
        rng,
        ["red", "blue", "black", "gray", "green", "yellow", "white", "navy", "orange", "purple"],
    )
    skin = jit(rng, rng.choice(SKIN), 8)
    legs = jit(rng, rng.choice([(40, 50, 80), (30, 30, 30), (120, 100, 80), (90, 90, 100)]))
    w = s * 0.28
    c.rect(x - w * 0.45, y - s * 0.48, x - w * 0.05, y, legs)
    c.rect(x + w * 0.05, y - s * 0.48, x + w * 0.45, y, legs)
    c.rrect(x - w / 2, y - s * 0.82, x + w / 2, y - s * 0.45, 0.01, cloth)
    c.circle(x, y - s * 0.9, s * 0.09, skin)
    hair = jit(rng, rng.choice(list(HAIR.values())), 10)
    c.arc(x - s * 0.09, y - s * 0.99, x + s * 0.09, y - s * 0.81, 180, 360, hair, 0.012)
    if rng.random() < 0.25:  # carrying a bag
        _, bc = pick(rng, ["brown", "black", "red", "white"])
        c.rect(x + w / 2, y - s * 0.5, x + w / 2 + s * 0.12, y - s * 0.32, bc)
    return Thing("person", f"in {cname}")


def pillar(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    col = jit(rng, rng.choice([(200, 200, 195), (150, 150, 155), (180, 170, 150)]), 10)
    w = s * 0.12
    c.rect(x - w / 2, y - s, x + w / 2, y, col)
    c.rect(x - w / 2, y - s, x - w / 4, y, shade(col, 0.85))
    return Thing("pillar")


# ------------------------------------------------------------------------------------------------
# gym


def dumbbell(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["black", "gray", "red", "blue", "pink", "silver"])
    w = s * 1.6
    c.line([(x - w / 2, y - s / 2), (x + w / 2, y - s / 2)], (150, 150, 155), max(0.004, s * 0.15))
    for side in (-1, 1):
        px = x + side * w * 0.38
        c.rrect(px - s * 0.18, y - s, px + s * 0.18, y, 0.005, col)
    return Thing("dumbbell", name)


def dumbbell_rack(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(1.8, 2.8)
    frame = (45, 45, 50)
    c.rect(x - w / 2, y - s * 0.55, x + w / 2, y - s * 0.5, frame)
    c.rect(x - w / 2, y - s * 0.15, x + w / 2, y - s * 0.1, frame)
    c.rect(x - w / 2, y - s * 0.6, x - w / 2 + 0.012, y, frame)
    c.rect(x + w / 2 - 0.012, y - s * 0.6, x + w / 2, y, frame)
    n = max(3, int(w / (s * 0.32)))
    for k in range(n):
        px = x - w / 2 + 0.02 + (w - 0.04) * (k + 0.5) / n
        for yy in (y - s * 0.55, y - s * 0.15):
            dumbbell(c, rng, px, yy, s * 0.14)
    return Thing("rack of dumbbells")


def treadmill(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    frame = jit(rng, rng.choice([(40, 40, 45), (160, 160, 165)]), 10)
    w = s * rng.uniform(1.6, 2.0)
    face = 1 if rng.random() < 0.5 else -1
    c.poly(
        [
            (x - w / 2, y - s * 0.1),
            (x + w / 2, y - s * 0.2),
            (x + w / 2, y - s * 0.05),
            (x - w / 2, y),
        ],
        frame,
    )
    c.line([(x - w / 2 + 0.01, y - s * 0.1), (x + w / 2 - 0.01, y - s * 0.2)], (20, 20, 20), 0.01)
    ux = x + face * w * 0.42
    c.line([(ux, y - s * 0.15), (ux, y - s * 0.85)], frame, 0.014)
    c.rect(ux - s * 0.18, y - s, ux + s * 0.18, y - s * 0.8, (30, 30, 35))
    c.rect(ux - s * 0.12, y - s * 0.95, ux + s * 0.12, y - s * 0.85, jit(rng, (80, 160, 230), 30))
    c.line([(ux, y - s * 0.65), (ux - face * w * 0.3, y - s * 0.6)], frame, 0.01)
    return Thing("treadmill")


def barbell(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    col = jit(rng, rng.choice([(25, 25, 25), (180, 40, 40), (40, 80, 170), (230, 190, 40)]))
    w = s * 3.0
    c.line([(x - w / 2, y - s / 2), (x + w / 2, y - s / 2)], (170, 170, 175), 0.008)
    for side in (-1, 1):
        px = x + side * w * 0.35
        c.rect(px - s * 0.08, y - s, px + s * 0.08, y, col)
        c.rect(
            px + side * s * 0.1 - s * 0.05,
            y - s * 0.8,
            px + side * s * 0.1 + s * 0.05,
            y - s * 0.2,
            shade(col, 1.3),
        )
    return Thing("barbell")


def kettlebell(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["black", "red", "blue", "yellow", "green", "orange"])
    r = s * 0.38
    c.arc(x - r * 0.7, y - s, x + r * 0.7, y - s * 0.45, 180, 360, col, max(0.006, s * 0.12))
    c.circle(x, y - r, r, col)
    return Thing("kettlebell", name)


def mirror(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    w = s * rng.uniform(1.2, 2.5)
    c.rect(x - w / 2, y - s, x + w / 2, y, jit(rng, (185, 200, 210), 10), (90, 90, 95), 0.008)
    for k in range(2):
        ox = x - w / 3 + k * 0.05
        c.line([(ox, y - s * 0.2), (ox + s * 0.3, y - s * 0.8)], (235, 240, 245), 0.008)
    return Thing("mirror")


def exercise_mat(c: Canvas, rng: random.Random, x: float, y: float, s: float) -> Thing:
    name, col = pick(rng, ["purple", "blue", "pink", "green", "black", "teal"])
    w = s * 3
    c.poly(
        [
            (x - w * 0.42, y - s * 0.25),
            (x + w * 0.42, y - s * 0.25),
            (x + w / 2, y),
            (x - w / 2, y),
        ],
        col,
    )
    return Thing("exercise mat", name)


# small things that turn up anywhere: they make a scene busier without saying where it is
CLUTTER = [cup, book, phone, bottle, backpack, shopping_bag, plant, ball]
