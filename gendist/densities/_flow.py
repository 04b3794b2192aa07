"""A RealNVP normalizing flow (zuko), fitted by maximum likelihood."""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from .._compute import iter_chunks, to_numpy
from .._optional import import_optional
from .._validation import check_int, check_points, check_positive
from ._base import Density

__all__ = ["RealNVPDensity"]


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


def _standardization(X: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``mean`` and ``scale`` of ``X`` (n, d), each (d,); a constant feature gets
    scale 1. Zeros and ones when ``standardize`` is False."""
    d = X.shape[1]
    if not standardize:
        return np.zeros(d), np.ones(d)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def _validation_split(n: int, frac: float, rng: np.random.RandomState):
    """Indices ``(train, validation)`` of a random split of ``n`` points.

    The validation part has ``round(frac * n)`` points, at least 1 and at most ``n - 1`` when
    ``frac > 0``, none when ``frac == 0``.
    """
    order = rng.permutation(n)
    n_val = min(max(int(round(frac * n)), 1), n - 1) if frac > 0 else 0
    return order[n_val:], order[:n_val]


def _train_epoch(flow, optimizer, x_train, batch_size: int, rng: np.random.RandomState) -> float:
    """One pass of ``optimizer`` over ``x_train`` (n, d) in shuffled minibatches.

    Returns
    -------
    float
        The mean negative log-likelihood of the minibatches (per point, standardised units).
    """
    import torch

    flow.train()
    n_train = x_train.shape[0]
    perm = torch.as_tensor(rng.permutation(n_train), device=x_train.device)
    total = 0.0
    for start in range(0, n_train, batch_size):
        batch = x_train[perm[start : start + batch_size]]
        loss = -flow().log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
    return total / n_train


def _mean_nll(flow, x) -> float:
    """Mean negative log-likelihood of ``x`` (n, d) under ``flow`` in evaluation mode."""
    import torch

    flow.eval()
    with torch.no_grad():
        return -float(flow().log_prob(x).mean())


class _EarlyStopping:
    """The best monitored NLL of a training run, its epoch and a copy of its weights.

    Parameters
    ----------
    module : torch.nn.Module
        The module being trained; its initial weights are the first copy.
    patience : int or None
        Stop after this many epochs without a lower NLL. None (no validation split) keeps
        the weights of the last epoch and never stops early.
    """

    def __init__(self, module, patience: int | None):
        self.module = module
        self.patience = patience
        self.best_nll = math.inf
        self.best_epoch = 0
        self.best_state = self._snapshot()

    def _snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def update(self, epoch: int, nll: float) -> bool:
        """Record the NLL of ``epoch``; True when training should stop."""
        if self.patience is None or nll < self.best_nll:
            self.best_nll, self.best_epoch, self.best_state = nll, epoch, self._snapshot()
            return False
        return epoch - self.best_epoch >= self.patience

    def restore_best(self) -> None:
        """Load the best weights into the module."""
        self.module.load_state_dict(self.best_state)


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
        CPU threads torch uses while :meth:`fit` trains the flow, with joblib's meaning
        (:func:`joblib.effective_n_jobs`): None means 1 (unless inside a
        :func:`joblib.parallel_config` context), by far the fastest for the small networks of
        low-dimensional flows, especially on a busy machine; -1 means every CPU core, -2 all
        but one, and so on. Set with ``torch.set_num_threads`` for the duration of
        :meth:`fit` and restored afterwards; evaluation leaves torch's thread setting alone.
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
    mean_, scale_ : ndarray of shape (``n_features_in_``,)
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
        if self.n_jobs is not None:
            if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, numbers.Integral):
                raise TypeError(f"n_jobs must be an integer or None, got {self.n_jobs!r}.")
            if self.n_jobs == 0:
                raise ValueError(
                    "n_jobs must be None or a nonzero integer (-1: every CPU core, -2: all but "
                    "one, ...), got 0."
                )
        return hidden, frac

    @contextlib.contextmanager
    def _training_threads(self, torch):
        """Run the block with ``effective_n_jobs(n_jobs)`` torch CPU threads, then restore."""
        before = torch.get_num_threads()
        torch.set_num_threads(effective_n_jobs(self.n_jobs))
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
        d = X.shape[1]
        if d < 2:
            raise ValueError(
                f"X has {d} feature; a RealNVP coupling layer splits the features in two, so "
                "it needs at least 2. Use a KernelDensity or GaussianMixture for 1-D data."
            )
        torch = self._torch()[0]
        with self._training_threads(torch):
            self._train(X, hidden, frac)
        return self

    def _build_flow(self, n_features: int, hidden: list[int], seed: int):
        """A freshly initialised RealNVP flow, its weights drawn from ``seed``."""
        torch, zuko, dtype, device = self._torch()
        activation = {
            "relu": torch.nn.ReLU,
            "elu": torch.nn.ELU,
            "silu": torch.nn.SiLU,
            "tanh": torch.nn.Tanh,
        }[self.activation]
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            flow = zuko.flows.RealNVP(
                n_features,
                transforms=self.n_transforms,
                hidden_features=hidden,
                activation=activation,
            )
        return flow.to(device=device, dtype=dtype)

    def _train(self, X: np.ndarray, hidden: list[int], frac: float) -> None:
        """Fit the flow on validated float64 ``X`` of shape (n, d) and set the fitted attributes.

        Standardise, split off the validation points, build the flow, then run epochs of Adam
        until ``epochs`` or early stopping, and keep the best weights. The random state is
        drawn from in a fixed order (initial weights, split, each epoch's minibatch order), so
        that one integer ``random_state`` gives one flow.
        """
        d = X.shape[1]
        torch, _, dtype, device = self._torch()
        rng = check_random_state(self.random_state)
        init_seed = int(rng.randint(2**31 - 1))
        mean, scale = _standardization(X, self.standardize)
        log_scale = float(np.log(scale).sum())
        train_idx, val_idx = _validation_split(X.shape[0], frac, rng)
        Xs = torch.as_tensor((X - mean) / scale, dtype=dtype, device=device)
        x_train, x_val = Xs[train_idx], Xs[val_idx]

        flow = self._build_flow(d, hidden, init_seed)
        optimizer = torch.optim.Adam(flow.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        stopping = _EarlyStopping(flow, self.patience if len(val_idx) else None)
        history = {"train_nll": [], "val_nll": []}
        bar = tqdm(range(self.epochs), desc="RealNVP", unit="epoch", disable=not self.verbose)
        for epoch in bar:
            train_nll = _train_epoch(flow, optimizer, x_train, self.batch_size, rng) + log_scale
            if not math.isfinite(train_nll):
                warnings.warn(
                    f"RealNVPDensity: the training NLL became {train_nll} at epoch {epoch}; "
                    f"stopped and kept the weights of epoch {stopping.best_epoch} (lower lr?).",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            history["train_nll"].append(train_nll)
            postfix = {"train_nll": f"{train_nll:.4f}"}
            monitored = train_nll
            if len(val_idx):
                val_nll = _mean_nll(flow, x_val) + log_scale
                history["val_nll"].append(val_nll)
                postfix["val_nll"] = f"{val_nll:.4f}"
                monitored = val_nll
            bar.set_postfix(postfix)
            if stopping.update(epoch, monitored):
                break
        bar.close()
        stopping.restore_best()
        flow.eval()
        for p in flow.parameters():
            p.requires_grad_(False)

        self.flow_ = flow
        self.n_features_in_ = d
        self.mean_, self.scale_ = mean, scale
        self.history_ = history
        self.best_epoch_ = stopping.best_epoch
        self.n_epochs_ = len(history["train_nll"])
        self._log_scale = log_scale
        self._tensor_cache = {}

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

    def _check_points(self, X, name: str) -> np.ndarray:
        """``X`` validated for the fitted flow, as float64 of shape (n, n_features_in_)."""
        self._check_fitted()
        return check_points(X, name, n_features=self.n_features_in_)

    def _row_bytes(self) -> int:
        """Memory one row needs in a pass of the flow without gradients, in bytes.

        The float64 input and output, and in the flow's dtype the row itself, a few
        feature-wide tensors of the coupling (shift, log-scale, the coupled features) and the
        output of every layer of every coupling network, twice (linear map and activation).
        """
        torch = self._torch()[0]
        itemsize = next(self.flow_.parameters()).element_size()
        d = self.n_features_in_
        layer_outputs = sum(
            m.out_features for m in self.flow_.modules() if isinstance(m, torch.nn.Linear)
        )
        return 2 * 8 * d + itemsize * (4 * d + 2 * layer_outputs)

    def _map_rows(self, A: np.ndarray, func) -> np.ndarray:
        """``func`` applied without gradients to row blocks of ``A``, back in float64 numpy.

        Parameters
        ----------
        A : ndarray of shape (n, ``n_features_in_``), float64
        func : callable
            Maps a tensor of shape (rows, ``n_features_in_``), in the flow's dtype and on its
            device, to a tensor of shape (rows,) or (rows, ``n_features_in_``).

        Returns
        -------
        ndarray of shape (n,) or (n, ``n_features_in_``), float64
            The blocks are sized by :func:`gendist._compute.chunk_rows`.
        """
        torch, _, dtype, device = self._torch()

        def block(start: int, stop: int) -> np.ndarray:
            x = torch.as_tensor(A[start:stop], dtype=dtype, device=device)
            return to_numpy(func(x), np.float64)

        with torch.no_grad():
            blocks = iter_chunks(block, A.shape[0], self._row_bytes(), device=device)
            return np.concatenate([out for _, _, out in blocks])

    def log_prob_tensor(self, x):
        """Differentiable log-density of a torch tensor.

        Parameters
        ----------
        x : torch.Tensor of shape (n, ``n_features_in_``)

        Returns
        -------
        log_p : torch.Tensor of shape (n,), in the dtype and on the device of ``x``
        """
        self._check_fitted()
        torch, _, dtype, device = self._torch()
        mean, scale = self._params_like(torch, dtype, device)
        xs = (x.to(device=device, dtype=dtype) - mean) / scale
        out = self.flow_().log_prob(xs) - self._log_scale
        return out.to(device=x.device, dtype=x.dtype)

    def log_prob(self, X):
        """Natural log-density of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n, ``n_features_in_``)

        Returns
        -------
        log_p : ndarray of shape (n,), float64
        """
        X = self._check_points(X, "X")
        torch, _, dtype, device = self._torch()
        mean, scale = self._params_like(torch, dtype, device)
        dist = self.flow_()
        return self._map_rows(X, lambda x: dist.log_prob((x - mean) / scale)) - self._log_scale

    def score_samples(self, X):
        """Log-density of each row of ``X`` (scikit-learn's name for :meth:`log_prob`)."""
        return self.log_prob(X)

    def score(self, X, y=None):
        """Mean log-likelihood of ``X`` in nats per point (higher is better).

        Parameters
        ----------
        X : array-like of shape (n, ``n_features_in_``)
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
        X : array-like of shape (n, ``n_features_in_``)

        Returns
        -------
        Z : ndarray of shape (n, ``n_features_in_``), float64
        """
        X = self._check_points(X, "X")
        return self._map_rows((X - self.mean_) / self.scale_, self.flow_().transform)

    def from_latent(self, Z):
        """Map latent points back to data space (the inverse of :meth:`to_latent`).

        Parameters
        ----------
        Z : array-like of shape (n, ``n_features_in_``)

        Returns
        -------
        X : ndarray of shape (n, ``n_features_in_``), float64
        """
        Z = self._check_points(Z, "Z")
        return self._map_rows(Z, self.flow_().transform.inv) * self.scale_ + self.mean_

    def sample(self, n_samples, random_state=None):
        """Draw points from the flow: standard normal latents mapped to data space.

        Parameters
        ----------
        n_samples : int
        random_state : int, RandomState instance or None
            Seeds the latent draws (numpy), so the samples are reproducible.

        Returns
        -------
        X : ndarray of shape (n_samples, ``n_features_in_``), float64
        """
        self._check_fitted()
        n_samples = check_int(n_samples, "n_samples")
        Z = check_random_state(random_state).standard_normal((n_samples, self.n_features_in_))
        return self.from_latent(Z)
