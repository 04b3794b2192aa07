"""A minimal numpy / torch array backend, in the spirit of POT's ``ot.backend``.

Code that must run on both numpy arrays and torch tensors (on any device) asks
:func:`get_backend` for the namespace matching its input and uses only the few operations
defined here, so that one implementation serves the CPU and the GPU.
"""

from __future__ import annotations

import numpy as np


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """``log(sum(exp(a), axis))`` for real arrays, stable, ``-inf`` for all ``-inf`` slices.

    About 2.5x faster than :func:`scipy.special.logsumexp`, whose generality (weights, signs,
    complex input, array-API dispatch) costs more than the arithmetic on the small trailing
    axes used here (quadrature nodes, mixture components).
    """
    m = a.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - m).sum(axis=axis)) + np.squeeze(m, axis)


class NumpyBackend:
    """Operations on numpy arrays."""

    name = "numpy"

    @staticmethod
    def asarray(a, like=None):
        dtype = None if like is None else like.dtype
        return np.asarray(a, dtype=dtype)

    @staticmethod
    def logsumexp(a, axis):
        return logsumexp(a, axis)

    @staticmethod
    def clip_min(a, minimum):
        return np.maximum(a, minimum)

    @staticmethod
    def sum(a, axis):
        return a.sum(axis=axis)

    @staticmethod
    def to_numpy(a):
        return np.asarray(a)


class TorchBackend:
    """Operations on torch tensors; tensors created from numpy follow the device of ``like``."""

    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def asarray(self, a, like=None):
        if like is None:
            return self.torch.as_tensor(a)
        return self.torch.as_tensor(a, dtype=like.dtype, device=like.device)

    def logsumexp(self, a, axis):
        return self.torch.logsumexp(a, dim=axis)

    def clip_min(self, a, minimum):
        return self.torch.clamp(a, min=minimum)

    @staticmethod
    def sum(a, axis):
        return a.sum(dim=axis)

    @staticmethod
    def to_numpy(a):
        return a.detach().cpu().numpy()


_NUMPY = NumpyBackend()


def is_torch_tensor(a) -> bool:
    """True when ``a`` is a torch tensor (without importing torch when it is not loaded)."""
    return type(a).__module__.startswith("torch") and hasattr(a, "device")


def get_backend(a):
    """Return the backend matching the type of ``a`` (numpy array or torch tensor)."""
    if is_torch_tensor(a):
        return TorchBackend()
    return _NUMPY
