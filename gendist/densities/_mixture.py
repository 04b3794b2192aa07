"""Gaussian mixtures evaluated by matrix products, in numpy or torch."""

from __future__ import annotations

import math

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._compute import get_namespace, iter_chunks
from .._validation import check_int, check_points, check_positive
from ._base import Density

__all__ = ["GaussianMixtureDensity"]


_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_SYMMETRY_RTOL = 1e-10  # largest |C - C^T| allowed, relative to the largest |C|


def _has_cholesky(matrix: np.ndarray) -> bool:
    """True when numpy's Cholesky factorisation of the (d, d) ``matrix`` succeeds."""
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


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
    """

    can_sample = True
    differentiable = True

    def __init__(self, weights, means, covariances, covariance_type: str = "full"):
        if covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {_COVARIANCE_TYPES}, got {covariance_type!r}."
            )
        means = check_points(means, "means")
        K, d = means.shape
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if weights.shape != (K,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"weights must be {K} positive finite numbers, one per component.")
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
        self.n_components, self.n_features = K, d
        self._precompute()
        self._torch_cache: dict = {}

    @classmethod
    def isotropic(cls, means, variance: float, weights=None) -> GaussianMixtureDensity:
        """Equal-variance isotropic mixture, e.g. one component per training image.

        Parameters
        ----------
        means : array-like of shape (K, d)
        variance : float
            The common variance sigma^2 of every component (> 0).
        weights : array-like of shape (K,), optional
            Defaults to equal weights.
        """
        variance = check_positive(variance, "variance")
        means = check_points(means, "means")
        K = means.shape[0]
        weights = np.full(K, 1.0 / K) if weights is None else weights
        return cls(weights, means, np.full(K, variance), "spherical")

    @classmethod
    def from_sklearn(cls, mixture) -> GaussianMixtureDensity:
        """Copy a fitted scikit-learn ``GaussianMixture`` or ``BayesianGaussianMixture``."""
        check_is_fitted(mixture)
        return cls(mixture.weights_, mixture.means_, mixture.covariances_, mixture.covariance_type)

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
        """Precision factors: Mahalanobis(x, k) = ||(x - mu_k) @ P_k||^2, log|P_k| for the norm."""
        d, ct, cov = self.n_features, self.covariance_type, self.covariances
        if ct in ("full", "tied"):
            chol = self._chol = self._cholesky()  # sample() draws with these factors
            eye = np.broadcast_to(np.eye(d), chol.shape)
            # P_k = L_k^{-T}, so that (x - mu)^T Sigma^{-1} (x - mu) = ||(x - mu)^T P_k||^2
            prec = np.swapaxes(np.linalg.solve(chol, eye), -1, -2)
            prec_k = prec if ct == "full" else np.broadcast_to(prec, (self.n_components, d, d))
            self._proj = np.concatenate(list(prec_k), axis=1)  # (d, K*d)
            self._shift = np.einsum("kd,kde->ke", self.means, prec_k).reshape(1, -1)
            log_det_prec = np.log(np.diagonal(prec, axis1=-2, axis2=-1)).sum(-1)
        else:
            nonpositive = np.flatnonzero((cov <= 0).reshape(self.n_components, -1).any(axis=1))
            if nonpositive.size:
                raise ValueError(
                    f"{self._component_name(nonpositive[0])} has a variance <= 0; variances "
                    "must be positive."
                )
            inv_var = 1.0 / cov
            self._inv_var = inv_var
            log_det_prec = (
                0.5 * np.log(inv_var).sum(-1) if ct == "diag" else 0.5 * d * np.log(inv_var)
            )
        self._log_norm = np.log(self.weights) + log_det_prec - 0.5 * d * math.log(2 * math.pi)

    def _params(self, xp, like):
        """Parameters as arrays of ``like``'s kind, dtype and device (cached for torch)."""
        if xp.name == "numpy":
            if hasattr(self, "_proj"):
                names = ("means", "_log_norm", "_proj", "_shift")
            else:
                names = ("means", "_log_norm", "_inv_var")
            return {n: getattr(self, n) for n in names}
        key = (str(like.device), like.dtype)
        if key not in self._torch_cache:
            self._torch_cache[key] = {
                n: xp.asarray(v, like=like) for n, v in self._params(get_namespace(), None).items()
            }
        return self._torch_cache[key]

    def _row_bytes(self) -> int:
        """Memory one row of :meth:`log_prob` needs, in float64 bytes.

        The (K * d) blocks of full and tied covariances (the projection, its shifted copy and
        its square) and about ten (K,) temporaries (the Mahalanobis terms, the weighted
        log-densities, the logsumexp), all counted because autograd keeps them alive.
        """
        K, d = self.n_components, self.n_features
        projection = 3 * K * d if self.covariance_type in ("full", "tied") else 0
        return 8 * (d + projection + 10 * K)

    def _component_log_prob(self, X, xp):
        """(n, K) matrix of log w_k + log N(x_n; mu_k, Sigma_k)."""
        p = self._params(xp, X)
        means, ct = p["means"], self.covariance_type
        if ct in ("full", "tied"):
            # one matmul for all components: (n, d) @ (d, K*d), then squared norms per block
            proj, shift = p["_proj"], p["_shift"]
            y = X @ proj - shift
            maha = xp.sum((y * y).reshape(X.shape[0], -1, self.n_features), axis=2)
        else:
            iv = p["_inv_var"]
            if ct == "diag":
                maha = (X * X) @ iv.T - 2.0 * (X @ (means * iv).T) + xp.sum(means * means * iv, 1)
            else:
                sq_x = xp.sum(X * X, axis=1)[:, None]
                sq_m = xp.sum(means * means, axis=1)[None, :]
                maha = (sq_x - 2.0 * (X @ means.T) + sq_m) * iv[None, :]
            maha = xp.clip_min(maha, 0.0)  # the expanded form can dip below 0 by rounding
        return p["_log_norm"][None, :] - 0.5 * maha

    def log_prob(self, X):
        """Natural log-density of each row of ``X``, computed in the kind of ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n, n_features)
            A torch tensor may be on any device and require gradients.

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

        def block_log_prob(start: int, stop: int):
            return xp.logsumexp(self._component_log_prob(X[start:stop], xp), axis=1)

        device = X.device if xp.name == "torch" else None
        blocks = iter_chunks(block_log_prob, X.shape[0], self._row_bytes(), device=device)
        out = [log_p for _, _, log_p in blocks]
        if not out:
            return X[:, 0] * 0.0
        return out[0] if len(out) == 1 else xp.concatenate(out)

    def log_prob_tensor(self, x):
        return self.log_prob(x)

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
