"""Density adapters: one protocol, the log-density of an (n, d) batch, for every kind of model.

Everything downstream calls :func:`evaluate_log_density`, which batches the points and checks
what the model returned. :func:`as_density` turns what a user passes into an adapter:

* a :class:`Density` (such as :class:`GaussianMixtureDensity`) is used as it is;
* a scikit-learn estimator with ``score_samples`` (GaussianMixture, KernelDensity,
  BayesianGaussianMixture, ...) becomes a :class:`SklearnDensity`; an unfitted one is cloned
  and fitted on the training points during ``fit``;
* a torch module or ``torch.distributions.Distribution`` with ``log_prob`` becomes a
  :class:`TorchDensity` (batched, no grad, on the model's own device);
* any other callable mapping an (n, d) array to n log-densities becomes a
  :class:`CallableDensity`.
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
from collections.abc import Callable

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._backend import get_backend
from ._validation import check_int, check_log_density_values, check_points, check_positive

__all__ = [
    "Density",
    "CallableDensity",
    "SklearnDensity",
    "TorchDensity",
    "GaussianMixtureDensity",
    "as_density",
    "evaluate_log_density",
]


class Density:
    """Base class of the density adapters.

    Subclasses implement :meth:`log_prob`; those that can draw points implement :meth:`sample`
    and set ``can_sample = True``; those that must be fitted on the training points first set
    ``requires_fit = True`` and implement :meth:`fit`, which returns a fitted adapter.
    """

    can_sample: bool = False
    requires_fit: bool = False
    differentiable: bool = False

    def log_prob_tensor(self, x):
        """Log-density of a torch tensor, differentiable with respect to ``x``.

        Implemented by adapters with ``differentiable = True`` (torch models, mixtures,
        flows); geodesic refinement uses it for exact gradients and falls back to finite
        differences of :meth:`log_prob` for the others.

        Parameters
        ----------
        x : torch.Tensor of shape (n, d)

        Returns
        -------
        log_p : torch.Tensor of shape (n,), on the device and in the dtype of ``x``
        """
        raise TypeError(f"{type(self).__name__} cannot evaluate log p on torch tensors.")

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Natural log-density of each row of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n, d), float64

        Returns
        -------
        log_p : ndarray of shape (n,)
            ``log p(x)`` in nats; ``-inf`` where the density is zero.
        """
        raise NotImplementedError

    def sample(self, n_samples: int, random_state=None) -> np.ndarray:
        """Draw ``n_samples`` points, shape (n_samples, d)."""
        raise TypeError(
            f"{type(self).__name__} cannot draw samples; use vertices='data' or pass a density "
            "with a sample method (GaussianMixture, KernelDensity, a torch distribution, ...)."
        )

    def fit(self, X: np.ndarray) -> Density:
        """Return an adapter fitted on ``X`` (the adapter itself when nothing is to be fitted)."""
        return self


class CallableDensity(Density):
    """A plain function ``log_prob(X) -> (n,)`` on numpy arrays.

    Parameters
    ----------
    func : callable
        Maps an (n, d) float64 array to n natural log-densities.
    sampler : callable, optional
        ``sampler(n_samples, random_state) -> (n_samples, d)``, to draw synthetic vertices.
    """

    def __init__(self, func: Callable[[np.ndarray], np.ndarray], sampler=None):
        if not callable(func):
            raise TypeError(f"density must be callable, got {type(func).__name__}.")
        self.func = func
        self.sampler = sampler
        self.can_sample = sampler is not None

    def log_prob(self, X):
        return self.func(X)

    def sample(self, n_samples, random_state=None):
        if self.sampler is None:
            return super().sample(n_samples, random_state)
        return np.asarray(self.sampler(n_samples, random_state), dtype=np.float64)


def _sklearn_is_fitted(estimator) -> bool:
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


