"""Clustering on generative affinities: scikit-learn's spectral clustering and Ising clustering.

Spectral clustering is scikit-learn's ``SpectralClustering(affinity="precomputed")`` on an
affinity from :mod:`gendist.affinity`. Ising-based kernel clustering (Kumagai et al. 2023,
Algorithms 16(4):214) is :class:`IsingClustering`: binary variables ``q[i, a]`` (point i in
cluster a) minimise

    E(q) = - sum_a sum_ij G_ij q_ia q_ja + penalty * sum_i (sum_a q_ia - 1)**2,

with ``G`` the double-centred kernel matrix and ``penalty = -2 min G`` by default, sampled by
simulated annealing (``dwave-samplers``). A point whose row of ``q`` is not one-hot gets the
label -1. The QUBO's pieces (:func:`double_centre`, :func:`ising_qubo`,
:func:`decode_assignment`) are importable for advanced use.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import SpectralClustering
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from ._optional import import_optional
from ._validation import check_int, check_positive

__all__ = ["IsingClustering", "precomputed_clusterer"]


def double_centre(K) -> np.ndarray:
    """Double-centred kernel ``G = K - row means - column means + grand mean``.

    Parameters
    ----------
    K : array-like of shape (n, n)
        Kernel (affinity) matrix.

    Returns
    -------
    G : ndarray of shape (n, n)
        Its rows and columns sum to zero.
    """
    K = np.asarray(K, dtype=np.float64)
    return K - K.mean(axis=0, keepdims=True) - K.mean(axis=1, keepdims=True) + K.mean()


def ising_qubo(G, n_clusters: int, penalty: float) -> tuple[np.ndarray, float]:
    """QUBO matrix of the Ising clustering energy, built from arrays.

    The variable of point ``i`` and cluster ``a`` has index ``i * n_clusters + a``; the energy
    of a binary vector ``q`` is ``q @ Q @ q + offset`` with ``Q`` symmetric:
    ``Q = -kron(G, I_K) + penalty * kron(I_N, J_K) - 2 * penalty * I`` (``J`` all ones),
    ``offset = penalty * N``.

    Parameters
    ----------
    G : ndarray of shape (n, n)
        Double-centred kernel.
    n_clusters : int
        Number of clusters K.
    penalty : float
        Weight of the one-hot constraint.

    Returns
    -------
    Q : ndarray of shape (n * K, n * K)
    offset : float
    """
    n = len(G)
    eye_k = np.eye(n_clusters)
    Q = -np.kron(G, eye_k)
    Q += penalty * np.kron(np.eye(n), np.ones((n_clusters, n_clusters)))
    Q[np.diag_indices_from(Q)] -= 2.0 * penalty
    return Q, penalty * n


def decode_assignment(q, n_clusters: int) -> np.ndarray:
    """Labels from a binary assignment vector; -1 for rows that are not one-hot.

    Parameters
    ----------
    q : array-like of shape (n * n_clusters,)
        Binary variables, point-major.
    n_clusters : int

    Returns
    -------
    labels : ndarray of shape (n,), int
    """
    q = np.asarray(q).reshape(-1, n_clusters)
    labels = np.argmax(q, axis=1)
    labels[q.sum(axis=1) != 1] = -1
    return labels


class IsingClustering(ClusterMixin, BaseEstimator):
    """Ising-based kernel clustering, solved by simulated annealing.

    Parameters
    ----------
    n_clusters : int, default=2
        Number of clusters K; the model has ``n_samples * K`` binary variables.
    affinity : {"precomputed", "rbf"}, default="precomputed"
        ``"precomputed"``: ``X`` is an (n, n) kernel matrix, e.g. from
        :class:`gendist.affinity.GeodesicAffinity`. ``"rbf"``: ``X`` holds points and the
        kernel is ``exp(-gamma * |x - y|**2)``.
    gamma : float, optional
        Bandwidth of the rbf kernel (default ``1 / n_features``).
    penalty : float, optional
        Weight of the one-hot constraint; default ``-2 * min(G)``, as published.
    num_reads : int, default=20
        Independent annealing runs; the lowest-energy one is kept.
    num_sweeps : int, default=1000
        Sweeps per annealing run.
    random_state : int, RandomState instance or None
        Seed of the sampler.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each point; -1 where the best sample's row is not one-hot.
    n_unassigned_ : int
        Number of points labelled -1 (a warning is raised when it is positive).
    energy_ : float
        Energy E(q) of the best sample, offset included.
    penalty_ : float
        The constraint weight used.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_clusters: int = 2,
        *,
        affinity: str = "precomputed",
        gamma: float | None = None,
        penalty: float | None = None,
        num_reads: int = 20,
        num_sweeps: int = 1000,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.affinity = affinity
        self.gamma = gamma
        self.penalty = penalty
        self.num_reads = num_reads
        self.num_sweeps = num_sweeps
        self.random_state = random_state

    def _kernel(self, X) -> np.ndarray:
        if self.affinity == "rbf":
            X = validate_data(self, X, dtype=np.float64)
            return rbf_kernel(X, gamma=self.gamma)
        if self.affinity != "precomputed":
            raise ValueError(f'affinity must be "precomputed" or "rbf", got {self.affinity!r}.')
        K = validate_data(self, X, dtype=np.float64)
        if K.shape[0] != K.shape[1]:
            raise ValueError(
                f"with affinity='precomputed', X must be a square kernel matrix, got shape "
                f"{K.shape}."
            )
        if not np.allclose(K, K.T, rtol=1e-10, atol=1e-12):
            raise ValueError("the precomputed kernel matrix X must be symmetric.")
        return K

    def fit(self, X, y=None):
        """Cluster the points whose kernel (or coordinates, for ``affinity="rbf"``) is ``X``."""
        n_clusters = check_int(self.n_clusters, "n_clusters", minimum=1)
        num_reads = check_int(self.num_reads, "num_reads")
        num_sweeps = check_int(self.num_sweeps, "num_sweeps")
        K = self._kernel(X)
        n = len(K)
        if n_clusters > n:
            raise ValueError(f"n_clusters={n_clusters} exceeds the number of points, {n}.")
        G = double_centre(K)
        if n_clusters > 1 and not np.any(np.abs(G) > 1e-12 * max(np.abs(K).max(), 1e-300)):
            raise ValueError(
                "the kernel matrix is constant (its double-centred form is zero): every "
                "assignment has the same energy, so there is no cluster structure to find. "
                "Check the affinity's bandwidth (tau): too large a tau makes every affinity 1, "
                "too small every affinity 0 off the diagonal."
            )
        if self.penalty is None:
            penalty = max(-2.0 * float(G.min()), np.finfo(np.float64).tiny)
        else:
            penalty = check_positive(self.penalty, "penalty")
        self.penalty_ = penalty
        Q, offset = ising_qubo(G, n_clusters, penalty)

        dimod = import_optional("dimod")
        samplers = import_optional("dwave.samplers")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # a dense 2-D array is read by dimod's C++ constructor, no Python loop over pairs
        bqm = dimod.BinaryQuadraticModel(Q, "BINARY")
        samples = samplers.SimulatedAnnealingSampler().sample(
            bqm, num_reads=num_reads, num_sweeps=num_sweeps, seed=seed
        )
        record = samples.record
        best = int(np.argmin(record.energy))
        q = np.empty(n * n_clusters, dtype=np.int8)
        q[np.asarray(samples.variables, dtype=np.int64)] = record.sample[best]
        self.energy_ = float(record.energy[best]) + offset
        self.labels_ = decode_assignment(q, n_clusters)
        self.n_unassigned_ = int(np.count_nonzero(self.labels_ < 0))
        if self.n_unassigned_:
            warnings.warn(
                f"{self.n_unassigned_} of {n} points are not assigned to exactly one cluster "
                "(label -1); raise num_sweeps / num_reads or the penalty.",
                UserWarning,
                stacklevel=2,
            )
        return self


def precomputed_clusterer(method: str, n_clusters: int, random_state=None, **params):
    """A clustering estimator that takes a precomputed affinity matrix in ``fit``.

    Parameters
    ----------
    method : {"spectral", "ising"}
        scikit-learn's :class:`~sklearn.cluster.SpectralClustering` or
        :class:`IsingClustering`.
    n_clusters : int
    random_state : int or None
    **params
        Further parameters of the estimator (e.g. ``num_sweeps`` for Ising).

    Returns
    -------
    estimator : ClusterMixin
    """
    if method == "spectral":
        return SpectralClustering(
            n_clusters, affinity="precomputed", random_state=random_state, **params
        )
    if method == "ising":
        return IsingClustering(
            n_clusters, affinity="precomputed", random_state=random_state, **params
        )
    raise ValueError(f'method must be "spectral" or "ising", got {method!r}.')
