"""A RealNVP normalizing flow (zuko), fitted by maximum likelihood."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
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
        A : ndarray of shape (n, n_features_in_), float64
        func : callable
            Maps a tensor of shape (rows, n_features_in_), in the flow's dtype and on its
            device, to a tensor of shape (rows,) or (rows, n_features_in_).

        Returns
        -------
        ndarray of shape (n,) or (n, n_features_in_), float64
            The blocks are sized by :func:`gendist._compute.chunk_rows`.
        """
        torch, _, dtype, device = self._torch()

        def block(start: int, stop: int) -> np.ndarray:
            x = torch.as_tensor(A[start:stop], dtype=dtype, device=device)
            return to_numpy(func(x), np.float64)

        with torch.no_grad(), self._threads(torch):
            blocks = iter_chunks(block, A.shape[0], self._row_bytes(), device=device)
            return np.concatenate([out for _, _, out in blocks])

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
        X = self._check_points(X, "X")
        return self._map_rows((X - self.mean_) / self.scale_, self.flow_().transform)

    def from_latent(self, Z):
        """Map latent points back to data space (the inverse of :meth:`to_latent`).

        Parameters
        ----------
        Z : array-like of shape (n, n_features_in_)

        Returns
        -------
        X : ndarray of shape (n, n_features_in_), float64
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
        X : ndarray of shape (n_samples, n_features_in_), float64
        """
        self._check_fitted()
        n_samples = check_int(n_samples, "n_samples")
        Z = check_random_state(random_state).standard_normal((n_samples, self.n_features_in_))
        return self.from_latent(Z)
