"""Gaussian mixtures evaluated by matrix products, in numpy or torch."""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._compute import get_namespace, iter_chunks, segment_nodes
from .._validation import check_int, check_points, check_positive
from ._base import Density, check_segments

__all__ = ["GaussianMixtureDensity"]


_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_NUMPY = get_namespace(np.empty(0))
_SYMMETRY_RTOL = 1e-10  # largest |C - C^T| allowed, relative to the largest |C|
#: largest rounding (nats) of :meth:`GaussianMixtureDensity.log_prob_on_segments`' identity
#: at a node beyond direct evaluation (a relative 1e-7 of the metric's length factor, far
#: below any quadrature's error); segments beyond it are evaluated directly
_SEGMENT_TOLERANCE = 1e-7
#: fewest features where that identity is faster than evaluating the nodes (one thread, 10
#: full, diagonal or spherical components: 0.99 / 0.90 / 0.90 of the time in 4-5-D, 0.7 in
#: 10-D, 0.3-0.45 in 50-D; 1.05-1.1 in 2-3-D)
_SEGMENT_IDENTITY_MIN_FEATURES = 4


def _has_cholesky(matrix: np.ndarray) -> bool:
    """True when numpy's Cholesky factorisation of the (d, d) ``matrix`` succeeds."""
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def is_gaussian_kernel_density(estimator) -> bool:
    """Whether a scikit-learn ``KernelDensity`` (fitted or not) is a Gaussian mixture: the
    Gaussian kernel under the Euclidean metric."""
    metric, params = estimator.metric, estimator.metric_params or {}
    euclidean = metric in ("euclidean", "l2") or (metric == "minkowski"
                                                  and params.get("p", 2) == 2)
    return estimator.kernel == "gaussian" and euclidean and set(params) <= {"p"}


