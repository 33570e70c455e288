"""Prevalence (quantification): what share of a set of posts was written at each location.

Counting argmax labels ("classify and count") is biased whenever the classifier errs unevenly
across classes: if 20% of park posts are called gym and few gym posts are called park, a
population's park share is underestimated, and the more park posts there are the larger the gap.
Four estimators, from the quantification literature (Forman 2008, "Quantifying counts and costs
via classification"; Bella et al. 2010, "Quantification via probability estimators"):

=====  ===========================================  ==========================================
name   estimate                                     assumptions
=====  ===========================================  ==========================================
cc     share of argmax labels                       a perfect classifier
pcc    mean calibrated probability                  probabilities calibrated for *these* posts
acc    solve  M_hard q = cc   for q                 P(prediction | true class) as on dev
pacc   solve  M_soft q = pcc  for q                 P(probabilities | true class) as on dev
=====  ===========================================  ==========================================

``M_hard[i, j]`` = P(argmax = i | true class j) and ``M_soft[i, j]`` = E[p_i | true class j],
both measured on the dev split (`DevConfusion`). The adjusted estimators are unbiased under
*prior shift* (the target posts have other class shares than dev but each class looks the same),
which is the usual situation when profiling one user or one city; their solution is projected
back onto the simplex (negatives clipped to 0, renormalised), as Forman does.

Everything is computed from sufficient statistics (`PredictionStats`: counts, probability sums
and the sum of outer products), so a profile of 10 million posts never holds them in memory.
Intervals are percentile bootstrap intervals, seeded: the argmax counts of the target posts and
of each dev class are resampled exactly (a bootstrap of categorical outcomes is a multinomial
draw), and the mean probability vectors are drawn from the normal limit of their bootstrap
distribution (mean, covariance / n from the streamed moments), which is accurate from a few dozen
posts on. Both the target posts *and* the dev confusion are resampled, so the adjusted
estimators' intervals include the uncertainty of the correction itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ESTIMATORS = ("cc", "pcc", "acc", "pacc")
ESTIMATOR_NAMES = {
    "cc": "classify and count",
    "pcc": "probabilistic classify and count",
    "acc": "adjusted classify and count",
    "pacc": "probabilistic adjusted classify and count",
}


@dataclass
class PredictionStats:
    """Sufficient statistics of a set of probability vectors (mergeable: stream and add)."""

    num_classes: int
    n: int = 0
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]  (C,) argmax counts
    prob_sum: np.ndarray = field(default=None)  # type: ignore[assignment]  (C,)
    prob_outer: np.ndarray = field(default=None)  # type: ignore[assignment]  (C, C) sum p p^T

    def __post_init__(self) -> None:
        c = self.num_classes
        if self.counts is None:
            self.counts = np.zeros(c, dtype=np.int64)
        if self.prob_sum is None:
            self.prob_sum = np.zeros(c, dtype=np.float64)
        if self.prob_outer is None:
            self.prob_outer = np.zeros((c, c), dtype=np.float64)

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray) -> PredictionStats:
        p = np.asarray(probabilities, dtype=np.float64)
        stats = cls(p.shape[1])
        stats.add(p)
        return stats

    def add(self, probabilities: np.ndarray) -> None:
        p = np.asarray(probabilities, dtype=np.float64)
        if p.size == 0:
            return
        self.n += len(p)
        self.counts += np.bincount(p.argmax(axis=1), minlength=self.num_classes)
        self.prob_sum += p.sum(axis=0)
        self.prob_outer += p.T @ p

    def merge(self, other: PredictionStats) -> None:
        self.n += other.n
        self.counts += other.counts
        self.prob_sum += other.prob_sum
        self.prob_outer += other.prob_outer

    def mean_and_cov(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.prob_sum / max(self.n, 1)
        cov = self.prob_outer / max(self.n, 1) - np.outer(mean, mean)
        return mean, cov


@dataclass
class DevConfusion:
    """How the classifier behaves per true class on the dev split (calibrated probabilities).

    hard[i, j]: dev posts of true class j predicted i.  soft[i, j]: sum of p_i over dev posts of
    true class j.  soft_outer[j]: sum of p p^T over dev posts of class j.  support[j]: dev posts
    of class j."""

    hard: np.ndarray
    soft: np.ndarray
    soft_outer: np.ndarray
    support: np.ndarray

    @classmethod
    def from_predictions(
        cls, probabilities: np.ndarray, labels: np.ndarray, num_classes: int
    ) -> DevConfusion:
        p = np.asarray(probabilities, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        hard = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(hard, (p.argmax(axis=1), y), 1)
        soft = np.zeros((num_classes, num_classes))
        outer = np.zeros((num_classes, num_classes, num_classes))
        for j in range(num_classes):
            pj = p[y == j]
            soft[:, j] = pj.sum(axis=0)
            outer[j] = pj.T @ pj
        return cls(hard, soft, outer, np.bincount(y, minlength=num_classes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "hard": self.hard.tolist(),
            "soft": self.soft.tolist(),
            "soft_outer": self.soft_outer.tolist(),
            "support": self.support.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DevConfusion:
        return cls(
            np.asarray(data["hard"], dtype=np.int64),
            np.asarray(data["soft"], dtype=np.float64),
            np.asarray(data["soft_outer"], dtype=np.float64),
            np.asarray(data["support"], dtype=np.int64),
        )

    def matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(M_hard, M_soft), columns = true classes. A class without dev posts gets the identity
        column (nothing is known about its errors, so none are corrected)."""
        c = len(self.support)
        support = self.support.astype(np.float64)
        eye = np.eye(c)
        with np.errstate(invalid="ignore", divide="ignore"):
            m_hard = np.where(support > 0, self.hard / support, eye)
            m_soft = np.where(support > 0, self.soft / support, eye)
        return m_hard, m_soft


