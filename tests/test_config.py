import json

import pytest

from semloc.config import Config, config_to_dict, config_to_yaml, load_config
from semloc.errors import ConfigError


def test_defaults_file_and_overrides_apply_in_order(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("model:\n  dim: 64\n  fine_similarity: token\ntrain:\n  lr: 0.001\n")
    cfg = load_config(f, ["model.dim=128", "train.lr=3e-4", "train.class_weights=balanced"])
    assert cfg.model.dim == 128
    assert cfg.model.fine_similarity == "token"
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.class_weights == "balanced"
    assert cfg.train.epochs == Config().train.epochs


def test_json_file_and_optional_float(tmp_path):
    f = tmp_path / "exp.json"
    f.write_text(json.dumps({"model": {"gate_bias_init": 0.25}}))
    assert load_config(f).model.gate_bias_init == 0.25
    assert load_config(f, ["model.gate_bias_init=null"]).model.gate_bias_init is None


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.dimm=3", "unknown config key 'model.dimm'"),
        ("nosection.x=1", "unknown config key 'nosection'"),
        ("model.dim=abc", "model.dim"),
        ("model.dim=1.5", "expected an integer"),
        ("model.fusion=sum", "not one of"),
        ("train.progress=maybe", "expected true/false"),
        ("model.dim", "section.key=value"),
        ("model.gate_scale_init=.nan", "model.gate_scale_init.*finite"),
        ("model.similarity_center=-.inf", "model.similarity_center.*finite"),
        ("model.similarity_std=0", "model.similarity_std.*out of range"),
        ("model.similarity_std=.nan", "model.similarity_std"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [override])


def test_bad_file_is_a_clear_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    g = tmp_path / "list.yaml"
    g.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(g)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.sim_layers=3"])
    f = tmp_path / "resolved.yaml"
    f.write_text(config_to_yaml(cfg))
    assert config_to_dict(load_config(f)) == config_to_dict(cfg)
