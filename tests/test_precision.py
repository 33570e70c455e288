"""train.precision / extract.bf16=auto resolution, and the trainer under autocast, thread and
compile settings."""

from __future__ import annotations

import logging

import pytest
import torch

import semloc.precision as precision
import semloc.runs
from semloc.config import load_config
from semloc.errors import ConfigError
from semloc.features.synthetic import make_random_store
from semloc.precision import resolve_bf16_flag, resolve_precision
from semloc.runs import load_run, train_run

FAST = [
    "model.dim=16",
    "model.num_heads=2",
    "model.sim_layers=1",
    "train.progress=false",
    "train.lr=1e-3",
    "train.epochs=2",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_random_store(tmp_path_factory.mktemp("s") / "store", 120, num_classes=3, signal=0.8)


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU with the given /proc/cpuinfo flags and torch capability."""

    def set_cpu(flags: set[str], capability: str = "AVX2") -> None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)

    return set_cpu


@pytest.mark.parametrize(
    ("flags", "capability", "native"),
    [
        ({"avx2", "fma"}, "AVX2", False),
        ({"avx2", "avx512f"}, "AVX512", False),  # AVX-512 without its BF16 extension
        ({"avx512f", "avx512_bf16"}, "AVX512", True),
        ({"amx_bf16", "amx_tile"}, "AMX", True),
        # a bf16 CPU whose AVX-512 torch may not use (ATEN_CPU_CAPABILITY=avx2): emulated again
        ({"avx512f", "avx512_bf16", "amx_bf16"}, "AVX2", False),
        ({"fp", "asimd", "bf16"}, "DEFAULT", True),  # Arm with the BF16 extension
        (set(), "AMX", True),  # no /proc/cpuinfo: torch's capability decides
    ],
)
def test_auto_picks_bf16_only_on_cpus_that_run_it_natively(cpu, flags, capability, native):
    cpu(flags, capability)
    expected = torch.bfloat16 if native else None
    assert resolve_precision("auto", "cpu") is expected
    # extract.bf16=auto goes through the same function
    assert resolve_bf16_flag("auto", "cpu") is native


@pytest.mark.parametrize(
    ("isa", "native"), [("AVX2", False), ("avx512_core_amx", True), ("ALL", True)]
)
def test_auto_follows_a_onednn_isa_cap(cpu, monkeypatch, isa, native):
    cpu({"avx512f", "avx512_bf16", "amx_bf16"}, "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert resolve_bf16_flag("auto", "cpu") is native


def test_explicit_precisions(cpu, caplog):
    cpu({"avx2"})
    assert resolve_precision("fp32", "cpu") is None
    with caplog.at_level(logging.WARNING, logger="semloc.precision"):
        assert resolve_precision("bf16", "cpu") is torch.bfloat16  # asked for: honoured
    assert "emulated" in caplog.text
    assert resolve_precision("fp16", "cpu") is torch.float16
    assert resolve_bf16_flag(True, "cpu") is True and resolve_bf16_flag(False, "cpu") is False
    with pytest.raises(ConfigError, match=r"train\.precision"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ConfigError, match=r"extract\.bf16"):
        resolve_bf16_flag("sometimes", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_an_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_precision("auto", "cuda")


def test_config_accepts_precision_and_extract_auto():
    cfg = load_config(None, ["train.precision=auto", "extract.bf16=auto", "train.num_threads=1"])
    assert (cfg.train.precision, cfg.extract.bf16, cfg.train.num_threads) == ("auto", "auto", 1)
    with pytest.raises(ConfigError, match=r"train\.precision"):
        load_config(None, ["train.precision=half"])
    with pytest.raises(ConfigError, match=r"extract\.bf16"):
        load_config(None, ["extract.bf16=maybe"])


def _record_head_dtypes(monkeypatch) -> list[torch.dtype]:
    """Every dtype the model's classifier produced while training (through a forward hook)."""
    seen: list[torch.dtype] = []
    real = semloc.runs.build_model

    def building(*args, **kwargs):
        model = real(*args, **kwargs)
        model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        return model

    monkeypatch.setattr(semloc.runs, "build_model", building)
    return seen


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_training_runs_under_autocast_and_keeps_fp32_weights(store, tmp_path, monkeypatch, name):
    seen = _record_head_dtypes(monkeypatch)
    result = train_run(store.root, load_config(None, [*FAST, f"train.precision={name}"]), tmp_path)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[name]
    # training and dev evaluation ran in it; after them, the temperature is fitted on the fp32
    # logits that prediction gives, so the last forward passes are fp32
    first_fp32 = seen.index(torch.float32) if torch.float32 in seen else len(seen)
    assert first_fp32 > 0 and set(seen[:first_fp32]) == {dtype}
    assert set(seen[first_fp32:]) <= {torch.float32}
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    run = load_run(tmp_path)
    assert run.meta["precision"] == name
    assert all(p.dtype == torch.float32 for p in run.model.parameters())


def test_fp32_runs_without_autocast(store, tmp_path, monkeypatch):
    seen = _record_head_dtypes(monkeypatch)
    train_run(store.root, load_config(None, [*FAST, "train.precision=fp32"]), tmp_path)
    assert set(seen) == {torch.float32}
    assert load_run(tmp_path).meta["precision"] == "fp32"


def test_bf16_training_stays_close_to_fp32(store, tmp_path):
    """Same seed, same data: bf16 autocast changes the numbers only slightly (the seed-noise
    comparison over many seeds is bench/bench_train_precision.py --quality)."""
    a = train_run(store.root, load_config(None, [*FAST, "train.precision=fp32"]), tmp_path / "a")
    b = train_run(store.root, load_config(None, [*FAST, "train.precision=bf16"]), tmp_path / "b")
    for ha, hb in zip(a.history, b.history, strict=True):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=0.05)
    assert a.history[0]["train_loss"] != b.history[0]["train_loss"]  # bf16 really was used


def test_num_threads_sets_torch_threads(store, tmp_path):
    before = torch.get_num_threads()
    try:
        train_run(
            store.root,
            load_config(None, [*FAST, "train.epochs=1", "train.num_threads=1"]),
            tmp_path,
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_compiled_training_matches_eager(store, tmp_path):
    # without dropout: compiled kernels draw dropout masks from their own generator, so with it
    # the two runs differ by design, not by a fault of the trainer
    same = [*FAST, "train.epochs=1", "model.dropout=0"]
    a = train_run(store.root, load_config(None, same), tmp_path / "a")
    b = train_run(
        store.root,
        load_config(None, [*same, "train.compile=true"]),
        tmp_path / "b",
    )
    assert b.history[0]["train_loss"] == pytest.approx(a.history[0]["train_loss"], rel=1e-3)
    load_run(tmp_path / "b")  # the checkpoint holds the plain (uncompiled) state dict