class SklearnDensity(Density):
    """A scikit-learn estimator with ``score_samples`` (log-density per sample).

    An unfitted estimator is cloned and fitted on the training points by :meth:`fit`; the
    estimator passed in is never modified.
    """

    def __init__(self, estimator):
        if not hasattr(estimator, "score_samples"):
            raise TypeError(f"{type(estimator).__name__} has no score_samples method.")
        self.estimator = estimator
        self.requires_fit = not _sklearn_is_fitted(estimator)
        self.can_sample = hasattr(estimator, "sample")

    def fit(self, X):
        if not self.requires_fit:
            return self
        return SklearnDensity(clone(self.estimator).fit(X))

    def log_prob(self, X):
        if self.requires_fit:
            raise NotFittedError(
                f"{type(self.estimator).__name__} is not fitted; fit it first or let "
                "GenerativeDistance.fit fit it on the training points."
            )
        return self.estimator.score_samples(X)

    def sample(self, n_samples, random_state=None):
        est = self.estimator
        if "random_state" in inspect.signature(est.sample).parameters:  # KernelDensity
            out = est.sample(n_samples, random_state=random_state)
        else:  # GaussianMixture and friends draw from their own random_state attribute
            est = copy.deepcopy(est)
            if hasattr(est, "random_state"):
                est.random_state = random_state
            out = est.sample(n_samples)
        out = out[0] if isinstance(out, tuple) else out
        return np.asarray(out, dtype=np.float64)


