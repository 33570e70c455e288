"""SG-MFT: shapes, golden logits, behaviour (batch order, missing image, padding), ablations.

The golden file pins the exact numbers of a tiny seeded model; after an intended change to the
model's math or initialisation, regenerate it and say why in the commit:

    python tests/test_model.py --regenerate-golden
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from semloc.config import ModelConfig
from semloc.errors import ConfigError
from semloc.features.batch import FeatureBatch, FeatureDims
from semloc.models import MODEL_NAMES, SGMFT, build_model
from semloc.models.base import ModelOutput
from semloc.models.sgmft import (
    Attention,
    ConcatFusion,
    CrossModalBlock,
    FeatureInterpolationAttention,
    PooledEmbeddings,
    PrefixInterpolationAttention,
    SimilarityAwareFeedForward,
    SimilarityAwareFusion,
    SimilarityGuidedInteraction,
    TransformerLayer,
    _param_count,
    masked_mean,
)
from semloc.training.trainer import auxiliary_loss

try:
    from helpers_model import TINY_DIMS, VIT_B32_DIMS, random_batch
except ImportError:  # collected with tests/ as a package
    from tests.helpers_model import TINY_DIMS, VIT_B32_DIMS, random_batch

GOLDEN = Path(__file__).parent / "data" / "sgmft_golden.json"
TINY = ModelConfig(dim=32, num_heads=4)
NUM_CLASSES = 5

# every value of every ablation switch; "default" is the full model they are compared with
VARIANTS = {
    "default": {},
    "coarse_similarity=False": {"coarse_similarity": False},
    "fine_similarity=channel": {"fine_similarity": "channel"},
    "fine_similarity=none": {"fine_similarity": "none"},
    "sim_layers=0": {"sim_layers": 0},
    "fusion=concat": {"fusion": "concat"},
    "similarity_weighting=False": {"similarity_weighting": False},
    "fusion_gate=False": {"fusion_gate": False},
    "similarity_prior=False": {"similarity_prior": False},
    "pooled_embeddings=False": {"pooled_embeddings": False},
    "channel,film_rank=4": {"fine_similarity": "channel", "film_rank": 4},
    "channel,film_dropout=0.5": {"fine_similarity": "channel", "film_dropout": 0.5},
    "channel,film_gate=True": {"fine_similarity": "channel", "film_gate": True},
    "coarse_attention=prefix": {"coarse_attention": "prefix"},
    "text_token_dropout=0.5": {"text_token_dropout": 0.5},
    "text_fallback=True": {"text_fallback": True},
}


def tiny_model(seed: int = 0, **changes) -> SGMFT:
    torch.manual_seed(seed)
    return SGMFT(dataclasses.replace(TINY, **changes), TINY_DIMS, NUM_CLASSES).eval()


def outputs_equal(a: ModelOutput, b: ModelOutput, atol: float = 0.0) -> None:
    for field in dataclasses.fields(ModelOutput):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert (x is None) == (y is None), field.name
        if field.name == "auxiliary" and x is not None:  # training mode: deep supervision
            assert len(x) == len(y), field.name
            for p, q in zip(x, y, strict=True):
                torch.testing.assert_close(p.logits, q.logits, atol=atol, rtol=0)
                assert torch.equal(p.mask, q.mask) and p.weight == q.weight
        elif x is not None:
            torch.testing.assert_close(x, y, atol=atol, rtol=0, msg=field.name)


def _rows(x: torch.Tensor | None, row: int) -> torch.Tensor | None:
    return None if x is None else x[row : row + 1]


# ----------------------------------------------------------------------------------------------
# shapes


def test_block_shapes():
    B, Nt, Nv, d, p, hidden = 3, 7, 5, 32, 16, 64
    x_t, x_v = torch.randn(B, Nt, d), torch.randn(B, Nv, d)
    text_mask = torch.arange(Nt)[None, :] < torch.tensor([[7], [3], [1]])
    present = torch.tensor([True, False, True])
    gate, e, s = torch.rand(B), torch.randn(B, p), torch.randn(B)

    assert Attention(d, 4, 0.0)(x_t, x_v).shape == (B, Nt, d)
    assert Attention(d, 4, 0.0)(x_v, x_t, text_mask).shape == (B, Nv, d)
    assert FeatureInterpolationAttention(d, 4, 0.0)(x_t, x_v, gate, text_mask).shape == (B, Nt, d)
    sim = torch.rand(B, Nt, Nv) * 2 - 1
    for mode in ("channel", "token", "none"):
        ffn = SimilarityAwareFeedForward(d, hidden, p, mode)
        assert ffn(x_t, e, x_v, sim).shape == (B, Nt, d)
        assert ffn(x_v, e, x_t, sim.transpose(1, 2), text_mask).shape == (B, Nv, d)
        layer = SimilarityGuidedInteraction(d, 4, hidden, p, mode)
        y_t, y_v, E = layer(x_t, x_v, text_mask, present, gate, e, return_similarity=True)
        assert (y_t.shape, y_v.shape, E.shape) == ((B, Nt, d), (B, Nv, d), (B, Nt, Nv))
    assert TransformerLayer(d, 4, hidden, 0.0)(x_t, text_mask).shape == (B, Nt, d)
    f, pi, (z_t, z_v) = SimilarityAwareFusion(d, 4, hidden, 2)(x_t, x_v, text_mask, present, s)
    assert f.shape == z_t.shape == z_v.shape == (B, d) and pi.shape == (B, 2)
    f, pi, (z_t, z_v) = ConcatFusion(d, hidden)(x_t, x_v, text_mask, present, s)
    assert f.shape == z_t.shape == z_v.shape == (B, d) and pi is None
    u, w = torch.randn(B, p), torch.randn(B, p)
    z_t, z_v = PooledEmbeddings(p, d)(torch.randn(B, d), torch.randn(B, d), u, w)
    assert z_t.shape == z_v.shape == (B, d)
    sfm = SimilarityAwareFusion(d, 4, hidden, 1, prior=True, embed_dim=p)
    f, pi, (z_t, z_v) = sfm(x_t, x_v, text_mask, present, s, gate, u, w)
    assert f.shape == z_t.shape == z_v.shape == (B, d) and pi.shape == (B, 2)
    concat = ConcatFusion(d, hidden, embed_dim=p)
    f, pi, (z_t, z_v) = concat(x_t, x_v, text_mask, present, s, gate, u, w)
    assert f.shape == z_t.shape == z_v.shape == (B, d) and pi is None
    y_t, y_v = CrossModalBlock(d, 4, hidden, 0.0)(x_t, x_v, text_mask, present, gate)
    assert (y_t.shape, y_v.shape) == ((B, Nt, d), (B, Nv, d))


def test_fusion_gate_closes_the_cross_attention():
    B, Nt, Nv, d = 3, 5, 4, 32
    block = CrossModalBlock(d, 4, 64, 0.0).eval()
    x_t, text_mask = torch.randn(B, Nt, d), torch.ones(B, Nt, dtype=torch.bool)
    present = torch.ones(B, dtype=torch.bool)
    closed = torch.tensor([0.0, 0.0, 1.0])
    a_t, _ = block(x_t, torch.randn(B, Nv, d), text_mask, present, closed)
    b_t, _ = block(x_t, torch.randn(B, Nv, d), text_mask, present, closed)
    # a closed gate: the text stream does not depend on the picture at all; an open one does
    torch.testing.assert_close(a_t[:2], b_t[:2], atol=0, rtol=0)
    assert not torch.allclose(a_t[2], b_t[2])


def test_prefix_attention_interpolates_by_the_gate():
    B, Nt, Nv, d = 3, 6, 4, 32
    torch.manual_seed(0)
    block = PrefixInterpolationAttention(d, 4, 0.0).eval()
    x, other = torch.randn(B, Nt, d), torch.randn(B, Nv, d)
    x_mask = torch.arange(Nt)[None, :] < torch.tensor([[6], [2], [4]])  # padded texts
    attn = block.attn

    def run(logit: float) -> torch.Tensor:
        return block(x, other, torch.full((B,), logit), x_mask=x_mask)

    # a -> 0: self-attention only (exactly at -inf: a post without a picture); a -> 1: the
    # other modality only
    torch.testing.assert_close(run(-math.inf), attn(x, x, x_mask), atol=1e-6, rtol=0)
    torch.testing.assert_close(run(-60.0), attn(x, x, x_mask), atol=1e-5, rtol=0)
    torch.testing.assert_close(run(60.0), attn(x, other), atol=1e-5, rtol=0)
    # in between, each query mixes the two: the gate moves the mix monotonically
    dist_self = [(run(v) - attn(x, x, x_mask)).norm().item() for v in (-2.0, 0.0, 2.0)]
    assert dist_self[0] < dist_self[1] < dist_self[2]
    # where the query matches every key alike (zero queries: flat scores) the mix is exactly a,
    # whatever the two modalities' token counts (6, 2 and 4 text tokens against 4 patches)
    with torch.no_grad():
        attn.query.weight.zero_()
        attn.query.bias.zero_()
        v_own, v_other = attn.key_value(x)[..., d:], attn.key_value(other)[..., d:]
        for a in (0.2, 0.5, 0.9):
            mix = (1 - a) * masked_mean(v_own, x_mask) + a * v_other.mean(1)  # (B, d)
            expected = attn.out(mix)[:, None, :].expand(B, Nt, d)
            torch.testing.assert_close(run(math.log(a / (1 - a))), expected)
    # the other modality's masked keys take no part (image reading padded text)
    y = block(other, x, torch.zeros(B), other_mask=x_mask)
    z = block(other, torch.where(x_mask[..., None], x, 1e3), torch.zeros(B), other_mask=x_mask)
    torch.testing.assert_close(y, z, atol=0, rtol=0)


def test_film_forms():
    B, Nt, d, p, hidden = 3, 5, 32, 16, 64
    x, e = torch.randn(B, Nt, d), torch.randn(B, p)
    plain = SimilarityAwareFeedForward(d, hidden, p, "none").eval()
    # a low-rank W_s = A B is zero at init (B = 0) like the full one: a plain FFN
    low = SimilarityAwareFeedForward(d, hidden, p, "channel", film_rank=3).eval()
    low.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(low(x, e), plain(x, e), atol=0, rtol=0)
    assert low.film[0].weight.shape == (3, p) and low.film[1].weight.shape == (2 * hidden, 3)
    with torch.no_grad():
        low.film[1].weight.normal_()
    assert not torch.allclose(low(x, e), plain(x, e))
    # dropout on the FiLM input acts in training only
    drop = SimilarityAwareFeedForward(d, hidden, p, "channel", film_dropout=0.5)
    with torch.no_grad():
        drop.film.weight.normal_()
    drop.eval()
    torch.testing.assert_close(drop(x, e), drop(x, e), atol=0, rtol=0)
    drop.train()
    torch.manual_seed(0)
    a = drop(x, e)
    torch.manual_seed(1)
    assert not torch.allclose(a, drop(x, e))

    # film_gate: a post the coarse gate closes (a = 0) gets no FiLM, so its output is the same
    # whatever W_s is; an open one's is not
    batch = random_batch(6, missing_image=0.0, seed=7)
    cos = F.cosine_similarity(batch.text_embed, batch.image_embed, dim=-1)
    model = tiny_model(
        fine_similarity="channel",
        film_gate=True,
        gate_scale_init=1e4,
        gate_bias_init=cos.median().item(),
    )
    out = model(batch)
    closed, opened = out.gate < 1e-6, out.gate > 0.5
    assert closed.any() and opened.any()
    with torch.no_grad():
        for layer in model.sim:
            layer.ffn_t.film.weight.normal_()
            layer.ffn_v.film.weight.normal_()
    after = model(batch).logits
    torch.testing.assert_close(after[closed], out.logits[closed], atol=1e-5, rtol=0)
    assert not torch.allclose(after[opened], out.logits[opened])


@pytest.mark.parametrize("fine", ["channel", "token", "none"])
def test_output_fields(fine):
    B, Nt, Nv = 4, 9, 6
    batch = random_batch(B, text_tokens=Nt, image_tokens=Nv)
    model = tiny_model(fine_similarity=fine)
    out = model(batch)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (B, NUM_CLASSES)
    assert out.similarity.shape == out.gate.shape == (B,)
    assert out.modality_weights.shape == (B, 2)
    assert (out.token_similarity is not None) == (fine == "token")
    E = model(batch, return_token_similarity=True).token_similarity
    assert E.shape == (B, Nt, Nv)
    assert E.abs().max() <= 1 + 1e-5
    assert torch.all(E[~batch.text_mask] == 0)  # padding never lights up in the heat-map


def test_explanation_values():
    batch = random_batch(6, missing_image=0.5, seed=2)
    present = batch.image_present
    assert present.any() and (~present).any()
    model = tiny_model(gate_scale_init=7.0, gate_bias_init=0.2)
    out = model(batch)
    cos = F.cosine_similarity(batch.text_embed, batch.image_embed, dim=-1)
    torch.testing.assert_close(out.similarity[present], cos[present])
    torch.testing.assert_close(out.gate[present], torch.sigmoid(7.0 * (cos[present] - 0.2)))
    torch.testing.assert_close(out.modality_weights.sum(-1), torch.ones(6))
    # without an image: text-only path
    assert torch.all(out.similarity[~present] == 0) and torch.all(out.gate[~present] == 0)
    assert torch.all(out.modality_weights[~present] == torch.tensor([1.0, 0.0]))
    # gate bias defaults to 0 until the trainer supplies the train-split median cosine
    assert tiny_model().gate_bias.item() == 0.0
    assert torch.all(tiny_model(coarse_similarity=False)(batch).gate[present] == 0.5)
    assert tiny_model(sim_layers=0)(batch).gate is None
    assert tiny_model(fusion="concat")(batch).modality_weights is None
    weights = tiny_model(similarity_weighting=False)(batch).modality_weights
    assert torch.all(weights[present] == 0.5)
    # the similarity is standardised against its training distribution (median b, std)
    model = tiny_model(gate_scale_init=2.0, gate_bias_init=0.1, similarity_std=0.25)
    out = model(batch)
    z = (cos[present] - 0.1) / 0.25
    torch.testing.assert_close(out.gate[present], torch.sigmoid(2.0 * z))
    # at init the weighting MLP is zero: the picture's weight is the prior sigmoid(kappa z)
    torch.testing.assert_close(out.modality_weights[present, 1], torch.sigmoid(z))
    no_prior = tiny_model(gate_bias_init=0.1, similarity_std=0.25, similarity_prior=False)
    assert torch.all(no_prior(batch).modality_weights[present] == 0.5)


# ----------------------------------------------------------------------------------------------
# golden


def golden_batch() -> FeatureBatch:
    batch = random_batch(4, text_tokens=7, image_tokens=5, missing_image=0.0, seed=3)
    batch.image_present[1] = False  # one text-only post ...
    batch.image_tokens[1] = 0.0
    batch.image_embed[1] = 0.0
    batch.text_mask[2, 3:] = False  # ... and one padded text
    batch.text_tokens[2, 3:] = 0.0
    return batch


def golden_outputs(batch: FeatureBatch) -> dict[str, dict[str, list]]:
    result = {}
    for name, changes in VARIANTS.items():
        model = tiny_model(seed=0, **changes)
        with torch.no_grad():
            # FiLM and the modality weighting start at zero, where their math is invisible;
            # a seeded nudge to every weight makes each term count
            g = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            out = model(batch, return_token_similarity=True)
        result[name] = {
            f.name: getattr(out, f.name).tolist()
            for f in dataclasses.fields(out)
            if getattr(out, f.name) is not None
        }
    return result


def regenerate_golden() -> None:
    batch = golden_batch()
    data = {
        "about": "tests/test_model.py: tiny SG-MFT, torch.manual_seed(0), nudged weights, eval mode",
        "config": dataclasses.asdict(TINY),
        "dims": dataclasses.asdict(TINY_DIMS),
        "num_classes": NUM_CLASSES,
        "inputs": {
            f.name: getattr(batch, f.name).tolist()
            for f in dataclasses.fields(batch)
            if f.name not in ("labels", "index")
        },
        "outputs": golden_outputs(batch),
    }
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(data) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")


def test_golden():
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    # settings added after the file was written, at values that leave the outputs as they were
    newer = {
        "unimodal_supervision": None,
        "prior_scale_init": 1.0,
        "film_rank": 0,
        "film_dropout": 0.0,
        "film_gate": False,
        "coarse_attention": "interpolation",
        "text_token_dropout": 0.0,
        "text_fallback": False,
    }
    config = dataclasses.asdict(TINY)
    assert {k: config[k] for k in newer} == newer
    # deep supervision acts in training only: the file's 0.0 and today's default (None, the
    # model's own, 1.0 from 2026-12-06 to 2026-12-07 and 0.0 since) give the same outputs
    training_only = {"unimodal_supervision"}
    assert {k: v for k, v in data["config"].items() if k not in training_only} == {
        k: v
        for k, v in config.items()
        if (k not in newer or k in data["config"]) and k not in training_only
    }
    assert data["num_classes"] == NUM_CLASSES
    assert data["dims"] == dataclasses.asdict(TINY_DIMS)
    dtypes = {"text_mask": torch.bool, "image_present": torch.bool}
    batch = FeatureBatch(
        **{
            k: torch.tensor(v, dtype=dtypes.get(k, torch.float32))
            for k, v in data["inputs"].items()
        }
    )
    actual = golden_outputs(batch)
    assert actual.keys() == data["outputs"].keys()
    for name, expected in data["outputs"].items():
        assert actual[name].keys() == expected.keys(), name
        for field, values in expected.items():
            torch.testing.assert_close(
                torch.tensor(actual[name][field]),
                torch.tensor(values),
                atol=1e-5,
                rtol=0,
                msg=f"{name}: {field} differs from {GOLDEN.name}",
            )


# ----------------------------------------------------------------------------------------------
# behaviour


@pytest.mark.parametrize("variant", ["default", "fine_similarity=channel", "fusion=concat"])
def test_batch_permutation_equivariance(variant):
    batch = random_batch(7, text_tokens=10, image_tokens=6, seed=4)
    model = tiny_model(**VARIANTS[variant])
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(batch, return_token_similarity=True)
        permuted = model(batch.select(perm), return_token_similarity=True)
    for field in dataclasses.fields(ModelOutput):
        x = getattr(out, field.name)
        if x is not None:
            torch.testing.assert_close(getattr(permuted, field.name), x[perm], atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_missing_image_ignores_image_slots(variant):
    batch = random_batch(6, missing_image=0.5, seed=5)
    absent = ~batch.image_present
    assert absent.any() and batch.image_present.any()
    garbage = dataclasses.replace(
        batch, image_tokens=batch.image_tokens.clone(), image_embed=batch.image_embed.clone()
    )
    junk = torch.tensor([1e30, -1e30, float("inf"), float("-inf"), float("nan"), 3.0])
    slots = garbage.image_tokens[absent]
    garbage.image_tokens[absent] = junk[torch.arange(slots.numel()) % 6].view_as(slots)
    garbage.image_embed[absent] = float("nan")

    model = tiny_model(**VARIANTS[variant]).train()  # dropout on: same seed, same masks
    outs, grads = [], []
    for b in (batch, garbage):
        model.zero_grad()
        torch.manual_seed(1)
        out = model(b, return_token_similarity=True)
        F.cross_entropy(out.logits, b.labels).backward()
        outs.append(out)
        # (the text fallback's match MLP learns from its own terms only: no grad here)
        grads.append(
            [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
        )
    outputs_equal(outs[0], outs[1])
    for g_clean, g_garbage in zip(*grads, strict=True):
        assert torch.isfinite(g_garbage).all()
        torch.testing.assert_close(g_garbage, g_clean, atol=0, rtol=0)

    # the text-only post gives the same output alone as in the mixed batch
    model.eval()
    row = int(absent.nonzero()[0])
    with torch.no_grad():
        alone = model(garbage.select([row]), return_token_similarity=True)
        mixed = model(garbage, return_token_similarity=True)
    picked = ModelOutput(
        **{f.name: _rows(getattr(mixed, f.name), row) for f in dataclasses.fields(ModelOutput)}
    )
    outputs_equal(alone, picked, atol=1e-5)
    if mixed.token_similarity is not None:
        assert torch.all(mixed.token_similarity[absent] == 0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_missing_image_reads_no_image_weights(variant):
    # zeroed image slots still pass through the image projection; a text-only post must not
    # attend to what comes out of it, so changing that projection leaves its output alone
    batch = random_batch(6, missing_image=0.5, seed=5)
    absent = ~batch.image_present
    model = tiny_model(**VARIANTS[variant])
    with torch.no_grad():
        before = model(batch).logits
        for p in model.image_proj.parameters():
            p.add_(torch.randn_like(p))
        after = model(batch).logits
    assert torch.equal(after[absent], before[absent])
    assert not torch.allclose(after[~absent], before[~absent])


@pytest.mark.parametrize(
    "variant", ["default", "fine_similarity=channel", "sim_layers=0", "coarse_attention=prefix"]
)
def test_text_padding_invariance(variant):
    short = random_batch(5, text_tokens=6, seed=6)
    Nt = 12
    long = dataclasses.replace(
        short,
        text_tokens=torch.cat([short.text_tokens, torch.full((5, Nt - 6, 24), 1e4)], dim=1),
        text_mask=torch.cat([short.text_mask, torch.zeros(5, Nt - 6, dtype=torch.bool)], dim=1),
    )
    long.text_tokens[~long.text_mask] = torch.randn(int((~long.text_mask).sum()), 24) * 1e3
    model = tiny_model(**VARIANTS[variant])
    with torch.no_grad():
        a = model(short, return_token_similarity=True)
        b = model(long, return_token_similarity=True)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.modality_weights, a.modality_weights, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.token_similarity[:, :6], a.token_similarity, atol=1e-5, rtol=0)
    assert torch.all(b.token_similarity[:, 6:] == 0)


@pytest.mark.parametrize("variant", ["default", "coarse_attention=prefix"])
def test_empty_text_is_finite(variant):
    batch = random_batch(3, seed=7)
    batch.text_mask[1] = False
    batch.image_present[1] = False  # and no picture either: text queries keep one key
    model = tiny_model(**VARIANTS[variant])
    out = model(batch)
    assert torch.isfinite(out.logits).all()
    out.logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_deterministic_given_seed():
    batch = random_batch(4, seed=8)
    a, b = tiny_model(seed=11).train(), tiny_model(seed=11).train()
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    torch.manual_seed(2)
    out_a = a(batch)
    torch.manual_seed(2)
    outputs_equal(out_a, b(batch))


# ----------------------------------------------------------------------------------------------
# ablations


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ablation_forward_backward(variant):
    batch = random_batch(5, seed=9)
    model = tiny_model(**VARIANTS[variant]).train()
    out = model(batch)
    assert torch.isfinite(out.logits).all()
    loss = F.cross_entropy(out.logits, batch.labels)
    aux = auxiliary_loss(out, batch.labels, torch.nn.CrossEntropyLoss())  # the trainer's sum
    (loss if aux is None else loss + aux).backward()
    for name, p in model.named_parameters():
        # parameters given back to a variant must be used, not dead weight
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    ("dims", "dim"), [(TINY_DIMS, 32), (VIT_B32_DIMS, 256)], ids=["tiny", "vit-b32"]
)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ablation_parameter_count(variant, dims, dim):
    def count(**changes) -> int:
        cfg = ModelConfig(dim=dim, **changes)
        return _param_count(lambda: build_model(cfg, dims, 8))

    full, ablated = count(), count(**VARIANTS[variant])
    assert abs(ablated - full) <= 0.15 * full, f"{variant}: {ablated:,} vs full {full:,}"


def test_any_widths():
    dims = FeatureDims(text_width=7, vision_width=13, embed_dim=5)
    batch = random_batch(3, dims=dims, seed=10)
    torch.manual_seed(0)
    model = SGMFT(ModelConfig(dim=12, num_heads=3, mlp_ratio=1.5), dims, 3)
    assert model(batch).logits.shape == (3, 3)


# ----------------------------------------------------------------------------------------------
# learning, registry


def test_overfits_32_random_examples():
    batch = random_batch(32, text_tokens=12, image_tokens=10, num_classes=NUM_CLASSES, seed=11)
    model = tiny_model(seed=0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    accuracy = 0.0
    for step in range(300):
        model.train()
        loss = F.cross_entropy(model(batch).logits, batch.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9:
            model.eval()
            with torch.no_grad():
                accuracy = (model(batch).logits.argmax(-1) == batch.labels).float().mean().item()
            if accuracy >= 0.95:
                break
    assert accuracy >= 0.95


def test_build_model():
    assert "sgmft" in MODEL_NAMES
    assert isinstance(build_model(ModelConfig(dim=32), TINY_DIMS, 4), SGMFT)
    with pytest.raises(ConfigError, match=r"'nope'.*sgmft"):
        build_model(ModelConfig(name="nope"), TINY_DIMS, 4)


@pytest.mark.parametrize(
    "changes",
    [
        {"dim": 30, "num_heads": 4},
        {"fine_similarity": "pixel"},
        {"fusion": "sum"},
        {"similarity_std": 0.0},
        {"coarse_attention": "mixture"},
        {"film_rank": -1},
        {"fine_similarity": "channel", "film_rank": TINY_DIMS.embed_dim},
        {"film_rank": 4},  # the FiLM's form without the FiLM (token is the default)
        {"fine_similarity": "none", "film_gate": True},
    ],
)
def test_bad_config(changes):
    with pytest.raises(ConfigError, match="model\\."):
        SGMFT(dataclasses.replace(TINY, **changes), TINY_DIMS, 4)


def test_text_token_dropout_acts_in_training_only():
    # a post without a picture is classified from z_t alone; with the token part dropped (p close
    # to 1, seeded) that is the pooled text embedding's projection, whatever its tokens say
    batch = random_batch(6, missing_image=1.0, seed=4)
    other = dataclasses.replace(batch, text_tokens=batch.text_tokens + 1.0)
    model = tiny_model(text_token_dropout=0.999, dropout=0.0).train()
    torch.manual_seed(0)
    a = model(batch).logits
    torch.manual_seed(0)
    b = model(other).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    model.eval()  # at inference the tokens count, as without the option
    assert not torch.allclose(model(batch).logits, model(other).logits)
    with torch.no_grad():
        outputs_equal(model(batch), tiny_model(dropout=0.0)(batch))
    for bad in (
        {"text_token_dropout": 1.0},
        {"text_token_dropout": 0.5, "pooled_embeddings": False},
    ):
        with pytest.raises(ConfigError, match="text_token_dropout"):
            tiny_model(**bad)


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate-golden"]:
        regenerate_golden()
    else:
        sys.exit("usage: python tests/test_model.py --regenerate-golden")
