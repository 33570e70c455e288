"""DDP training: W processes under torchrun reach what one process reaches with the same global
batch and seed, and only rank 0 writes files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from semloc.features.loader import EpochShuffleSampler
from semloc.features.synthetic import make_random_store
from semloc.training.distributed import ContiguousSlice, GlobalBatchShareSampler

TIMEOUT_S = 180

# dropout 0 so both runs draw no random numbers while training; no similarity weighting because
# its MLP starts with a zero output layer, so its first-layer gradients are ~0 and Adam turns
# float-reduction noise there into full-size steps (the rest of the model matches to ~1e-5
# either way)
OVERRIDES = [
    "model.dim=32",
    "model.num_heads=2",
    "model.sim_layers=1",
    "model.dropout=0",
    "model.similarity_weighting=false",
    "train.epochs=3",
    "train.batch_size=16",
    "train.lr=1e-3",
    "train.patience=0",
    "train.device=cpu",
    "train.progress=false",
]

# records, per rank, every file this process opens for writing or renames: rank 1 must write none
AUDIT = textwrap.dedent(
    """
    import os, sys
    _log = os.environ.get("SEMLOC_TEST_WRITE_LOG")
    if _log:
        _rank = os.environ.get("RANK", "single")
        _writes = []
        def _hook(event, args):
            if event == "open" and args[0] is not None:
                mode, flags = args[1], args[2]
                writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                    mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
                if writing:
                    _writes.append(os.fspath(args[0]))
            elif event in ("os.rename", "os.replace"):
                _writes.extend([os.fspath(args[0]), os.fspath(args[1])])
            elif event == "os.mkdir":
                _writes.append(os.fspath(args[0]))
        sys.addaudithook(_hook)
        import atexit
        def _dump():
            with open(f"{_log}.{_rank}", "w") as f:
                f.write("\\n".join(str(p) for p in _writes))
        atexit.register(_dump)
    """
)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd[:6]} did not finish in {TIMEOUT_S} s:\n{e.stderr}")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _writes(log: Path) -> list[str]:
    return [p for p in log.read_text().splitlines() if p] if log.exists() else []


def test_two_processes_match_one(tmp_path: Path) -> None:
    # 240 posts: 3 epochs of 11 global batches whose last one (7 posts) splits 4/3 over the ranks
    store = tmp_path / "store"
    make_random_store(store, 240, shard_size=64, signal=0.25, seed=3)
    (tmp_path / "sitecustomize.py").write_text(AUDIT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "SEMLOC_TEST_WRITE_LOG": str(tmp_path / "writes"),
        "OMP_NUM_THREADS": "1",  # torchrun's default per process; the same for the single run
    }
    single = [sys.executable, "-m", "semloc", "train", str(store), "--out", str(tmp_path / "one")]
    _run([*single, *OVERRIDES], tmp_path, env)
    ddp = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--standalone", "-m", "semloc", "train", str(store)),
        *("--out", str(tmp_path / "two")),
    ]
    _run([*ddp, *OVERRIDES], tmp_path, env)

    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert a["dev_macro_f1"] == pytest.approx(b["dev_macro_f1"], abs=1e-9)
        assert a["dev_accuracy"] == pytest.approx(b["dev_accuracy"], abs=1e-9)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["dev_loss"] == pytest.approx(b["dev_loss"], rel=1e-4)
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m1["macro_f1"] == pytest.approx(m2["macro_f1"], abs=1e-9)
    assert m1["best_epoch"] == m2["best_epoch"]

    w1 = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model_state"]
    w2 = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model_state"]
    assert w1.keys() == w2.keys()
    for name in w1:
        # relative, per tensor: attention key biases have a zero true gradient (softmax ignores a
        # per-query constant), so Adam turns float noise there into lr-sized steps of random sign;
        # they differ by ~1e-4 relative while every other tensor agrees to ~1e-7
        a, b = w1[name].double(), w2[name].double()
        assert (a - b).norm() <= 2e-3 * a.norm() + 1e-6, name

    run_dir = str(tmp_path / "two")
    assert (tmp_path / "writes.1").exists(), "the write audit did not run on rank 1"
    rank0 = [p for p in _writes(tmp_path / "writes.0") if p.startswith(run_dir)]
    rank1 = [p for p in _writes(tmp_path / "writes.1") if p.startswith(run_dir)]
    assert any(p.endswith("best.pt") for p in rank0), rank0
    assert rank1 == [], f"rank 1 wrote {rank1}"


# ------------------------------------------------------------------------------- the samplers


@pytest.mark.parametrize(("n", "batch", "world"), [(37, 8, 2), (40, 8, 4), (33, 12, 3), (9, 4, 2)])
def test_ranks_share_each_single_process_batch(n: int, batch: int, world: int) -> None:
    single = EpochShuffleSampler(n, seed=5)
    ranks = [GlobalBatchShareSampler(n, 5, batch, r, world) for r in range(world)]
    for epoch in (0, 3):
        single.set_epoch(epoch)
        for s in ranks:
            s.set_epoch(epoch)
        perm = list(single)
        streams = [list(s) for s in ranks]
        local = batch // world
        global_batches = [perm[i : i + batch] for i in range(0, n, batch)]
        if len(global_batches[-1]) < world:  # too small to give every rank a post
            global_batches.pop()
        for k, expected in enumerate(global_batches):
            shares = [stream[k * local : (k + 1) * local] for stream in streams]
            assert sorted(x for share in shares for x in share) == sorted(expected)
            assert all(shares), "every rank takes part in every step"
        assert [len(s) for s in ranks] == [len(x) for x in streams]


def test_contiguous_dev_slices_restore_the_order() -> None:
    for n, world in [(10, 3), (2, 4), (0, 2), (8, 2)]:
        parts = [list(ContiguousSlice(n, r, world)) for r in range(world)]
        assert [i for part in parts for i in part] == list(range(n))


def test_unequal_batch_shares_give_the_global_mean_gradient() -> None:
    # the weighting the trainer applies under DDP, checked without processes: the average over
    # ranks of (share * local mean loss) gradients equals the global-batch gradient
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    weight = torch.tensor([0.5, 1.0, 2.0])
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    def grad(loss: torch.Tensor) -> np.ndarray:
        model.zero_grad()
        loss.backward()
        return model.weight.grad.numpy().copy()

    full = grad(loss_fn(model(x), y))
    parts = [slice(0, None, 2), slice(1, None, 2)]  # 4 and 3 posts
    denominators = [float(weight[y[p]].sum()) for p in parts]
    total = sum(denominators)
    averaged = sum(
        grad(loss_fn(model(x[p]), y[p]) * (2 * d / total))
        for p, d in zip(parts, denominators, strict=True)
    )
    np.testing.assert_allclose(averaged / 2, full, rtol=1e-5, atol=1e-7)


def test_unequal_batch_shares_give_the_global_mean_gradient_with_auxiliary_terms() -> None:
    # the same weighting holds for the trainer's auxiliary terms (masked rows, e.g. an image head
    # only for posts with a picture): they are normalised per post of the batch like the main loss
    from semloc.models.base import AuxiliaryLogits, ModelOutput
    from semloc.training.trainer import auxiliary_loss

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    mask = torch.tensor([True, False, True, True, False, False, True])
    weight = torch.tensor([0.5, 1.0, 2.0])
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)

    def loss(rows) -> torch.Tensor:
        logits = model(x[rows])
        out = ModelOutput(logits, auxiliary=(AuxiliaryLogits(2 * logits, mask[rows], 0.7),))
        return loss_fn(logits, y[rows]) + auxiliary_loss(out, y[rows], loss_fn)

    def grad(value: torch.Tensor) -> np.ndarray:
        model.zero_grad()
        value.backward()
        return model.weight.grad.numpy().copy()

    full = grad(loss(slice(None)))
    parts = [slice(0, None, 2), slice(1, None, 2)]
    denominators = [float(weight[y[p]].sum()) for p in parts]
    total = sum(denominators)
    averaged = sum(
        grad(loss(p) * (2 * d / total)) for p, d in zip(parts, denominators, strict=True)
    )
    np.testing.assert_allclose(averaged / 2, full, rtol=1e-5, atol=1e-7)
