"""Adapters from what users pass as a density (a callable, a scikit-learn estimator, a torch
model or distribution) to the :class:`~gendist.densities.Density` protocol."""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Callable

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._compute import to_numpy
from ._base import Density
from ._mixture import GaussianMixtureDensity, is_gaussian_kernel_density

__all__ = ["CallableDensity", "SklearnDensity", "TorchDensity", "as_density"]


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
    estimator passed in is never modified by the adapter. Whether it is fitted is read from
    the estimator at every use, so one fitted after the adapter was made is used as it is.

    A fitted ``GaussianMixture`` (that class exactly, not a subclass, which may score
    differently) is evaluated through a :class:`~gendist.densities.GaussianMixtureDensity`
    copy of its parameters: the same log-density as ``score_samples`` to 1e-10 relative,
    faster, and differentiable by torch, so that geodesic refinement gets exact gradients
    instead of finite differences. (``BayesianGaussianMixture.score_samples`` is a
    variational expectation, not the density of its point estimates: it stays as it is.)
    So is a fitted ``KernelDensity`` (that class exactly) with the Gaussian kernel and the
    Euclidean metric, as the mixture of its training points: its kernel sum evaluated
    exactly, where ``score_samples`` approximates it by a tree traversal (see
    :meth:`GaussianMixtureDensity.from_sklearn`); other kernels stay on ``score_samples``
    (and refinement on finite differences).
    """

    def __init__(self, estimator):
        if not hasattr(estimator, "score_samples"):
            raise TypeError(f"{type(estimator).__name__} has no score_samples method.")
        self.estimator = estimator
        # KernelDensity samples with the Gaussian and tophat kernels only (else it raises
        # NotImplementedError): the other kernels get this package's clear TypeError
        samples = not isinstance(estimator, KernelDensity) or estimator.kernel in (
            "gaussian", "tophat")
        self.can_sample = hasattr(estimator, "sample") and samples
        self._mixture_of = self._mixture = None  # see _exact_mixture

    @property
    def requires_fit(self) -> bool:
        """True while the wrapped estimator is not fitted (scikit-learn's ``check_is_fitted``)."""
        return not _sklearn_is_fitted(self.estimator)

    def fit(self, X):
        if not self.requires_fit:
            return self
        return SklearnDensity(clone(self.estimator).fit(X))

    def _check_fitted(self):
        if self.requires_fit:
            raise NotFittedError(
                f"{type(self.estimator).__name__} is not fitted; fit it first or let "
                "GenerativeDistance.fit fit it on the training points."
            )

    def _exact_mixture(self):
        """The estimator's :class:`GaussianMixtureDensity` copy, or None for other models.

        Cached while the estimator holds the same fitted attributes (``fit`` assigns new
        ones); an array changed in place is not seen: refit, or wrap the estimator anew.
        Called on every model call, so it reads those attributes, not ``check_is_fitted``."""
        est = self.estimator
        if type(est) is GaussianMixture:
            names = ("weights_", "means_", "covariances_")
        elif type(est) is KernelDensity and is_gaussian_kernel_density(est):
            names = ("tree_", "bandwidth_")  # fit makes a new tree
        else:
            return None
        arrays = tuple(getattr(est, a, None) for a in names)
        if any(x is None for x in arrays):  # not fitted
            return None
        cached = getattr(self, "_mixture_of", None)  # absent from adapters pickled before
        if cached is None or any(x is not y for x, y in zip(cached, arrays)):
            self._mixture = GaussianMixtureDensity.from_sklearn(est)
            self._mixture_of = arrays
        return self._mixture

    @property
    def differentiable(self) -> bool:
        """True for a fitted ``GaussianMixture`` or Gaussian ``KernelDensity``."""
        return self._exact_mixture() is not None

    @property
    def has_score(self) -> bool:
        """True for a fitted ``GaussianMixture`` or Gaussian ``KernelDensity`` (their
        closed-form score)."""
        return self._exact_mixture() is not None

    def log_prob_tensor(self, x):
        mixture = self._exact_mixture()
        if mixture is None:
            self._check_fitted()
            return super().log_prob_tensor(x)
        return mixture.log_prob(x)

    def log_prob_and_score(self, X):
        mixture = self._exact_mixture()
        if mixture is None:
            self._check_fitted()
            return super().log_prob_and_score(X)
        return mixture.log_prob_and_score(X)

    def log_prob_on_segments(self, A, B, t):
        mixture = self._exact_mixture()
        if mixture is None:
            return super().log_prob_on_segments(A, B, t)
        return mixture.log_prob_on_segments(A, B, t)

    def log_prob(self, X):
        mixture = self._exact_mixture()
        if mixture is not None:
            return mixture.log_prob(X)
        self._check_fitted()
        return self.estimator.score_samples(X)

    def sample(self, n_samples, random_state=None):
        if not self.can_sample:
            return super().sample(n_samples, random_state)
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

    def _checked_distribution(self, n_features: int):
        """The distribution, after checking that its events are points of ``n_features``."""
        dist = self._distribution()
        shape = getattr(dist, "event_shape", None)
        if shape is not None and tuple(shape) != (n_features,):
            raise ValueError(
                f"the torch distribution's events have shape {tuple(shape)}, but the points "
                f"have {n_features} features, so its log_prob would not give one value per "
                f"point. Use a distribution over R^{n_features} (for independent coordinates, "
                "torch.distributions.Independent(distribution, 1))."
            )
        return dist

    def log_prob_tensor(self, x):
        dist = self._checked_distribution(x.shape[-1])
        out = dist.log_prob(x.to(device=self.device, dtype=self.dtype))
        return out.to(device=x.device, dtype=x.dtype)

    def log_prob(self, X):
        import torch

        with torch.no_grad():
            dist = self._checked_distribution(np.shape(X)[-1])
            x = torch.as_tensor(X, dtype=self.dtype, device=self.device)
            return to_numpy(dist.log_prob(x), np.float64)

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
        return to_numpy(out, np.float64)


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
        See :mod:`gendist.densities` for what each becomes.

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
