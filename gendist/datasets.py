"""Datasets: the 2-D clustering sets of the paper.

Every generator returns ``(X, y)``: points of shape (n_samples, 2) and integer labels 0/1,
half of the points in each class, reproducible from ``random_state``.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as _sk
from sklearn.utils import check_random_state

from ._validation import check_int, check_positive

__all__ = [
    "make_narrow_mog",
    "make_circles",
    "make_spirals",
    "make_moons",
    "make_dataset",
    "DATASETS",
]


def _class_sizes(n_samples):
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    return n_samples // 2, n_samples - n_samples // 2


def make_narrow_mog(
    n_samples: int = 500,
    *,
    separation: float = 0.5,
    long_std: float = 1.0,
    narrow_std: float = 0.05,
    random_state=None,
):
    """Two narrow, parallel, axis-aligned Gaussians ("Narrow MoG").

    Class a has mean ``(0, (a - 1/2) * separation)`` and covariance
    ``diag(long_std**2, narrow_std**2)``: two long thin clouds side by side, whose length
    exceeds the gap between them, so Euclidean neighbourhoods reach across the gap.

    Parameters
    ----------
    n_samples : int, default=500
    separation : float, default=0.5
        Distance between the two means (along y).
    long_std, narrow_std : float
        Standard deviations along x and y.
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    sizes = _class_sizes(n_samples)
    rng = check_random_state(random_state)
    std = np.array([check_positive(long_std, "long_std"), check_positive(narrow_std, "narrow_std")])
    half = check_positive(separation, "separation") / 2
    X = np.vstack(
        [rng.normal(size=(m, 2)) * std + [0.0, sign * half] for m, sign in zip(sizes, (-1, 1))]
    )
    y = np.repeat([0, 1], sizes)
    return X, y


def make_circles(
    n_samples: int = 500, *, noise: float = 0.05, factor: float = 0.5, random_state=None
):
    """Two concentric circles (scikit-learn's ``make_circles``): outer class 0, inner class 1.

    Parameters
    ----------
    n_samples : int, default=500
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to each point.
    factor : float, default=0.5
        Radius of the inner circle relative to the outer one (radius 1).
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    _class_sizes(n_samples)
    return _sk.make_circles(n_samples, noise=noise, factor=factor, random_state=random_state)


def make_spirals(
    n_samples: int = 500, *, noise: float = 0.04, turns: float = 1.0, random_state=None
):
    """Two interleaved Archimedean spirals, the second the first turned by 180 degrees.

    Points lie at angle ``theta = 2 pi * turns * sqrt(u)`` (u uniform on [0.02, 1], which
    spaces them evenly along the curve) and radius ``theta / (2 pi turns)`` (so the outer end
    is at radius 1),
    plus isotropic Gaussian noise.

    Parameters
    ----------
    n_samples : int, default=500
    noise : float, default=0.04
        Standard deviation of the noise.
    turns : float, default=1.0
        Number of turns of each spiral.
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    sizes = _class_sizes(n_samples)
    rng = check_random_state(random_state)
    turns = check_positive(turns, "turns")
    parts = []
    for m, phase in zip(sizes, (0.0, np.pi)):
        theta = 2 * np.pi * turns * np.sqrt(rng.uniform(0.02, 1.0, m))
        r = theta / (2 * np.pi * turns)
        parts.append(np.column_stack([r * np.cos(theta + phase), r * np.sin(theta + phase)]))
    X = np.vstack(parts) + check_positive(noise, "noise", allow_zero=True) * rng.normal(
        size=(sum(sizes), 2)
    )
    return X, np.repeat([0, 1], sizes)


def make_moons(n_samples: int = 500, *, noise: float = 0.08, random_state=None):
    """Two interleaving half circles (scikit-learn's ``make_moons``).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    _class_sizes(n_samples)
    return _sk.make_moons(n_samples, noise=noise, random_state=random_state)


#: The 2-D clustering datasets by name.
DATASETS = {
    "narrow_mog": make_narrow_mog,
    "circles": make_circles,
    "spirals": make_spirals,
    "moons": make_moons,
}


def make_dataset(name: str, n_samples: int = 500, random_state=None, **params):
    """One of :data:`DATASETS` by name; ``params`` go to its generator."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}.")
    return DATASETS[name](n_samples, random_state=random_state, **params)
