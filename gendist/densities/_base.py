"""Density adapters: one protocol, the log-density of an (n, d) batch, for every kind of model.

Everything downstream calls :func:`evaluate_log_density`, which batches the points and checks
what the model returned. :func:`as_density` turns what a user passes into an adapter:

* a :class:`Density` (such as :class:`GaussianMixtureDensity`) is used as it is;
* a scikit-learn estimator with ``score_samples`` (GaussianMixture, KernelDensity,
  BayesianGaussianMixture, ...) becomes a :class:`SklearnDensity`; an unfitted one is cloned
  and fitted on the training points during ``fit``;
* a torch module or ``torch.distributions.Distribution`` with ``log_prob`` becomes a
  :class:`TorchDensity` (batched, no grad, on the model's own device); so does an
  unconditional zuko flow module (``zuko.flows.MAF(2)``: called, it returns the distribution);
* :class:`RealNVPDensity` trains a RealNVP flow (zuko) on the training points;
* any other callable mapping an (n, d) array to n log-densities becomes a
  :class:`CallableDensity`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import sys
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._compute import get_namespace
from .._optional import import_optional
from .._validation import check_int, check_log_density_values, check_points, check_positive

__all__ = [
    "Density",
    "CallableDensity",
    "SklearnDensity",
    "TorchDensity",
    "GaussianMixtureDensity",
    "RealNVPDensity",
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
        asked for. An unconditional zuko flow module (a ``zuko.lazy.LazyDistribution``, such
        as ``zuko.flows.MAF(2)``) is accepted too: it is called at every evaluation, so the
        distribution follows its current weights.
    device, dtype : optional
        Override the inferred device and floating dtype.
    """

    def __init__(self, model, device=None, dtype=None):
        import torch

        self._lazy = _is_lazy_distribution(model)
        if not hasattr(model, "log_prob") and not self._lazy:
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
        self.can_sample = self._lazy or hasattr(model, "sample")

    differentiable = True

    def _distribution(self):
        """The object with ``log_prob``: the model, or what a lazy zuko flow returns."""
        return self.model() if self._lazy else self.model

    def log_prob_tensor(self, x):
        out = self._distribution().log_prob(x.to(device=self.device, dtype=self.dtype))
        return out.to(device=x.device, dtype=x.dtype)

    def log_prob(self, X):
        import torch

        with torch.no_grad():
            x = torch.as_tensor(X, dtype=self.dtype, device=self.device)
            out = self._distribution().log_prob(x)
            return out.detach().to("cpu", torch.float64).numpy()

    def sample(self, n_samples, random_state=None):
        import torch

        if not self.can_sample:
            return super().sample(n_samples, random_state)
        seed = check_random_state(random_state).randint(2**31 - 1)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            model = self._distribution()
            if isinstance(model, torch.distributions.Distribution):
                out = model.sample((n_samples,))
            else:
                out = model.sample(n_samples)
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
        xp = get_namespace(X)
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
            chol = np.linalg.cholesky(self.covariances if ct == "full" else self.covariances[None])
            L = chol[comp] if ct == "full" else chol[0]
            noise = np.einsum("nij,nj->ni", L, z) if ct == "full" else z @ L.T
        elif ct == "diag":
            noise = z * np.sqrt(self.covariances[comp])
        else:
            noise = z * np.sqrt(self.covariances[comp])[:, None]
        return self.means[comp] + noise


_ACTIVATIONS = ("relu", "elu", "silu", "tanh")


def _float_dtype_name(dtype) -> str:
    """'float32' or 'float64' from a name, a numpy dtype or a torch dtype."""
    name = str(dtype).replace("torch.", "")
    try:
        name = str(np.dtype(name))
    except TypeError:
        pass
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return name


