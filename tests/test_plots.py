"""Colours in semloc's plots: a model keeps its colour everywhere, and no two lines of one plot
share one."""

from __future__ import annotations

from semloc.plots import model_color, model_colors


def test_listed_models_keep_their_colour_whatever_is_beside_them():
    assert model_colors(["sgmft", "gmu"]) == {"sgmft": model_color("sgmft"), "gmu": "#2ca02c"}
    assert model_colors(["gmu", "x-1", "sgmft"])["sgmft"] == model_color("sgmft")


def test_unlisted_names_never_share_a_colour_in_one_plot():
    # two names whose stable picks collide (the same crc32 bucket)
    names = [f"build-{i}" for i in range(200)]
    by_pick: dict[str, list[str]] = {}
    for name in names:
        by_pick.setdefault(model_color(name), []).append(name)
    a, b = next(group for group in by_pick.values() if len(group) > 1)[:2]
    assert model_color(a) == model_color(b)
    colors = model_colors([a, b])
    assert colors[a] == model_color(a) and colors[b] != colors[a]
    # as many distinct colours as there are spare ones
    many = model_colors(names[:7])
    assert len(set(many.values())) == 7
    assert model_colors(names[:7]) == many
