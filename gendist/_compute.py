"""The compute layer: one array namespace over numpy and torch, one device rule, one chunk rule.

**Namespace** (after POT's ``ot.backend``). Code that must run on numpy arrays and on torch
tensors (on any device, with or without autograd) asks :func:`get_namespace` for the namespace
of its input and uses only the operations defined here, so that one implementation serves the
CPU, the GPU and gradients. :func:`to_numpy` is the one way back to numpy.

**Device rule.** ``device=None`` means numpy on the CPU, everywhere. A device (``"cpu"``,
``"cuda"``, ``"cuda:1"``, a ``torch.device``) means torch on that device, for every stage of
gendist's own arithmetic (graph search, quadrature, shortest paths); :func:`resolve_device`
checks it before any work. Models (densities, decoders) are evaluated on their own device, and
their inputs move there.

**Chunk rule.** :func:`chunk_rows` sizes every chunk from the memory one row needs:
scikit-learn's ``working_memory`` on the CPU (``sklearn.set_config(working_memory=MiB)``, as
scikit-learn's own chunked pairwise computations), half the free memory on CUDA.
:func:`iter_chunks` runs a function over such chunks and halves a chunk that runs out of
memory, then retries it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import numpy as np
from sklearn import get_config
from tqdm.auto import tqdm

__all__ = [
    "is_torch_tensor",
    "get_namespace",
    "to_numpy",
    "resolve_device",
    "chunk_rows",
    "iter_chunks",
    "default_memory_limit",
    "row_norms",
    "log_segment_norms",
    "segment_nodes",
]


#: arrays of at least this many float64 values take the compiled exp (``gendist._numba``);
#: smaller ones numpy's, whose call costs less than the compiled kernel's dispatch
_COMPILED_EXP_MIN = 512


def exp_in_place(a: np.ndarray) -> np.ndarray:
    """``a[...] = exp(a)`` for a real numpy array; returns ``a``.

    Large writeable C-contiguous float64 arrays with no value above 709 take the vectorised
    kernel of :mod:`gendist._numba` (4-5x numpy's scalar exp on AVX2 CPUs, within 1 ulp of
    it), which flushes results below exp(-708) = 3.3e-308 to zero (numpy's go on into the
    subnormals); the rest take :func:`numpy.exp`.
    """
    compiled = a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
    if compiled and a.size >= _COMPILED_EXP_MIN:
        from ._numba import EXP_MAX
        from ._numba import exp_in_place as compiled_exp  # numba is imported where it is used

        if not (a > EXP_MAX).any():
            compiled_exp(a.reshape(-1), np.empty(a.size))
            return a
    return np.exp(a, out=a)


def logsumexp(a: np.ndarray, axis: int, overwrite: bool = False) -> np.ndarray:
    """``log(sum(exp(a), axis))`` for real numpy arrays, stable, ``-inf`` for all ``-inf`` slices.

    About 2.5x faster than :func:`scipy.special.logsumexp`, whose generality (weights, signs,
    complex input, array-API dispatch) costs more than the arithmetic on the small trailing
    axes used here (quadrature nodes, mixture components). ``overwrite=True`` works in the
    memory of ``a`` (which it leaves changed), saving two temporaries of its size.
    """
    m = a.max(axis=axis, keepdims=True)
    if not np.isfinite(m).all():
        m = np.where(np.isfinite(m), m, 0.0)
    shifted = exp_in_place(np.subtract(a, m, out=a if overwrite else None))
    total = shifted.sum(axis=axis)
    with np.errstate(divide="ignore"):
        np.log(total, out=total)
    total += np.squeeze(m, axis)
    return total


#: softplus(z) = log(1 + exp(z)) equals z to float64 rounding above this
_SOFTPLUS_LINEAR = 40.0


def softplus(z) -> np.ndarray:
    """``log(1 + exp(z))`` elementwise for real numpy arrays, stable (``logaddexp(z, 0)``).

    ``max(z, log(1 + exp(min(z, 40))))`` in vectorised ``exp`` and ``log``: several times
    faster than :func:`numpy.logaddexp`, whose scalar ``log1p`` dominates. ``log(1 + y)`` is
    within 2.3e-16 (absolute) of ``log1p(y)``, and above ``z = 40`` softplus is ``z`` to
    rounding, so the result is within a few float64 roundings of ``numpy.logaddexp(z, 0)``;
    ``-inf`` gives 0, ``+inf`` and NaN propagate.
    """
    z = np.asarray(z, dtype=np.result_type(z, np.float64))
    y = np.minimum(z, _SOFTPLUS_LINEAR, out=np.empty_like(z))  # an array also for 0-d z
    exp_in_place(y)
    y += 1.0
    np.log(y, out=y)
    np.maximum(y, z, out=y)
    return y[()] if y.ndim == 0 else y


class _NumpyNamespace:
    """Operations on numpy arrays. ``overwrite=True`` lets an operation reuse (and change) the
    memory of its input; the torch namespace accepts it and never does, for autograd."""

    name = "numpy"

    @staticmethod
    def asarray(a, like=None, dtype=None):
        return np.asarray(a, dtype=dtype if dtype is not None else getattr(like, "dtype", None))

    @staticmethod
    def linspace(start, stop, num, like=None):
        return np.linspace(start, stop, num)

    @staticmethod
    def logsumexp(a, axis, overwrite=False):
        return logsumexp(a, axis, overwrite)

    @staticmethod
    def softplus(z):
        return softplus(z)

    @staticmethod
    def clip_min(a, minimum):
        return np.maximum(a, minimum)

    @staticmethod
    def clip_max(a, maximum):
        return np.minimum(a, maximum)

    @staticmethod
    def sum(a, axis):
        return a.sum(axis=axis)

    @staticmethod
    def square(a, overwrite=False):
        return np.multiply(a, a, out=a if overwrite else None)

    @staticmethod
    def sqrt(a):
        return np.sqrt(a)

    @staticmethod
    def log(a):
        with np.errstate(divide="ignore"):
            return np.log(a)

    @staticmethod
    def exp(a):
        a = np.asarray(a)
        return exp_in_place(np.array(a, dtype=np.result_type(a.dtype, np.float32)))

    @staticmethod
    def concatenate(parts, axis=0):
        return np.concatenate(parts, axis=axis)

    @staticmethod
    def stack(parts, axis=0):
        return np.stack(parts, axis=axis)

    @staticmethod
    def isfinite(a):
        return np.isfinite(a)


class _TorchNamespace:
    """Operations on torch tensors; tensors made from numpy follow the device of ``like``."""

    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def asarray(self, a, like=None, dtype=None):
        if like is None:
            return self.torch.as_tensor(a, dtype=dtype)
        return self.torch.as_tensor(
            a, dtype=dtype if dtype is not None else like.dtype, device=like.device
        )

    def linspace(self, start, stop, num, like=None):
        kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
        return self.torch.linspace(start, stop, num, **kw)

    def logsumexp(self, a, axis, overwrite=False):
        return self.torch.logsumexp(a, dim=axis)

    def softplus(self, z):  # not torch's softplus, which is linear from z = 20 on (error 2e-9)
        return self.torch.logaddexp(z, self.torch.zeros((), dtype=z.dtype, device=z.device))

    def clip_min(self, a, minimum):
        return self.torch.clamp(a, min=minimum)

    def clip_max(self, a, maximum):
        return self.torch.minimum(a, self.torch.as_tensor(maximum, dtype=a.dtype, device=a.device))

    @staticmethod
    def sum(a, axis):
        return a.sum(dim=axis)

    @staticmethod
    def square(a, overwrite=False):
        return a * a  # never in place: autograd may need a

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def log(self, a):
        return self.torch.log(a)

    def exp(self, a):
        return self.torch.exp(a)

    def concatenate(self, parts, axis=0):
        return self.torch.cat(list(parts), dim=axis)

    def stack(self, parts, axis=0):
        return self.torch.stack(list(parts), dim=axis)

    def isfinite(self, a):
        return self.torch.isfinite(a)


_NUMPY = _NumpyNamespace()
_TORCH: list = []  # the torch namespace, made on first use (importing torch is slow)


def is_torch_tensor(a) -> bool:
    """True when ``a`` is a torch tensor (without importing torch when it is not loaded)."""
    return "torch" in sys.modules and isinstance(a, sys.modules["torch"].Tensor)


def get_namespace(*arrays):
    """The namespace of the inputs: torch when any is a torch tensor, else numpy.

    Returns
    -------
    namespace
        A cached instance with ``name`` ``"numpy"`` or ``"torch"`` and the operations above.
    """
    if any(is_torch_tensor(a) for a in arrays):
        if not _TORCH:
            _TORCH.append(_TorchNamespace())
        return _TORCH[0]
    return _NUMPY


#: squared norms outside [_SAFE_SQUARES, 1 / _SAFE_SQUARES] are recomputed with scaling
_SAFE_SQUARES = 1e-280


def row_norms(delta, floor: float = 0.0):
    """Euclidean norm of every row of ``delta`` (numpy array or torch tensor), scale-safe.

    ``sqrt(sum(delta**2))`` under- or overflows when the entries are below about 1e-154 or
    above 1e154; rows whose squares leave the safe range are recomputed as
    ``s * sqrt(sum((delta / s)**2))`` with ``s`` their largest absolute entry, so lengths are
    right at any scale float64 holds. Rows in the usual range keep the plain formula.

    Parameters
    ----------
    delta : array of shape (E, d)
    floor : float
        Added under the square root (a positive floor keeps gradients finite at zero rows).

    Returns
    -------
    norms : array of shape (E,)
    """
    xp = get_namespace(delta)
    if xp.name == "numpy":
        squares = np.einsum("ij,ij->i", delta, delta)
        norms = np.sqrt(squares + floor) if floor else np.sqrt(squares)
        with np.errstate(invalid="ignore"):  # NaN squares are risky
            safe = (squares >= _SAFE_SQUARES) & (squares <= 1 / _SAFE_SQUARES)
        if safe.all():
            return norms
        risky = np.flatnonzero(~safe)
        risky = risky[(delta[risky] != 0).any(1)]  # zero rows are exact
        if risky.size:
            part = delta[risky]
            scale = np.abs(part).max(axis=1)
            scaled = part / scale[:, None]
            norms[risky] = scale * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        return norms
    squares = (delta * delta).sum(1)
    norms = xp.sqrt(squares + floor)
    risky = (squares > 1 / _SAFE_SQUARES) | ~xp.isfinite(squares)
    risky = risky | ((squares < _SAFE_SQUARES) & (delta != 0).any(1))
    if not bool(risky.any()):
        return norms
    torch = sys.modules["torch"]
    scale = torch.where(risky, delta.abs().amax(dim=1), torch.ones_like(squares))
    scaled = delta / scale[:, None]
    return torch.where(risky, scale * torch.sqrt((scaled * scaled).sum(1)), norms)


def log_segment_norms(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``log |B[e] - A[e]|`` of numpy float64 segment ends (E, d), -inf for zero length.

    One compiled pass for the squares and a vectorised log (numpy's difference, squares,
    square root and log: 3x the time in 2-D, 2.4x in 10-D); rows whose squares leave the
    safe range take :func:`row_norms`' scaled formula, so any scale float64 holds is right.
    """
    from ._numba import log_in_place, squared_distances  # numba is imported where it is used

    squares = np.empty(len(A))
    squared_distances(A, B, squares)
    with np.errstate(invalid="ignore"):  # NaN, and 0, which may be an underflow: risky
        risky = np.flatnonzero(~((squares >= _SAFE_SQUARES) & (squares <= 1 / _SAFE_SQUARES)))
    log_in_place(squares, np.empty(len(A)), np.empty(len(A)))
    squares *= 0.5
    if risky.size:
        with np.errstate(divide="ignore"):
            squares[risky] = np.log(row_norms(B[risky] - A[risky]))
    return squares