class RealNVPDensity(Density, BaseEstimator):
    """A RealNVP normalizing flow (affine coupling layers, built on zuko), fitted by maximum
    likelihood.

    The flow maps data ``x`` to a latent ``z = f((x - mean_) / scale_)`` with a standard normal
    base distribution, so ``log p(x) = log N(z; 0, I) + log|det df/dx| - sum(log scale_)``.
    Training is by Adam on minibatches with early stopping on the negative log-likelihood of
    a held-out validation split, restoring the best weights. Once fitted, ``requires_fit`` is
    False, so the flow can be passed to :class:`gendist.GenerativeDistance` as it is; the
    log-density is differentiable (:meth:`log_prob_tensor`), which geodesic refinement uses.

    Needs torch and zuko (``pip install "gendist[flows]"``).

    Parameters
    ----------
    n_transforms : int, default=8
        Number of affine coupling layers; masks alternate between the two halves of the
        features.
    hidden_features : sequence of int, default=(64, 64)
        Hidden layer widths of each coupling layer's network.
    activation : {"relu", "elu", "silu", "tanh"}, default="relu"
        Activation of those networks; "elu", "silu" and "tanh" give a smooth log-density,
        "relu" a piecewise smooth one (and trains fastest on 2-D toy data).
    epochs : int, default=300
        Maximum number of passes over the training split.
    batch_size : int, default=256
        Points per gradient step.
    lr : float, default=2e-3
        Adam learning rate.
    weight_decay : float, default=0.0
        Adam (L2) weight decay.
    validation_fraction : float, default=0.1
        Fraction of the points held out to monitor the NLL for early stopping, in [0, 1).
        With 0, every point is used for training and the flow of the last epoch is kept.
    patience : int, default=40
        Stop after this many epochs without a better validation NLL.
    standardize : bool, default=True
        Standardise the features (mean 0, standard deviation 1) before the flow; the
        standardisation's log-determinant is part of :meth:`log_prob`.
    dtype : {"float32", "float64"}, default="float32"
        Dtype of the flow's parameters and arithmetic; inputs and outputs are float64 numpy.
    device : str or torch.device, default=None
        Where the flow lives and computes ("cpu" when None).
    n_jobs : int or None, default=None
        CPU threads torch may use while this flow trains and evaluates (set with
        ``torch.set_num_threads`` and restored afterwards). None means 1, by far the fastest
        for the small networks of low-dimensional flows, especially on a busy machine;
        -1 leaves torch's own setting.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the validation split and the minibatch order; fitting
        twice with the same integer gives the same flow (on the same device).
    verbose : bool, default=False
        Show a progress bar over epochs with the training and validation NLL.

    Attributes
    ----------
    flow_ : zuko.flows.RealNVP
        The fitted flow (a torch module; calling it returns a
        ``zuko.distributions.NormalizingFlow`` over standardised data).
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features_in_,)
        The standardisation (zeros and ones when ``standardize=False``).
    history_ : dict
        Per-epoch ``train_nll`` and ``val_nll`` (mean negative log-likelihood in nats per
        point, in the units of the data); ``val_nll`` is empty without a validation split.
    best_epoch_ : int
        Epoch (0-based) whose weights were kept.
    n_epochs_ : int
        Epochs run before stopping.

    Examples
    --------
    >>> from gendist import GenerativeDistance, RealNVPDensity
    >>> from gendist.datasets import make_moons
    >>> X, _ = make_moons(500, random_state=0)
    >>> flow = RealNVPDensity(epochs=20, random_state=0).fit(X)
    >>> flow.log_prob(X[:3]).shape
    (3,)
    >>> D = GenerativeDistance(density=flow, n_neighbors=10).fit_transform(X)
    """

    can_sample = True
    differentiable = True
    _BATCH = 65536  # points per no-grad evaluation

    def __init__(
        self,
        n_transforms=8,
        hidden_features=(64, 64),
        activation="relu",
        epochs=300,
        batch_size=256,
        lr=2e-3,
        weight_decay=0.0,
        validation_fraction=0.1,
        patience=40,
        standardize=True,
        dtype="float32",
        device=None,
        n_jobs=None,
        random_state=None,
        verbose=False,
    ):
        self.n_transforms = n_transforms
        self.hidden_features = hidden_features
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.standardize = standardize
        self.dtype = dtype
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @property
    def requires_fit(self) -> bool:
        """True until :meth:`fit` has run; a fitted flow is used by GenerativeDistance as is."""
        return not hasattr(self, "flow_")

    # ------------------------------------------------------------------ fitting
    def _check_params(self):
        check_int(self.n_transforms, "n_transforms")
        hidden = self.hidden_features
        if isinstance(hidden, (int, np.integer)) or not hasattr(hidden, "__len__"):
            raise TypeError(f"hidden_features must be a sequence of layer widths, got {hidden!r}.")
        hidden = [check_int(h, "hidden_features[i]") for h in hidden]
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {self.activation!r}.")
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_positive(self.lr, "lr")
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        frac = check_positive(self.validation_fraction, "validation_fraction", allow_zero=True)
        if frac >= 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {frac}.")
        check_int(self.patience, "patience")
        _float_dtype_name(self.dtype)
        if self.n_jobs is not None and self.n_jobs != -1:
            check_int(self.n_jobs, "n_jobs")
        return hidden, frac

    @contextlib.contextmanager
    def _threads(self, torch):
        """Run the block with ``n_jobs`` torch CPU threads, restoring the setting after."""
        n = 1 if self.n_jobs is None else self.n_jobs
        before = torch.get_num_threads()
        if n == -1 or n == before:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _torch(self):
        """(torch, zuko, dtype, device), importing them lazily."""
        zuko = import_optional("zuko")
        import torch

        dtype = getattr(torch, _float_dtype_name(self.dtype))
        device = torch.device("cpu" if self.device is None else self.device)
        return torch, zuko, dtype, device

    def fit(self, X, y=None):
        """Train the flow on ``X`` by maximum likelihood with early stopping.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points, finite, ``n_features >= 2`` (a coupling layer splits the
            features in two).
        y : ignored

        Returns
        -------
        self : RealNVPDensity
            Fitted.
        """
        hidden, frac = self._check_params()
        X = check_points(X, "X", min_samples=2)
        n, d = X.shape
        if d < 2:
            raise ValueError(
                f"X has {d} feature; a RealNVP coupling layer splits the features in two, so "
                "it needs at least 2. Use a KernelDensity or GaussianMixture for 1-D data."
            )
        torch = self._torch()[0]
        with self._threads(torch):
            return self._train(X, hidden, frac)

    def _train(self, X, hidden, frac):
        """The body of :meth:`fit`, on validated float64 ``X``."""
        n, d = X.shape
        torch, zuko, dtype, device = self._torch()
        rng = check_random_state(self.random_state)
        init_seed = int(rng.randint(2**31 - 1))

        if self.standardize:
            mean, scale = X.mean(axis=0), X.std(axis=0)
            scale[scale == 0] = 1.0
        else:
            mean, scale = np.zeros(d), np.ones(d)
        log_scale = float(np.log(scale).sum())

        order = rng.permutation(n)
        n_val = int(round(frac * n)) if frac > 0 else 0
        if frac > 0:
            n_val = min(max(n_val, 1), n - 1)
        val_idx, train_idx = order[:n_val], order[n_val:]
        Xs = torch.as_tensor((X - mean) / scale, dtype=dtype, device=device)
        x_train, x_val = Xs[train_idx], Xs[val_idx]

        act = {
            "relu": torch.nn.ReLU,
            "elu": torch.nn.ELU,
            "silu": torch.nn.SiLU,
            "tanh": torch.nn.Tanh,
        }[self.activation]
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(init_seed)
            flow = zuko.flows.RealNVP(
                d, transforms=self.n_transforms, hidden_features=hidden, activation=act
            )
        flow = flow.to(device=device, dtype=dtype)
        optimizer = torch.optim.Adam(flow.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def snapshot():
            return {k: v.detach().clone() for k, v in flow.state_dict().items()}

        history = {"train_nll": [], "val_nll": []}
        best, best_epoch, best_state = np.inf, 0, snapshot()
        n_train, bs = len(train_idx), self.batch_size
        bar = tqdm(range(self.epochs), desc="RealNVP", unit="epoch", disable=not self.verbose)
        epoch = -1
        for epoch in bar:
            flow.train()
            perm = torch.as_tensor(rng.permutation(n_train), device=device)
            total = 0.0
            for s in range(0, n_train, bs):
                batch = x_train[perm[s : s + bs]]
                loss = -flow().log_prob(batch).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            train_nll = total / n_train + log_scale
            if not math.isfinite(train_nll):
                warnings.warn(
                    f"RealNVPDensity: the training NLL became {train_nll} at epoch {epoch}; "
                    f"stopped and kept the weights of epoch {best_epoch} (lower lr?).",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            history["train_nll"].append(train_nll)
            monitored = train_nll
            if n_val:
                flow.eval()
                with torch.no_grad():
                    val_nll = -float(flow().log_prob(x_val).mean()) + log_scale
                history["val_nll"].append(val_nll)
                monitored = val_nll
                bar.set_postfix(train_nll=f"{train_nll:.4f}", val_nll=f"{val_nll:.4f}")
            else:
                bar.set_postfix(train_nll=f"{train_nll:.4f}")
            if not n_val:  # no held-out data: keep the last epoch
                best_epoch, best_state = epoch, snapshot()
            elif monitored < best:
                best, best_epoch, best_state = monitored, epoch, snapshot()
            elif epoch - best_epoch >= self.patience:
                break
        bar.close()
        flow.load_state_dict(best_state)
        flow.eval()
        for p in flow.parameters():
            p.requires_grad_(False)

        self.flow_ = flow
        self.n_features_in_ = d
        self.mean_, self.scale_ = mean, scale
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.n_epochs_ = len(history["train_nll"])
        self._log_scale = log_scale
        self._tensor_cache = {}
        return self

    # ------------------------------------------------------------------ evaluation
    def _check_fitted(self):
        if not hasattr(self, "flow_"):
            raise NotFittedError(
                "This RealNVPDensity is not fitted yet; call fit(X) first or pass it to "
                "GenerativeDistance, which fits it on the training points."
            )

    def _params_like(self, torch, dtype, device):
        """mean_ and scale_ as tensors (cached per dtype and device)."""
        key = (str(device), dtype)
        if key not in self._tensor_cache:
            self._tensor_cache[key] = (
                torch.as_tensor(self.mean_, dtype=dtype, device=device),
                torch.as_tensor(self.scale_, dtype=dtype, device=device),
            )
        return self._tensor_cache[key]

    def _batches(self, X, name):
        """Validated float64 ``X`` and the flow's torch, dtype and device."""
        self._check_fitted()
        X = check_points(X, name, n_features=self.n_features_in_)
        torch, _, dtype, device = self._torch()
        return X, torch, dtype, device

    def log_prob_tensor(self, x):
        """Differentiable log-density of a torch tensor.

        Parameters
        ----------
        x : torch.Tensor of shape (n, n_features_in_)

        Returns
        -------
        log_p : torch.Tensor of shape (n,), in the dtype and on the device of ``x``
        """
        self._check_fitted()
        torch, _, dtype, device = self._torch()
        mean, scale = self._params_like(torch, dtype, device)
        with self._threads(torch):
            xs = (x.to(device=device, dtype=dtype) - mean) / scale
            out = self.flow_().log_prob(xs) - self._log_scale
        return out.to(device=x.device, dtype=x.dtype)

    def log_prob(self, X):
        """Natural log-density of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n, n_features_in_)

        Returns
        -------
        log_p : ndarray of shape (n,), float64
        """
        X, torch, dtype, device = self._batches(X, "X")
        mean, scale = self._params_like(torch, dtype, device)
        out = np.empty(X.shape[0])
        with torch.no_grad(), self._threads(torch):
            dist = self.flow_()
            for s in range(0, X.shape[0], self._BATCH):
                x = torch.as_tensor(X[s : s + self._BATCH], dtype=dtype, device=device)
                lp = dist.log_prob((x - mean) / scale)
                out[s : s + len(x)] = lp.to("cpu", torch.float64).numpy()
        return out - self._log_scale

    def score_samples(self, X):
        """Log-density of each row of ``X`` (scikit-learn's name for :meth:`log_prob`)."""
        return self.log_prob(X)

    def score(self, X, y=None):
        """Mean log-likelihood of ``X`` in nats per point (higher is better).

        Parameters
        ----------
        X : array-like of shape (n, n_features_in_)
        y : ignored

        Returns
        -------
        float
        """
        return float(np.mean(self.log_prob(X)))

    def to_latent(self, X):
        """Map data points to the flow's latent space (standard normal under the model).

        Parameters
        ----------
        X : array-like of shape (n, n_features_in_)

        Returns
        -------
        Z : ndarray of shape (n, n_features_in_), float64
        """
        X, torch, dtype, device = self._batches(X, "X")
        with torch.no_grad(), self._threads(torch):
            x = torch.as_tensor((X - self.mean_) / self.scale_, dtype=dtype, device=device)
            z = self.flow_().transform(x)
        return z.to("cpu", torch.float64).numpy()

    def from_latent(self, Z):
        """Map latent points back to data space (the inverse of :meth:`to_latent`).

        Parameters
        ----------
        Z : array-like of shape (n, n_features_in_)

        Returns
        -------
        X : ndarray of shape (n, n_features_in_), float64
        """
        Z, torch, dtype, device = self._batches(Z, "Z")
        with torch.no_grad(), self._threads(torch):
            z = torch.as_tensor(Z, dtype=dtype, device=device)
            x = self.flow_().transform.inv(z)
        return x.to("cpu", torch.float64).numpy() * self.scale_ + self.mean_

    def sample(self, n_samples, random_state=None):
        """Draw points from the flow: standard normal latents mapped to data space.

        Parameters
        ----------
        n_samples : int
        random_state : int, RandomState instance or None
            Seeds the latent draws (numpy), so the samples are reproducible.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_), float64
        """
        self._check_fitted()
        n_samples = check_int(n_samples, "n_samples")
        Z = check_random_state(random_state).standard_normal((n_samples, self.n_features_in_))
        return self.from_latent(Z)


_NUMPY_BACKEND = get_namespace(np.zeros(0))


def _is_torch_model(obj) -> bool:
    if "torch" not in sys.modules:
        return False
    torch = sys.modules["torch"]
    return isinstance(obj, (torch.nn.Module, torch.distributions.Distribution))


def _is_lazy_distribution(obj) -> bool:
    """An unconditional zuko flow module: calling it returns a torch distribution."""
    zuko_lazy = sys.modules.get("zuko.lazy")
    return zuko_lazy is not None and isinstance(obj, zuko_lazy.LazyDistribution)


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
    if _is_lazy_distribution(density):
        return TorchDensity(density)
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