def adjust(matrix: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Solve ``matrix @ q = observed`` for the true shares q, projected onto the simplex.

    Batched: matrix (..., C, C), observed (..., C). The pseudo-inverse equals the inverse for a
    regular matrix and gives the least-squares answer for a singular one (two classes the
    classifier cannot tell apart on dev)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    q = (np.linalg.pinv(matrix) @ observed[..., None])[..., 0]
    q = np.clip(q, 0.0, None)
    total = q.sum(axis=-1, keepdims=True)
    uniform = np.full_like(q, 1.0 / q.shape[-1])
    return np.where(total > 0, q / np.where(total > 0, total, 1.0), uniform)


def point_estimates(stats: PredictionStats, dev: DevConfusion | None = None) -> dict[str, Any]:
    """The share of each class by every estimator the inputs allow (adjusted ones need dev)."""
    n = max(stats.n, 1)
    out = {"cc": stats.counts / n, "pcc": stats.prob_sum / n}
    if dev is not None:
        m_hard, m_soft = dev.matrices()
        out["acc"] = adjust(m_hard, out["cc"])
        out["pacc"] = adjust(m_soft, out["pcc"])
    return out


def _mvn(rng: np.random.Generator, mean: np.ndarray, cov: np.ndarray, size: int) -> np.ndarray:
    """Draws from N(mean, cov) for a possibly singular PSD cov (probabilities sum to 1)."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    root = v * np.sqrt(np.clip(w, 0.0, None))
    return mean + rng.standard_normal((size, len(mean))) @ root.T


def estimate_prevalence(
    stats: PredictionStats,
    dev: DevConfusion | None = None,
    *,
    num_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    estimators: Sequence[str] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Share of each class with a percentile-bootstrap interval, per estimator.

    Returns ``{estimator: {"share": (C,), "low": (C,), "high": (C,)}}``; the adjusted estimators
    only when `dev` is given. See the module docstring for the resampling scheme."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    names = [e for e in (estimators or ESTIMATORS) if dev is not None or e in ("cc", "pcc")]
    point = point_estimates(stats, dev)
    rng = np.random.default_rng(seed)
    c, n = stats.num_classes, max(stats.n, 1)
    cc_share = point["cc"] if stats.n else np.full(c, 1.0 / c)
    cc_boot = rng.multinomial(n, cc_share, size=num_boot) / n
    mean, cov = stats.mean_and_cov()
    pcc_boot = _mvn(rng, mean, cov / n, num_boot)
    boots: dict[str, np.ndarray] = {"cc": cc_boot, "pcc": np.clip(pcc_boot, 0.0, 1.0)}
    if dev is not None:
        hard_b = np.empty((num_boot, c, c))
        soft_b = np.empty((num_boot, c, c))
        for j in range(c):
            nj = int(dev.support[j])
            if nj == 0:
                hard_b[:, :, j] = np.eye(c)[j]
                soft_b[:, :, j] = np.eye(c)[j]
                continue
            hard_b[:, :, j] = rng.multinomial(nj, dev.hard[:, j] / nj, size=num_boot) / nj
            mj = dev.soft[:, j] / nj
            cov_j = dev.soft_outer[j] / nj - np.outer(mj, mj)
            soft_b[:, :, j] = _mvn(rng, mj, cov_j / nj, num_boot)
        boots["acc"] = adjust(hard_b, cc_boot)
        boots["pacc"] = adjust(soft_b, pcc_boot)
    alpha = (1 - confidence) / 2
    return {
        name: {
            "share": np.asarray(point[name]),
            "low": np.quantile(boots[name], alpha, axis=0),
            "high": np.quantile(boots[name], 1 - alpha, axis=0),
        }
        for name in names
    }


def prevalence_table(
    result: dict[str, dict[str, np.ndarray]], labels: Sequence[str]
) -> list[dict[str, Any]]:
    """Long-format rows (estimator, location, share, low, high) for CSV/Parquet/Markdown."""
    return [
        {
            "estimator": name,
            "location": lab,
            "share": float(r["share"][i]),
            "low": float(r["low"][i]),
            "high": float(r["high"][i]),
        }
        for name, r in result.items()
        for i, lab in enumerate(labels)
    ]


def wilson_interval(
    share: np.ndarray, n: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a share estimated from n posts (vectorised).

    Used for per-user shares, where a bootstrap per user and location would cost more than the
    profile itself: it reflects how few posts stand behind a share, which dominates for users."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    n = np.maximum(np.asarray(n, dtype=np.float64), 1e-12)
    s = np.clip(np.asarray(share, dtype=np.float64), 0.0, 1.0)
    denom = 1 + z * z / n
    centre = (s + z * z / (2 * n)) / denom
    half = z * np.sqrt(s * (1 - s) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