def segment_nodes(A, B, t, delta=None, node_major: bool = False):
    """Points ``A + t_k (B - A)`` along every segment: shape (E, len(t), d), or (len(t), E, d).

    Parameters
    ----------
    A, B : array of shape (E, d)
        Segment ends (numpy arrays or torch tensors).
    t : array of shape (k,)
        Positions along the segments, in [0, 1].
    delta : array of shape (E, d), optional
        ``B - A`` when it is known already.
    node_major : bool
        Give shape (k, E, d): the k-th nodes of all segments together, so that sums over the
        nodes of a segment run along contiguous rows.
    """
    delta = B - A if delta is None else delta
    if node_major:  # as (k, E * d): long inner loops, where broadcasting over d is slow
        E, d = A.shape
        flat = t[:, None] * delta.reshape(1, E * d)
        flat += A.reshape(1, E * d)  # in place: a fresh array, which autograd does not keep
        return flat.reshape(len(t), E, d)
    return A[:, None, :] + t[None, :, None] * delta[:, None, :]


def to_numpy(a, dtype=None) -> np.ndarray:
    """``a`` as a numpy array (a torch tensor is detached and brought to the CPU first).

    Parameters
    ----------
    a : array-like or torch.Tensor
    dtype : numpy dtype, optional

    Returns
    -------
    ndarray
    """
    if is_torch_tensor(a):
        a = a.detach().cpu()
        if a.dtype == sys.modules["torch"].bfloat16:  # numpy has no bfloat16
            a = a.float()
        a = a.numpy()
    return np.asarray(a, dtype=dtype)


