"""scripts/fallback-mixtures.py: the text fallback's two parts, mixed again with other weights."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from semloc.config import load_config
from semloc.features.store import FeatureStore
from semloc.features.study import StudyConfig, make_study_world
from semloc.prediction import predict_store
from semloc.runs import load_run, train_run

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fallback-mixtures.py"
DIMS = {"text_width": 24, "vision_width": 32, "embed_dim": 16, "num_image_tokens": 5}
TINY = ["model.dim=16", "model.num_heads=2", "model.sim_layers=1", "train.epochs=1"]


def load_script():
    spec = importlib.util.spec_from_file_location("fallback_mixtures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixtures")
    world = make_study_world(root / "w", StudyConfig(num_posts=500, dims=dict(DIMS)))
    out = {}
    for name, extra in (("fallback", ["model.text_fallback=true"]), ("plain", [])):
        cfg = load_config(None, ["model.name=sgmft", *TINY, "train.progress=false", *extra])
        train_run(world.store.root, cfg, root / name)
        out[name] = root / name
    return world, out


def test_the_parts_give_back_the_runs_own_predictions(runs):
    script = load_script()
    world, paths = runs
    store, run = FeatureStore(world.store.root), load_run(paths["fallback"])
    parts = script.mixture_parts(run, store, "dev")
    assert np.array_equal(parts["index"], store.indices("dev"))
    own = predict_store(run, store, store.indices("dev"))
    # the run's own r gives the run's own output; r = 0 gives its text path alone
    np.testing.assert_array_equal(script.mix(parts, parts["r"]), own.logits.argmax(1))
    text = predict_store(run, store, store.indices("dev"), withhold_images=True)
    np.testing.assert_array_equal(
        script.mix(parts, np.zeros(len(own.labels))), text.logits.argmax(1)
    )
    # without a picture r is 0 whatever is asked
    no_pic = ~parts["present"]
    assert no_pic.any()
    ones = script.mix(parts, np.ones(len(own.labels)))
    np.testing.assert_array_equal(ones[no_pic], text.logits.argmax(1)[no_pic])
    # the EM posterior is a probability, higher for a higher cosine
    post = script.em_posterior(script.train_cosines(store))(parts["s"])
    assert np.all((post >= 0) & (post <= 1))
    order = np.argsort(parts["s"])
    assert post[order[-1]] >= post[order[0]]


def test_command_line_prints_the_table_and_refuses_what_it_cannot_use(runs, tmp_path, capsys):
    script = load_script()
    world, paths = runs
    args = [str(world.store.root), "--slices", str(world.slices_file)]
    assert script.main([*args, str(paths["fallback"])]) == 0
    out = capsys.readouterr().out
    for row in ("| learned r |", "| oracle |", "| EM posterior |", "| text only |"):
        assert row in out
    assert script.main([*args, str(paths["plain"])]) == 2
    assert "model.text_fallback=true" in capsys.readouterr().err
    # a slice table that leaves posts out is named, not a traceback
    rows = world.slices_file.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(rows[:10]) + "\n")
    assert script.main([str(world.store.root), "--slices", str(short), str(paths["fallback"])]) == 2
    assert "posts have no slice" in capsys.readouterr().err