def _find_tensor(obj, depth: int = 3):
    """First floating-point tensor among the attributes of a torch distribution (recursively)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj if obj.is_floating_point() else None
    if depth == 0 or not hasattr(obj, "__dict__"):
        return None
    for value in vars(obj).values():
        found = _find_tensor(value, depth - 1)
        if found is not None:
            return found
    return None


class TorchDensity(Density):
    """A torch module or distribution with ``log_prob``, evaluated without gradients.

    Batches of numpy points are moved to the model's device and dtype (inferred from its
    parameters, buffers or distribution parameters unless given), and the log-densities come
    back as float64 numpy arrays.

    Parameters
    ----------
    model : torch.nn.Module or torch.distributions.Distribution
        Must provide ``log_prob(x) -> (n,)``; ``sample`` is used when synthetic vertices are
        asked for.
    device, dtype : optional
        Override the inferred device and floating dtype.
    """

    def __init__(self, model, device=None, dtype=None):
        import torch

        if not hasattr(model, "log_prob"):
            raise TypeError(f"{type(model).__name__} has no log_prob method.")
        self.model = model
        ref = None
        if isinstance(model, torch.nn.Module):
            ref = next((t for t in model.parameters() if t.is_floating_point()), None)
            if ref is None:
                ref = next((t for t in model.buffers() if t.is_floating_point()), None)
        else:
            ref = _find_tensor(model)
        self.device = (
            torch.device(device)
            if device is not None
            else (ref.device if ref is not None else torch.device("cpu"))
        )
        self.dtype = (
            dtype
            if dtype is not None
            else (ref.dtype if ref is not None else torch.get_default_dtype())
        )
        self.can_sample = hasattr(model, "sample")

    differentiable = True

    def log_prob_tensor(self, x):
        out = self.model.log_prob(x.to(device=self.device, dtype=self.dtype))
        return out.to(device=x.device, dtype=x.dtype)

    def log_prob(self, X):
        import torch

        with torch.no_grad():
            x = torch.as_tensor(X, dtype=self.dtype, device=self.device)
            out = self.model.log_prob(x)
            return out.detach().to("cpu", torch.float64).numpy()

    def sample(self, n_samples, random_state=None):
        import torch

        if not self.can_sample:
            return super().sample(n_samples, random_state)
        seed = check_random_state(random_state).randint(2**31 - 1)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            if isinstance(self.model, torch.distributions.Distribution):
                out = self.model.sample((n_samples,))
            else:
                out = self.model.sample(n_samples)
        return out.detach().to("cpu", torch.float64).numpy()


_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


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

    def _precompute(self):
        """Precision factors: Mahalanobis(x, k) = ||(x - mu_k) @ P_k||^2, log|P_k| for the norm."""
        d, ct, cov = self.n_features, self.covariance_type, self.covariances
        if ct in ("full", "tied"):
            covs = cov if ct == "full" else cov[None]
            try:
                chol = np.linalg.cholesky(covs)
            except np.linalg.LinAlgError as exc:
                raise ValueError("covariances must be symmetric positive definite.") from exc
            eye = np.broadcast_to(np.eye(d), covs.shape)
            # P_k = L_k^{-T}, so that (x - mu)^T Sigma^{-1} (x - mu) = ||(x - mu)^T P_k||^2
            prec = np.swapaxes(np.linalg.solve(chol, eye), -1, -2)
            prec_k = prec if ct == "full" else np.broadcast_to(prec, (self.n_components, d, d))
            self._proj = np.concatenate(list(prec_k), axis=1)  # (d, K*d)
            self._shift = np.einsum("kd,kde->ke", self.means, prec_k).reshape(1, -1)
            log_det_prec = np.log(np.diagonal(prec, axis1=-2, axis2=-1)).sum(-1)
        else:
            if np.any(cov <= 0):
                raise ValueError("covariances must be positive.")
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
                n: xp.asarray(v, like=like) for n, v in self._params(_NUMPY_BACKEND, None).items()
            }
        return self._torch_cache[key]

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
        xp = get_backend(X)
        if xp.name == "numpy":
            X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X has shape {tuple(X.shape)}; this mixture expects (n, {self.n_features})."
            )
        # keep the (rows, K) block, (rows, K * d) for full covariances, near 2^22 entries
        width = self.n_components * (self.n_features if hasattr(self, "_proj") else 1)
        rows = max(1, (1 << 22) // width)
        out = [
            xp.logsumexp(self._component_log_prob(X[s : s + rows], xp), axis=1)
            for s in range(0, X.shape[0], rows)
        ]
        if not out:
            return X[:, 0] * 0.0
        return out[0] if len(out) == 1 else _concat(out, xp)

    def log_prob_tensor(self, x):
        return self.log_prob(x)

    def sample(self, n_samples, random_state=None):
        rng = check_random_state(random_state)
        n_samples = check_int(n_samples, "n_samples")
        comp = rng.choice(self.n_components, size=n_samples, p=self.weights)
        z = rng.standard_normal((n_samples, self.n_features))
        ct = self.covariance_type
        if ct in ("full", "tied"):
            chol = np.linalg.cholesky(self.covariances if ct == "full" else self.covariances[None])
            L = chol[comp] if ct == "full" else chol[0]
            noise = np.einsum("nij,nj->ni", L, z) if ct == "full" else z @ L.T
        elif ct == "diag":
            noise = z * np.sqrt(self.covariances[comp])
        else:
            noise = z * np.sqrt(self.covariances[comp])[:, None]
        return self.means[comp] + noise


_NUMPY_BACKEND = get_backend(np.zeros(0))


def _concat(parts, xp):
    if xp.name == "numpy":
        return np.concatenate(parts)
    return xp.torch.cat(parts)


def _is_torch_model(obj) -> bool:
    if "torch" not in sys.modules:
        return False
    torch = sys.modules["torch"]
    return isinstance(obj, (torch.nn.Module, torch.distributions.Distribution))


def as_density(density) -> Density:
    """Turn what a user passes as ``density`` into a :class:`Density` adapter.

    Parameters
    ----------
    density : Density, scikit-learn estimator, torch module or distribution, or callable
        See the module docstring for what each becomes.

    Returns
    -------
    Density
    """
    if isinstance(density, Density):
        return density
    if hasattr(density, "score_samples"):
        return SklearnDensity(density)
    if hasattr(density, "log_prob"):
        if _is_torch_model(density):
            return TorchDensity(density)
        return CallableDensity(density.log_prob, getattr(density, "sample", None))
    if callable(density):
        return CallableDensity(density)
    raise TypeError(
        "density must be a callable returning log-densities, a scikit-learn estimator with "
        "score_samples, a torch module or distribution with log_prob, or a gendist Density; "
        f"got {type(density).__name__}."
    )


def evaluate_log_density(
    density: Density, X: np.ndarray, batch_size: int = 65536, progress: bool = False
) -> np.ndarray:
    """Log-density of every row of ``X``, in batches, with the model's output checked.

    Parameters
    ----------
    density : Density
    X : ndarray of shape (n, d), float64
    batch_size : int
        Rows per call to the model.
    progress : bool
        Show a progress bar over batches.

    Returns
    -------
    log_p : ndarray of shape (n,), float64

    Raises
    ------
    ValueError
        If the model returns the wrong shape, NaN or +inf (the message counts the rows).
    """
    n = X.shape[0]
    out = np.empty(n, dtype=np.float64)
    starts = range(0, n, batch_size)
    for s in tqdm(starts, desc="density", disable=not progress or len(starts) < 2, leave=False):
        chunk = X[s : s + batch_size]
        out[s : s + len(chunk)] = check_log_density_values(
            density.log_prob(chunk), len(chunk), source=f"density ({type(density).__name__})"
        )
    return out