def resolve_device(device):
    """Check a ``device`` argument before any work: None (numpy on the CPU) or a torch device.

    Parameters
    ----------
    device : None, str or torch.device

    Returns
    -------
    device : None or torch.device

    Raises
    ------
    ImportError
        If a device is asked for and torch is not installed.
    ValueError
        If the device is not one torch knows, or a CUDA device is asked for that torch does
        not see.
    """
    if device is None:
        return None
    from ._optional import import_optional

    torch = import_optional("torch")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be None (numpy on the CPU), 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        ) from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} was asked for, but torch sees no CUDA device "
                "(torch.cuda.is_available() is False: no GPU, no driver, or a CPU build of "
                "torch). Use device=None or device='cpu'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r}: torch sees {torch.cuda.device_count()} CUDA device(s)."
            )
    return device


def _is_cuda(device) -> bool:
    return device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda"


def chunk_rows(
    row_bytes: int, *, device=None, max_rows: int | None = None, budget: int | None = None
) -> int:
    """How many rows of ``row_bytes`` bytes each to hold at once (at least 1).

    On the CPU (``device`` None or a CPU device) the budget is scikit-learn's
    ``working_memory`` (MiB, :func:`sklearn.get_config`; 1024 unless set), as in
    scikit-learn's chunked pairwise computations; on a CUDA device, half of its free memory.

    Parameters
    ----------
    row_bytes : int
        Memory one row needs, temporaries included.
    device : None, str or torch.device
    max_rows : int, optional
        Never more rows than this.
    budget : int, optional
        Bytes to use instead of the rule above (a caller's own memory budget).

    Returns
    -------
    int
    """
    row_bytes = max(1, int(row_bytes))
    if budget is not None:
        rows = max(1, int(budget) // row_bytes)
    elif _is_cuda(device):
        import torch

        rows = max(1, torch.cuda.mem_get_info(device)[0] // 2 // row_bytes)
    else:
        rows = max(1, int(get_config()["working_memory"] * 2**20) // row_bytes)
    return int(rows if max_rows is None else max(1, min(rows, max_rows)))


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def iter_chunks(
    func: Callable[[int, int], object],
    n_rows: int,
    row_bytes: int,
    *,
    device=None,
    max_rows: int | None = None,
    budget: int | None = None,
) -> Iterator[tuple[int, int, object]]:
    """``(start, stop, func(start, stop))`` over ``[0, n_rows)`` in chunks of :func:`chunk_rows`.

    A chunk that runs out of memory (``MemoryError``, ``torch.cuda.OutOfMemoryError``) is
    halved and retried; only a single row that does not fit raises.
    """
    step = chunk_rows(row_bytes, device=device, max_rows=max_rows, budget=budget)
    start = 0
    while start < n_rows:
        stop = min(n_rows, start + step)
        try:
            result = func(start, stop)
        except Exception as exc:
            if not _is_out_of_memory(exc) or step == 1:
                raise
            step = max(1, step // 2)
            if _is_cuda(device):
                sys.modules["torch"].cuda.empty_cache()
            continue
        yield start, stop, result
        start = stop


def default_memory_limit() -> int:
    """Half of the physical memory, in bytes (8 GiB when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


#: Seconds a stage runs before its progress bar appears when ``progress`` is None.
PROGRESS_DELAY = 5.0


def progress_bar(iterable=None, *, total=None, desc: str, progress: bool | None = None, **kw):
    """A tqdm progress bar: always shown (``progress=True``), never (False), or, with None
    (the estimators' default ``verbose=None``), only once the stage has run
    :data:`PROGRESS_DELAY` seconds, so that long work shows progress and short work stays
    quiet."""
    delay = PROGRESS_DELAY if progress is None else 0.0
    return tqdm(
        iterable, total=total, desc=desc, disable=progress is False, delay=delay, leave=False, **kw
    )