class GaussianMixtureDensity(Density):
    """A mixture of Gaussians evaluated by matrix products, in numpy or torch.

    ``log p(x) = logsumexp_k [log w_k + log N(x; mu_k, Sigma_k)]``, with the Mahalanobis terms
    written as matrix products so that mixtures with many components (one per training image,
    as in the MNIST setting) evaluate at BLAS speed. :meth:`log_prob` accepts a numpy array or a
    torch tensor (on any device) and answers in the same kind.

    Parameters
    ----------
    weights : array-like of shape (K,)
        Mixture weights, positive; normalised to sum to one.
    means : array-like of shape (K, d)
    covariances : array-like
        Shape (K, d, d) for ``"full"``, (d, d) for ``"tied"``, (K, d) for ``"diag"``,
        (K,) or a scalar for ``"spherical"`` (one variance per component).
    covariance_type : {"full", "tied", "diag", "spherical"}
    dtype : {"float64", "float32"}
        Precision in which numpy arrays are evaluated (torch tensors: their own dtype); the
        answer is float64 either way. float32 is 1.5-2x as fast, except for full and tied
        mixtures in at most 12 dimensions, which compiled float64 kernels evaluate faster
        still (1.4x float32's speed in 2-D and 10-D) whatever ``dtype``. Every point is taken
        relative to the weighted mean of the means before the products, so the float32
        error does not grow with the distance from the origin: for points within a few
        standard deviations of the components it stays below ``1e-5 * max(1, |log p|)``
        (tested on random mixtures in 2 to 50 dimensions), about a hundred float32 roundings
        of the log-density. It grows with the spread of the log-densities of the components
        at a point (their logsumexp is exact) and with the condition number of the
        covariances.
    """

    can_sample = True
    differentiable = True

    @property
    def has_score(self) -> bool:
        """True unless a subclass changed :meth:`log_prob` without :meth:`log_prob_and_score`
        (the closed form would then be the gradient of another density)."""
        cls = type(self)
        return (
            cls.log_prob is GaussianMixtureDensity.log_prob
            or cls.log_prob_and_score is not GaussianMixtureDensity.log_prob_and_score
        )

    def __init__(self, weights, means, covariances, covariance_type: str = "full", dtype="float64"):
        if covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {_COVARIANCE_TYPES}, got {covariance_type!r}."
            )
        means = check_points(means, "means")
        K, d = means.shape
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if weights.shape != (K,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"weights must be {K} positive finite numbers, one per component.")
        if np.dtype(dtype) not in (np.float64, np.float32):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}.")
        cov = np.asarray(covariances, dtype=np.float64)
        if covariance_type == "spherical":
            cov = np.broadcast_to(cov, (K,)).copy()
        expected = {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}
        if cov.shape != expected[covariance_type]:
            raise ValueError(
                f"covariances for covariance_type={covariance_type!r} must have shape "
                f"{expected[covariance_type]}, got {cov.shape}."
            )
        if not np.all(np.isfinite(cov)):
            raise ValueError("covariances must be finite.")
        self.weights = weights / weights.sum()
        self.means = means
        self.covariances = cov
        self.covariance_type = covariance_type
        self.dtype = np.dtype(dtype).name
        self.n_components, self.n_features = K, d
        self._precompute()
        self._cache: dict = {}

    @classmethod
    def isotropic(
        cls, means, variance: float, weights=None, dtype="float64"
    ) -> GaussianMixtureDensity:
        """Equal-variance isotropic mixture, e.g. one component per training image.

        Parameters
        ----------
        means : array-like of shape (K, d)
        variance : float
            The common variance sigma^2 of every component (> 0).
        weights : array-like of shape (K,), optional
            Defaults to equal weights.
        dtype : {"float64", "float32"}
            Precision of the evaluation of numpy arrays (see the class).
        """
        variance = check_positive(variance, "variance")
        means = check_points(means, "means")
        K = means.shape[0]
        weights = np.full(K, 1.0 / K) if weights is None else weights
        return cls(weights, means, np.full(K, variance), "spherical", dtype)

    @classmethod
    def from_sklearn(cls, mixture, dtype="float64") -> GaussianMixtureDensity:
        """Copy a fitted scikit-learn ``GaussianMixture``, ``BayesianGaussianMixture`` or
        Gaussian ``KernelDensity``.

        A ``GaussianMixture``'s copy has its ``score_samples`` to 1e-10 relative. A
        ``BayesianGaussianMixture``'s is the mixture of its point estimates (``weights_``,
        ``means_``, ``covariances_``), whereas its ``score_samples`` is an expectation under
        the variational posterior, a different function.

        A ``KernelDensity`` with ``kernel="gaussian"`` and the Euclidean metric is the
        mixture of one isotropic component per training point (variance ``bandwidth_**2``,
        weight its ``sample_weight``; points of weight zero are left out). Its copy is that
        sum evaluated exactly, whereas ``score_samples`` approximates it by a tree
        traversal: within 1e-7 of the exact sum in 10-D, but 16 nats off in 50-D
        (2 000 points, ``bandwidth="scott"``, the default zero tolerances; scikit-learn
        issues 7492 and 27186), and 7 to 13 times slower (2-D to 50-D,
        ``benchmarks/bench_kernel_density.py``).

        Parameters
        ----------
        mixture : GaussianMixture, BayesianGaussianMixture or KernelDensity
        dtype : {"float64", "float32"}
            Precision of the evaluation of numpy arrays (see the class).

        Raises
        ------
        ValueError
            For a ``KernelDensity`` with another kernel or metric (it is no Gaussian
            mixture).
        """
        check_is_fitted(mixture)
        if hasattr(mixture, "tree_") and hasattr(mixture, "bandwidth_"):  # KernelDensity
            if not is_gaussian_kernel_density(mixture):
                raise ValueError(
                    f"a KernelDensity with kernel={mixture.kernel!r} and metric="
                    f"{mixture.metric!r} is no Gaussian mixture; only kernel='gaussian' "
                    "with the Euclidean metric is. Wrap it with as_density instead."
                )
            means = np.asarray(mixture.tree_.data, dtype=np.float64)
            weights = mixture.tree_.sample_weight
            weights = np.ones(len(means)) if weights is None else np.asarray(weights)
            keep = weights > 0  # scikit-learn refuses weights that are all zero
            variance = float(mixture.bandwidth_) ** 2
            return cls(weights[keep], means[keep], np.full(int(keep.sum()), variance),
                       "spherical", dtype)
        cov = np.asarray(mixture.covariances_, dtype=np.float64)
        if mixture.covariance_type in ("full", "tied"):
            # scikit-learn's estimates are symmetric only to rounding (far from the origin,
            # beyond this class's 1e-10 check); their symmetric part is the same estimate
            cov = (cov + np.swapaxes(cov, -1, -2)) / 2
        return cls(mixture.weights_, mixture.means_, cov, mixture.covariance_type, dtype)

    def _component_name(self, k: int) -> str:
        """How error messages name the covariance of component ``k``."""
        if self.covariance_type == "tied":
            return "the tied covariance matrix"
        return f"covariances[{k}] (component {k})"

    def _cholesky(self) -> np.ndarray:
        """Lower Cholesky factors of the full or tied covariances, shape (K, d, d) or (1, d, d).

        Raises
        ------
        ValueError
            Naming the first component whose matrix is not symmetric (to ``rtol=1e-10``
            relative to its largest entry) or not positive definite.
        """
        ct, cov = self.covariance_type, self.covariances
        covs = cov if ct == "full" else cov[None]
        asymmetry = np.abs(covs - np.swapaxes(covs, -1, -2)).max(axis=(-2, -1))
        scale = np.abs(covs).max(axis=(-2, -1))
        asymmetric = np.flatnonzero(asymmetry > _SYMMETRY_RTOL * scale)
        if asymmetric.size:
            k = asymmetric[0]
            raise ValueError(
                f"{self._component_name(k)} is not symmetric: max |C - C^T| = "
                f"{asymmetry[k]:.3g} exceeds {_SYMMETRY_RTOL:g} times its largest entry "
                f"{scale[k]:.3g}. Pass (C + C.T) / 2 if the asymmetry is rounding."
            )
        try:
            return np.linalg.cholesky(covs)
        except np.linalg.LinAlgError as exc:
            k = next(k for k, c in enumerate(covs) if not _has_cholesky(c))
            raise ValueError(
                f"{self._component_name(k)} is not positive definite (its Cholesky "
                "factorisation fails); a covariance matrix must be symmetric positive definite."
            ) from exc

    def _precompute(self):
        """One (F, K') coefficient matrix per covariance type, with the features it multiplies.

        Every point is taken relative to ``self._center`` (the weighted mean of the means), so
        that the products below keep their accuracy in float32 and far from the origin.

        * full, tied: ``C`` is (d + 1, d * K): column ``j * K + k`` is ``P_k[:, j] / sqrt(2)``
          over ``-(mu_k - c) @ P_k[:, j] / sqrt(2)``, with ``P_k = L_k^{-T}``, so that
          ``[x - c, 1] @ C`` holds, for all components in one product, the whitened
          ``(x - mu_k)^T P_k / sqrt(2)``, whose squared norm is half the Mahalanobis term.
        * diag, spherical: the expanded quadratic form, ``[(x - c)^2, x - c, 1] @ C`` (diag) or
          ``[|x - c|^2, x - c, 1] @ C`` (spherical) is ``log w_k + log N(x; mu_k, Sigma_k)``
          directly (K columns), clipped at its value at ``x = mu_k`` against rounding.
        """
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            self._coefficients()
        coef = self._coef.reshape(self._coef.shape[0], -1, self.n_components)  # (F, d or 1, K)
        overflow = np.flatnonzero(~(np.isfinite(coef).all(axis=(0, 1))
                                    & np.isfinite(self._log_norm)))
        if overflow.size:  # they would give NaN log-densities everywhere
            raise ValueError(
                f"{self._component_name(overflow[0])} is too small for float64 relative to "
                "the spread of the means: its inverse (or the quadratic form's coefficients) "
                "overflows. Rescale the data, or use larger variances (a larger bandwidth)."
            )

    def _coefficients(self):
        """:meth:`_precompute`'s coefficients, log-norms and centre, unchecked."""
        d, K, ct, cov = self.n_features, self.n_components, self.covariance_type, self.covariances
        center = self._center = self.weights @ self.means
        rel = self.means - center
        if ct in ("full", "tied"):
            chol = self._chol = self._cholesky()  # sample() draws with these factors
            # P_k = L_k^{-T}, so that (x - mu)^T Sigma^{-1} (x - mu) = ||(x - mu)^T P_k||^2;
            # upper triangular with exact zeros, which the compiled kernels rely on
            prec = np.stack([solve_triangular(c, np.eye(d), lower=True).T for c in chol])
            prec_k = prec if ct == "full" else np.broadcast_to(prec, (K, d, d))
            scaled = prec_k / math.sqrt(2.0)  # (K, d_in, d_out)
            coef = np.empty((d + 1, d, K))
            coef[:d] = np.transpose(scaled, (1, 2, 0))
            coef[d] = -np.einsum("ki,kij->jk", rel, scaled)
            self._coef = coef.reshape(d + 1, d * K)
            log_det_prec = np.log(np.diagonal(prec, axis1=-2, axis2=-1)).sum(-1)
        else:
            nonpositive = np.flatnonzero((cov <= 0).reshape(K, -1).any(axis=1))
            if nonpositive.size:
                raise ValueError(
                    f"{self._component_name(nonpositive[0])} has a variance <= 0; variances "
                    "must be positive."
                )
            inv_var = 1.0 / cov  # overflowing coefficients are refused below
            if ct == "diag":
                log_det_prec = 0.5 * np.log(inv_var).sum(-1)
                square = -0.5 * inv_var.T  # (d, K)
                sq_mean = (rel * rel * inv_var).sum(1)
            else:
                log_det_prec = 0.5 * d * np.log(inv_var)
                square = -0.5 * inv_var[None, :]  # (1, K)
                sq_mean = (rel * rel).sum(1) * inv_var
            linear = (rel * (inv_var[:, None] if ct == "spherical" else inv_var)).T  # (d, K)
        self._log_norm = np.log(self.weights) + log_det_prec - 0.5 * d * math.log(2 * math.pi)
        if ct in ("diag", "spherical"):
            self._coef = np.vstack([square, linear, (self._log_norm - 0.5 * sq_mean)[None]])

    def _direct_form(self):
        """The centred means (K, d) and ``1 / (2 variance)`` (K, d, a view for spherical
        mixtures) of a diagonal or spherical mixture, for
        :func:`gendist._numba.diagonal_mixture_terms` (cached; made on first use, so that
        mixtures evaluated otherwise, such as a kernel density in 784-D, hold no copy)."""
        if "direct" not in self._cache:
            variance = self.covariances
            if self.covariance_type == "spherical":
                variance = variance[:, None]
            self._cache["direct"] = (self.means - self._center,
                                     np.broadcast_to(0.5 / variance, self.means.shape))
        return self._cache["direct"]

    def _params(self, xp, like, dtype):
        """Coefficients, log-norms and centre in ``dtype``, of ``like``'s kind and device
        (cached)."""
        key = (xp.name, str(getattr(like, "device", "")), str(dtype))
        if key not in self._cache:
            names = ("_coef", "_log_norm", "_center")
            if xp.name == "numpy":  # the centre stays float64: points are centred before casting
                params = {n: getattr(self, n).astype(dtype) for n in names[:2]}
                self._cache[key] = {**params, "_center": self._center}
            else:
                self._cache[key] = {
                    n: xp.asarray(getattr(self, n), like=like, dtype=dtype) for n in names
                }
        return self._cache[key]

    def _block_rows(self) -> int:
        """Rows per block: the (rows, K') products of a block stay within 1 MiB (a core's
        cache) but never under 256 rows (where BLAS loses speed); scikit-learn's
        ``working_memory`` caps them further (:func:`gendist._compute.iter_chunks`)."""
        return max(256, 2**20 // (8 * self._coef.shape[1]))

    def _row_bytes(self) -> int:
        """Memory one row of :meth:`log_prob` needs, in float64 bytes.

        The features, the (K') products (K * d for full and tied covariances) and their
        squares, and about ten (K,) temporaries (the log-densities per component, the
        logsumexp), all counted because autograd keeps them alive.
        """
        F, width = self._coef.shape
        return 8 * (2 * F + 2 * width + 10 * self.n_components)

    def _block_components(self, X, xp, p):
        """Centred points, products and per-component log-terms of one block of rows ``X``.

        Returns ``(Xc, prod, comp)``: ``Xc`` (rows, d) the points relative to the centre;
        ``prod`` the coefficient products, (d, K, rows) for full and tied covariances (the
        whitened coordinates ``(x - mu_k)^T P_k / sqrt(2)``), (K, rows) otherwise; ``comp``
        (K, rows) ``log w_k + log N(x; mu_k, Sigma_k)``. numpy or torch, in the dtype of ``p``.
        """
        ct, K = self.covariance_type, self.n_components
        Xc = X - p["_center"]
        one = Xc[:, :1] * 0.0 + 1.0
        with np.errstate(over="ignore"):  # squares beyond float64: -inf terms, zero density
            if ct in ("full", "tied"):
                features = [Xc, one]
            elif ct == "diag":
                features = [Xc * Xc, Xc, one]
            else:
                features = [xp.sum(Xc * Xc, axis=1)[:, None], Xc, one]
            features = xp.asarray(xp.concatenate(features, axis=1), dtype=p["_coef"].dtype)
            # (K', rows), component-major: every reduction over components runs along rows
            prod = p["_coef"].T @ features.T
        log_norm = p["_log_norm"][:, None]
        if ct in ("full", "tied") and xp.name == "numpy":
            # one compiled pass instead of numpy's square, sum and subtraction (10-D: 3x)
            from .._numba import log_norm_minus_squares  # numba is imported where it is used

            prod = prod.reshape(self.n_features, K, -1)
            comp = np.empty(prod.shape[1:], prod.dtype)
            log_norm_minus_squares(prod, log_norm[:, 0], comp)
        elif ct in ("full", "tied"):
            prod = prod.reshape(self.n_features, K, -1)
            comp = log_norm - xp.sum(xp.square(prod), axis=0)
        else:
            comp = xp.clip_max(prod, log_norm)  # the expanded form can exceed it by rounding
        return Xc, prod, comp

    def _compiled_block(self, X, p, score: bool):
        """``log p`` of one numpy float64 block of rows ``X``, and with ``score`` its gradient
        (rows, d) (else None), in compiled passes instead of numpy's squares, sums and
        logsumexp over (K, rows) temporaries.

        Full and tied: in few dimensions the whitening is computed in the kernels
        (:func:`gendist._numba.mixture_kernels`), beyond by one product and
        :func:`gendist._numba.mixture_log_prob`. The responsibilities
        ``g_k = exp(term_k - log p)`` give the score,
        ``sum_k g_k d term_k / dx = -2 sum_k g_k P_k w_k`` in the whitened coordinates ``w_k``.
        400 000 points, 10 components, one thread: log p 0.051 -> 0.030 s in 2-D,
        0.134 -> 0.087 s in 10-D; with the score 0.075 -> 0.041 s and 0.249 -> 0.166 s.

        Diagonal and spherical: the terms in the direct form
        (:func:`gendist._numba.diagonal_mixture_terms`) in up to
        :data:`gendist._numba.DIAGONAL_DIRECT_MAX_FEATURES` dimensions, beyond by the
        product of the expanded form (BLAS is efficient there), then one compiled
        logsumexp; the score
        ``sum_k g_k (mu_k - x) / sigma_k^2`` by two products with the coefficients of the
        expanded form, ``2 s_k (x - c) + l_k``. 300 isotropic components (a kernel
        density's) in 2-10-D: log p and score in 0.7-0.8 of the time of the expanded form's
        product, clip and maximum, which took 0.4-0.5 of the time of numpy's logsumexp."""
        from .._numba import (  # numba is imported where it is used
            UNROLLED_MAX_FEATURES,
            mixture_kernels,
            mixture_log_prob,
            mixture_logsumexp,
        )

        d, coef, log_p = self.n_features, p["_coef"], np.empty(len(X))
        diagonal = self.covariance_type in ("diag", "spherical")
        if d > UNROLLED_MAX_FEATURES and not diagonal:
            prod = (X - p["_center"]) @ coef[:d]
            mixture_log_prob(prod, coef[d], p["_log_norm"], log_p, score)
            return log_p, (-2.0 * (prod @ coef[:d].T) if score else None)
        XT, terms, top = self._component_terms(X, p)
        mixture_logsumexp(terms, top, log_p, score)  # terms: the responsibilities g (K, rows)
        if not score:
            return log_p, None
        if self.covariance_type == "diag":  # coefficient rows: squares, linear, constant
            return log_p, 2.0 * XT.T * (terms.T @ coef[:d].T) + terms.T @ coef[d : 2 * d].T
        if diagonal:  # coefficient rows: |x - c|^2, linear, constant
            return log_p, 2.0 * XT.T * (terms.T @ coef[0])[:, None] + terms.T @ coef[1 : d + 1].T
        gradient = np.zeros((d, len(X)))
        mixture_kernels(d)[1](XT, coef[:d], coef[d], terms, gradient)
        return log_p, -2.0 * gradient.T

    def _component_terms(self, X, p):
        """The per-component log-terms of one numpy float64 block of rows ``X``, compiled.

        Returns ``(XT, terms, top)``: the points relative to the centre, coordinate-major
        (d, rows); ``terms[k, i] = log w_k + log N(x_i; mu_k, Sigma_k)`` (K, rows); their
        maximum over the components (rows,). Full and tied mixtures in few dimensions and
        diagonal and spherical ones in up to
        :data:`gendist._numba.DIAGONAL_DIRECT_MAX_FEATURES` take the compiled kernels (see
        :meth:`_compiled_block`), others the product of :meth:`_block_components`.
        """
        from .._numba import (  # numba is imported where it is used
            DIAGONAL_DIRECT_MAX_FEATURES,
            UNROLLED_MAX_FEATURES,
            centred_transpose,
        )

        d = self.n_features
        diagonal = self.covariance_type in ("diag", "spherical")
        if d > (DIAGONAL_DIRECT_MAX_FEATURES if diagonal else UNROLLED_MAX_FEATURES):
            Xc, _, terms = self._block_components(X, _NUMPY, p)
            return Xc.T, terms, terms.max(axis=0)
        XT = np.empty((d, len(X)))
        centred_transpose(X, p["_center"], XT)
        return (XT, *self._centred_terms(XT, p))

    def _centred_terms(self, XT, p):
        """``(terms, top)`` of :meth:`_component_terms` from the centred, coordinate-major
        points ``XT`` (d, rows), by the compiled kernels (so where they apply)."""
        from .._numba import diagonal_mixture_terms, mixture_kernels  # imported where used

        d, n, coef = self.n_features, XT.shape[1], p["_coef"]
        terms, top = np.empty((self.n_components, n)), np.empty(n)
        if self.covariance_type in ("diag", "spherical"):
            diagonal_mixture_terms(XT, *self._direct_form(), p["_log_norm"], terms, top)
        else:
            mixture_kernels(d)[0](XT, coef[:d], coef[d], p["_log_norm"], terms, top)
        return terms, top

    def _half_squares(self, delta, p):
        """``delta_i^T Sigma_k^-1 delta_i / 2`` (K, rows) for a numpy float64 block of
        differences ``delta`` (rows, d): the components' Mahalanobis forms without their
        means, by the kernels and products of :meth:`_component_terms`."""
        from .._numba import UNROLLED_MAX_FEATURES, log_norm_minus_squares, mixture_kernels

        d, K, coef, ct = self.n_features, self.n_components, p["_coef"], self.covariance_type
        if ct == "spherical":
            return np.outer(0.5 / self.covariances, np.einsum("ij,ij->i", delta, delta))
        if ct == "diag":
            return self._direct_form()[1] @ (delta * delta).T
        out, zeros = np.empty((K, len(delta))), np.zeros(d * K)
        if d <= UNROLLED_MAX_FEATURES:  # the terms of a mixture without means or norms
            mixture_kernels(d)[0](np.ascontiguousarray(delta.T), coef[:d], zeros, zeros[:K],
                                  out, np.empty(len(delta)))
        else:
            log_norm_minus_squares((coef[:d].T @ delta.T).reshape(d, K, -1), zeros[:K], out)
        return np.negative(out, out=out)

    def _segment_constants(self):
        """Per component, the whitening's largest gain ``s_k`` and ``|mu_k - c|``, for the
        rounding bound of :func:`gendist._numba.mixture_log_prob_on_segments` (cached)."""
        if "segment" not in self._cache:
            d, K, ct = self.n_features, self.n_components, self.covariance_type
            if ct in ("full", "tied"):  # P_k[l, j] = coefficient [l, j * K + k]
                blocks = self._coef[:d].reshape(d, d, K).transpose(2, 0, 1)
                spread = np.linalg.svd(blocks, compute_uv=False)[:, 0]
            else:
                spread = np.sqrt(self._direct_form()[1].max(axis=1))
            offset = np.linalg.norm(self.means - self._center, axis=1)
            self._cache["segment"] = (spread, offset)
        return self._cache["segment"]

    def _float64_log_prob(self, X):
        """``log p`` of numpy rows ``X`` in float64 whatever ``dtype`` (the compiled
        blocks of :meth:`_compiled_block`)."""
        p = self._params(_NUMPY, X, np.dtype(np.float64))
        out = np.empty(len(X))
        blocks = iter_chunks(lambda start, stop: self._compiled_block(X[start:stop], p, False),
                             len(X), self._row_bytes(), max_rows=self._block_rows())
        for start, stop, (log_p, _) in blocks:
            out[start:stop] = log_p
        return out

    def log_prob_on_segments(self, A, B, t):
        """Natural log-density at the points ``A[e] + t[j] (B[e] - A[e])`` of straight
        segments, in float64 whatever ``dtype``; from 4-D on from the ends alone.

        Every component's log-term ``c_k - q_k(x) / 2`` is a concave quadratic in ``x``, so
        along a segment, exactly, ``term_k((1 - t) a + t b) = (1 - t) term_k(a) +
        t term_k(b) + t (1 - t) q_k(b - a) / 2``: the terms at the two ends and one
        Mahalanobis form of ``b - a`` per segment replace the evaluation at every node
        (:func:`gendist._numba.mixture_log_prob_on_segments`); the logsumexp over the
        components remains per node. Below 4-D, where that is not faster, the nodes are
        built where the compiled kernels read them. Six interior nodes (``n_quad = 8``), 10
        full-covariance components, one thread: see ``benchmarks/peers_density.md``.

        The identity rounds at the scale of the ends' terms, not of the node's. Where its
        bound (see the kernel) exceeds ``1e-7`` nats on a segment, its nodes are
        evaluated directly: ends or segments about a thousand standard deviations of a
        component long or more, a component far narrower than the data's spread, points
        beyond float64's squares. A subclass that changes :meth:`log_prob` (or an instance
        whose ``log_prob`` was replaced) gets its nodes evaluated by that ``log_prob``; so do
        positions outside [0, 1], where the bound does not hold.
        NaN in an end gives NaN at its segment's nodes, as :meth:`log_prob` does.
        Parameters and returns as :meth:`Density.log_prob_on_segments`; torch tensors are
        refused (evaluate them with :meth:`log_prob`).
        """
        d = self.n_features
        A, B, t = check_segments(A, B, t, d)
        own_log_prob = type(self).log_prob is not GaussianMixtureDensity.log_prob
        if own_log_prob or "log_prob" in vars(self) or not np.all((t >= 0.0) & (t <= 1.0)):
            # the identity's bound holds within the segment only
            return super().log_prob_on_segments(A, B, t)
        log_p = np.empty((len(t), len(A)))
        if len(t) and len(A):
            if d < _SEGMENT_IDENTITY_MIN_FEATURES:
                self._segment_nodes_log_prob(A, B, t, log_p)
            else:
                self._segment_identity_log_prob(A, B, t, log_p)
        return log_p

    def _segment_nodes_log_prob(self, A, B, t, log_p):
        """:meth:`log_prob_on_segments` node by node, the nodes built centred and
        coordinate-major where the compiled kernels read them; into ``log_p`` (T, E)."""
        from .._numba import centred_segment_nodes, mixture_logsumexp  # imported where used

        d, T, p = self.n_features, len(t), self._params(_NUMPY, A, np.dtype(np.float64))

        def nodes(start: int, stop: int):
            XT, values = np.empty((d, T * (stop - start))), np.empty(T * (stop - start))
            centred_segment_nodes(A[start:stop], B[start:stop], p["_center"], t, XT)
            mixture_logsumexp(*self._centred_terms(XT, p), values, False)
            return values.reshape(T, stop - start)

        blocks = iter_chunks(nodes, len(A), T * self._row_bytes(),
                             max_rows=max(1, self._block_rows() // T))
        for start, stop, values in blocks:
            log_p[:, start:stop] = values

    def _segment_identity_log_prob(self, A, B, t, log_p):
        """:meth:`log_prob_on_segments` from the ends' terms, segments beyond the identity's
        tolerance evaluated node by node in float64; into ``log_p`` (T, E)."""
        from .._numba import (  # numba is imported where it is used
            DIAGONAL_DIRECT_MAX_FEATURES,
            mixture_log_prob_on_segments,
            squared_distances,
        )

        d, T, p = self.n_features, len(t), self._params(_NUMPY, A, np.dtype(np.float64))
        spread, offset = self._segment_constants()
        diagonal = self.covariance_type in ("diag", "spherical")
        expanded = diagonal and d > DIAGONAL_DIRECT_MAX_FEATURES
        reach = [np.empty(len(A)), np.empty(len(A))]  # |a - c| and |b - c|
        for x, out in zip((A, B), reach):
            squared_distances(x, np.broadcast_to(p["_center"], x.shape), out)
            np.sqrt(out, out=out)

        def block(start: int, stop: int):
            a, b = A[start:stop], B[start:stop]
            error = np.empty(stop - start)
            mixture_log_prob_on_segments(
                self._component_terms(a, p)[1], self._component_terms(b, p)[1],
                self._half_squares(b - a, p), t, p["_log_norm"], spread, offset,
                reach[0][start:stop], reach[1][start:stop], d, expanded, log_p[:, start:stop],
                error,
            )
            return error

        blocks = iter_chunks(
            block, len(A), 3 * self._row_bytes() + 16 * T, max_rows=self._block_rows()
        )
        with np.errstate(over="ignore", invalid="ignore"):  # such segments: evaluated directly
            for start, _, error in blocks:
                direct = start + np.flatnonzero(~(error <= _SEGMENT_TOLERANCE))
                if direct.size:
                    nodes = segment_nodes(A[direct], B[direct], t, node_major=True)
                    log_p[:, direct] = self._float64_log_prob(nodes.reshape(-1, d)).reshape(T, -1)

    def _unrolled(self) -> bool:
        """Whether numpy blocks take the unrolled kernels of :meth:`_compiled_block` (full or
        tied, at most :data:`gendist._numba.UNROLLED_MAX_FEATURES` features)."""
        if self.covariance_type not in ("full", "tied"):
            return False
        from .._numba import UNROLLED_MAX_FEATURES  # numba is imported where it is used

        return self.n_features <= UNROLLED_MAX_FEATURES

    def _compiles(self, xp, p) -> bool:
        """Whether a block takes :meth:`_compiled_block` (numpy, float64)."""
        return xp.name == "numpy" and p["_coef"].dtype == np.float64

    def _block_log_prob(self, X, xp, p):
        """``log p`` of one block of rows ``X`` (numpy or torch, in the dtype of ``p``)."""
        if self._compiles(xp, p):
            return self._compiled_block(X, p, score=False)[0]
        return xp.logsumexp(self._block_components(X, xp, p)[2], axis=0, overwrite=True)

    def log_prob(self, X):
        """Natural log-density of each row of ``X``, computed in the kind of ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n, n_features)
            A torch tensor may be on any device and require gradients; it is evaluated in its
            own dtype. Arrays are evaluated in the mixture's ``dtype``.

        Returns
        -------
        log_p : ndarray of shape (n,), float64, or torch.Tensor of shape (n,)
            A tensor (differentiable, in the dtype and on the device of ``X``) for a tensor.
        """
        xp = get_namespace(X)
        if xp.name == "numpy":
            X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X has shape {tuple(X.shape)}; this mixture expects (n, {self.n_features})."
            )
        if xp.name == "numpy":
            dtype, device = np.dtype(self.dtype), None
            if self._unrolled():  # faster than float32 products, and exact
                dtype = np.dtype(np.float64)
        else:
            dtype, device = X.dtype, X.device
        p = self._params(xp, X, dtype)

        def block_log_prob(start: int, stop: int):
            return self._block_log_prob(X[start:stop], xp, p)

        blocks = iter_chunks(
            block_log_prob,
            X.shape[0],
            self._row_bytes(),
            device=device,
            max_rows=self._block_rows(),
        )
        if xp.name == "numpy":
            out = np.empty(X.shape[0])
            for start, stop, log_p in blocks:
                out[start:stop] = log_p
            return out
        parts = [log_p for _, _, log_p in blocks]
        if not parts:
            return X[:, 0] * 0.0
        return parts[0] if len(parts) == 1 else xp.concatenate(parts)

    def log_prob_tensor(self, x):
        return self.log_prob(x)

    def log_prob_and_score(self, X):
        """Natural log-density and its gradient (the score) at each row of ``X``, in float64.

        The closed-form gradient of the mixture (see :meth:`_compiled_block`), in
        row blocks as :meth:`log_prob`: one more product of the size of ``log p``'s (geodesic
        refinement uses it; its gradients cost a third of autograd's).

        Parameters
        ----------
        X : array-like of shape (n, n_features)

        Returns
        -------
        log_p : ndarray of shape (n,)
        score : ndarray of shape (n, n_features)
            ``d log p / dx``; zero where ``log p`` is ``-inf``.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X has shape {tuple(X.shape)}; this mixture expects (n, {self.n_features})."
            )
        p = self._params(_NUMPY, X, np.dtype(np.float64))
        log_p, score = np.empty(len(X)), np.empty(X.shape)
        blocks = iter_chunks(
            lambda start, stop: self._compiled_block(X[start:stop], p, score=True),
            X.shape[0],
            self._row_bytes() + 8 * 3 * self.n_features,  # and the score, its two terms
            max_rows=self._block_rows(),
        )
        for start, stop, (block_log_p, block_score) in blocks:
            log_p[start:stop], score[start:stop] = block_log_p, block_score
        return log_p, score

    def sample(self, n_samples, random_state=None):
        rng = check_random_state(random_state)
        n_samples = check_int(n_samples, "n_samples")
        comp = rng.choice(self.n_components, size=n_samples, p=self.weights)
        z = rng.standard_normal((n_samples, self.n_features))
        ct = self.covariance_type
        if ct in ("full", "tied"):
            L = self._chol[comp] if ct == "full" else self._chol[0]
            noise = np.einsum("nij,nj->ni", L, z) if ct == "full" else z @ L.T
        elif ct == "diag":
            noise = z * np.sqrt(self.covariances[comp])
        else:
            noise = z * np.sqrt(self.covariances[comp])[:, None]
        return self.means[comp] + noise
