"""Latent pullback geometry: distances and geodesics in a generative model's latent space.

A decoder ``f: R^q -> R^D`` pulls the Euclidean metric of data space back to its latent space,
``G(z) = J(z)^T J(z)`` with ``J`` the Jacobian of ``f`` (Chen et al., "Metrics for Deep
Generative Models", AISTATS 2018; Arvanitidis et al., "Latent Space Oddity", ICLR 2018): the
length of a latent curve is the length of its decoded image. A latent segment ``a -> b`` costs

    L(a, b) = sum_t |f(z_{t+1}) - f(z_t)|,   z_t = a + t (b - a) / (n_quad - 1),

the length of the decoded polyline through ``n_quad`` equispaced nodes, which converges to the
decoded curve's arc length like ``1 / n_quad**2``. When the decoder returns a mean and a standard
deviation ``(mu, sigma)``, the curve is measured in the joint embedding ``z -> (mu(z),
sigma(z))``, whose pullback is the expected metric ``J_mu^T J_mu + J_sigma^T J_sigma`` of a
stochastic Gaussian decoder (Arvanitidis et al.).

Metric smoothing (Chen et al. 2018, Sec. 3, eq. 15-17): with ``J = U diag(s) V^T`` the thin
SVD of the Jacobian, the smoothed Jacobian keeps the ``r`` largest singular values and damps
the small ones,

    J_hat = U_r diag(s_i**3 / (s_i**2 + lam_s)) V_r^T,

i.e. Tikhonov filter factors ``s_i**2 / (s_i**2 + lam_s)`` on the singular values
(:func:`smoothed_jacobian`). A decoded polyline has no Jacobian to smooth, so with
``smoothing`` set a segment costs the integral of ``|J_hat(z(t)) z'(t)|`` instead
(trapezoidal rule on the same ``n_quad`` nodes, one Jacobian per node); the metric tensor
``J_hat^T J_hat``, the magnification factor and the velocity :meth:`PullbackMetric.velocity`
use ``J_hat`` too. ``smoothing={"lam": 0}`` is that Jacobian quadrature unsmoothed.

:class:`PullbackMetric` computes these lengths (batched, chunked, on the decoder's device),
the metric tensor, the magnification factor ``sqrt(det G(z))`` and the velocity
``|J(z(t)) z'(t)|`` along a curve; :class:`LatentDistance`
puts them on the graph and shortest-path engine of gendist: a kNN graph on latent codes,
all-pairs through the normal backends, a bidirectional search from the A* bound for single
pairs and curve optimisation
(:func:`gendist.refine.refine_path`) for continuous geodesics.
"""

from __future__ import annotations

import copy

import numpy as np

from ._compute import chunk_rows, get_namespace, row_norms, segment_nodes, to_numpy
from ._engine import GraphDistanceBase
from ._optional import import_optional
from ._validation import check_int, check_points, check_positive
from .interop import NEIGHBORS_CONSTRAINT, DistanceFeaturesOutMixin, check_neighbors
from .metric import SegmentMetric, trapezoid_log_weights

__all__ = [
    "PullbackMetric",
    "LatentDistance",
    "magnification_factor",
    "smoothed_jacobian",
]


def _is_torch_module(decoder) -> bool:
    return type(decoder).__module__.startswith("torch") or any(
        cls.__module__.startswith("torch.nn") for cls in type(decoder).__mro__
    )


#: keys (or attributes) holding the decoded points in other libraries' decoder outputs:
#: pythae's ``ModelOutput(reconstruction=...)``, diffusers' ``DecoderOutput(sample=...)``
_OUTPUT_KEYS = ("reconstruction", "sample")


def decoder_output(out):
    """The decoded points in what a decoder returned.

    Arrays, tensors and ``(mean, std)`` tuples are returned as they are. A dict-like output
    (pythae's ``ModelOutput``, an ``OrderedDict``; diffusers' ``BaseOutput``) gives its
    ``"reconstruction"`` or else its ``"sample"`` item, an object with such an attribute
    gives that attribute, and a 1-tuple (diffusers with ``return_dict=False``) its item. The
    tensor itself is returned, not a copy, so autograd follows it.
    """
    if isinstance(out, tuple) and len(out) == 1:
        return out[0]
    if hasattr(out, "shape") or isinstance(out, (tuple, list)):
        return out
    if hasattr(out, "keys") and hasattr(out, "__getitem__"):
        for key in _OUTPUT_KEYS:
            if key in out.keys():
                return out[key]
        raise ValueError(
            f"the decoder returned a {type(out).__name__} with keys {list(out.keys())}; "
            f"expected one of {list(_OUTPUT_KEYS)} holding the decoded points."
        )
    for key in _OUTPUT_KEYS:
        if hasattr(out, key):
            return getattr(out, key)
    return out


def check_smoothing(smoothing):
    """Validate a ``smoothing`` option: None, or a dict with keys ``rank`` and ``lam``.

    Parameters
    ----------
    smoothing : None or dict
        ``rank``: singular values kept, an int >= 1 or None (all; the default); ``lam``: the
        damping ``lam_s >= 0`` in units of squared singular values (default 0).

    Returns
    -------
    None or tuple of (int or None, float)
        ``(rank, lam)``.
    """
    if smoothing is None:
        return None
    if not isinstance(smoothing, dict):
        raise TypeError(
            f"smoothing must be None or a dict(rank=..., lam=...), got {type(smoothing).__name__}."
        )
    unknown = sorted(set(smoothing) - {"rank", "lam"})
    if unknown:
        raise ValueError(f"smoothing has unknown keys {unknown}; expected 'rank' and 'lam'.")
    rank = smoothing.get("rank")
    rank = None if rank is None else check_int(rank, "smoothing['rank']")
    lam = check_positive(smoothing.get("lam", 0.0), "smoothing['lam']", allow_zero=True)
    return rank, lam


def _kept_rank(rank, q: int) -> int:
    if rank is None:
        return q
    if rank > q:
        raise ValueError(f"smoothing['rank']={rank} exceeds the latent dimension q={q}.")
    return rank


def smoothed_jacobian(J, rank=None, lam=0.0) -> np.ndarray:
    """The smoothed Jacobian ``U_r diag(s_i**3 / (s_i**2 + lam)) V_r^T`` (Chen et al. 2018).

    ``J = U diag(s) V^T`` is the thin SVD (singular values in decreasing order); the ``r``
    largest are kept and each is multiplied by the filter factor ``s_i**2 / (s_i**2 + lam)``,
    which leaves large singular values almost unchanged and damps those below ``sqrt(lam)``.
    ``rank=None, lam=0`` gives ``J`` back.

    Parameters
    ----------
    J : array-like of shape (D, q) or (m, D, q)
        Jacobians (decoded features by latent dimensions).
    rank : int, optional
        Singular values kept, ``1 <= rank <= min(D, q)``; default all.
    lam : float, default=0.0
        Damping ``lam_s >= 0``, in units of squared singular values (the units of ``G``).

    Returns
    -------
    J_hat : ndarray of the shape of ``J``
    """
    J = np.asarray(J, dtype=np.float64)
    if J.ndim not in (2, 3):
        raise ValueError(f"J must have shape (D, q) or (m, D, q), got {J.shape}.")
    rank, lam = check_smoothing({"rank": rank, "lam": lam})
    r = _kept_rank(rank, min(J.shape[-2:]))
    U, s, Vt = np.linalg.svd(J, full_matrices=False)
    U, s, Vt = U[..., :r], s[..., :r], Vt[..., :r, :]
    denominator = s**2 + lam
    factor = np.divide(s**3, denominator, out=np.zeros_like(s), where=denominator > 0)
    return np.einsum("...dr,...r,...rq->...dq", U, factor, Vt)


def _filtered_speeds(J, V, rank, lam, floor: float = 0.0):
    """``|J_hat(z) v|`` for every row, from ``J`` and ``G = J^T J`` (no SVD of ``J``).

    ``J_hat v = J w`` with ``w = V_r diag(mu / (mu + lam)) V_r^T v``, ``mu`` and ``V_r`` the
    ``r`` largest eigenvalues and eigenvectors of ``G`` (``mu = s**2``). With all ranks kept
    and ``lam > 0`` that is ``w = (G + lam I)^-1 G v`` (a solve, whose gradients stay finite
    where eigenvalues coincide); with ``lam = 0`` it is ``v``.

    Parameters
    ----------
    J : array of shape (m, D, q)
        numpy array or torch tensor.
    V : array of shape (m, q)
        Latent velocities.
    rank : int or None
    lam : float
    floor : float
        Added under the square root of the norm (keeps gradients finite at zero).

    Returns
    -------
    speeds : array of shape (m,)
    """
    xp = get_namespace(J, V)
    lib = xp.torch if xp.name == "torch" else np
    q = J.shape[-1]
    r = _kept_rank(rank, q)
    if r == q and lam == 0:
        W = V
    else:
        G = lib.einsum("mdi,mdj->mij", J, J)
        if r == q:
            eye = lib.eye(q, dtype=G.dtype, **({"device": G.device} if xp.name == "torch" else {}))
            rhs = lib.einsum("mij,mj->mi", G, V)[..., None]
            W = lib.linalg.solve(G + lam * eye, rhs)[..., 0]
        else:
            mu, E = lib.linalg.eigh(G)  # ascending
            mu, E = mu[..., q - r :], E[..., q - r :]
            mu = xp.clip_min(mu, 0.0)
            factor = mu / xp.clip_min(mu + lam, 1e-300)
            coeff = lib.einsum("mqr,mq->mr", E, V) * factor
            W = lib.einsum("mqr,mr->mq", E, coeff)
    return row_norms(lib.einsum("mdq,mq->md", J, W), floor)


class PullbackMetric(SegmentMetric):
    """The pullback of the Euclidean metric through a decoder.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        Maps latent codes of shape (m, q) to decoded points of shape (m, D), or to a tuple
        ``(mean, std)`` of two such arrays (a stochastic decoder), or to another library's
        output object holding them (pythae's ``ModelOutput`` with ``reconstruction``,
        diffusers' ``DecoderOutput`` with ``sample``; see :func:`decoder_output`). A torch
        module is called on tensors of its own device and dtype, without gradients except
        where they are asked for; any other callable is called on float64 numpy arrays.
    n_quad : int, default=8
        Nodes of the decoded polyline along each latent segment (>= 2), endpoints included.
    shortcuts : bool or "auto", default="auto"
        Straight segments from each source to every code, as in
        :class:`gendist.GenerativeDistance` (:mod:`gendist.shortcuts`).
    batch_size : int, default=8192
        Latent points per decoder call.
    chunk_bytes : int, optional
        Memory budget of the decoded nodes held at once (default: the chunk rule of
        :mod:`gendist._compute`).
    smoothing : None or dict, default=None
        None: segments cost the length of their decoded polyline, and the metric tensor is
        ``J^T J``. ``dict(rank=r, lam=lam_s)`` (either key optional; defaults all ranks and
        0): the smoothed Jacobian ``J_hat = U_r diag(s_i**3 / (s_i**2 + lam_s)) V_r^T``
        (:func:`smoothed_jacobian`) replaces ``J`` everywhere: a segment ``a -> b`` costs
        ``sum_k w_k |J_hat(z_k) (b - a)|`` (trapezoidal weights ``w_k`` on the ``n_quad``
        nodes ``z_k``; one Jacobian per node), and :meth:`metric_tensor`,
        :meth:`log_magnification_factor` and :meth:`velocity` use ``J_hat``. ``lam_s`` is in
        units of squared singular values (those of ``G``: squared data units per squared
        latent unit). ``{"lam": 0}`` is the unsmoothed Jacobian quadrature.
    """

    def __init__(
        self, decoder, n_quad: int = 8, batch_size: int = 8192, chunk_bytes=None, smoothing=None
    ):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        self.decoder = decoder
        self.n_quad = check_int(n_quad, "n_quad", minimum=2)
        self.batch_size = check_int(batch_size, "batch_size")
        self.chunk_bytes = chunk_bytes
        self.smoothing = smoothing
        self._smoothing = check_smoothing(smoothing)
        self._decoder64 = None

    def with_nodes(self, n_quad: int) -> PullbackMetric:
        """The same metric with ``n_quad`` decoded nodes per segment."""
        return PullbackMetric(
            self.decoder, n_quad, self.batch_size, self.chunk_bytes, self.smoothing
        )

    @property
    def differentiable(self) -> bool:
        """Whether lengths can be differentiated by autograd (a torch decoder)."""
        return _is_torch_module(self.decoder)

    # ------------------------------------------------------------------ decoding
    def _param(self):
        return next(iter(self.decoder.parameters()), None)

    @staticmethod
    def _joint(out, torch=None):
        """Decoded points as rows (m, D): image-shaped outputs are flattened, and ``(mean,
        std)`` is concatenated along the features. The output objects of other libraries'
        decoders are unwrapped first (:func:`decoder_output`), so gradients pass through."""
        out = decoder_output(out)
        if isinstance(out, tuple):
            if len(out) != 2:
                raise ValueError(f"a decoder tuple must be (mean, std), got {len(out)} items.")
        parts = out if isinstance(out, tuple) else (out,)
        parts = parts if torch is not None else [np.asarray(p) for p in parts]
        if any(p.ndim < 2 for p in parts):
            shapes = [tuple(p.shape) for p in parts]
            raise ValueError(
                f"the decoder must return arrays of shape (m, D) or (m, ...) for m latent "
                f"points; got shape {shapes[0] if len(shapes) == 1 else shapes}."
            )
        if torch is not None:
            return torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1)
        return np.hstack([p.reshape(len(p), -1) for p in parts])

    def decode(self, Z) -> np.ndarray:
        """Decoded points (with the std appended for a stochastic decoder), float64.

        Parameters
        ----------
        Z : ndarray of shape (m, q)

        Returns
        -------
        F : ndarray of shape (m, D) or (m, 2 D)
        """
        Z = np.asarray(Z, dtype=np.float64)
        parts = []
        for s in range(0, len(Z), self.batch_size):
            batch = Z[s : s + self.batch_size]
            if self.differentiable:
                torch = import_optional("torch")
                ref = self._param()
                kw = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
                with torch.no_grad():
                    out = self._joint(self.decoder(torch.as_tensor(batch, **kw)), torch)
                parts.append(to_numpy(out, np.float64))
            else:
                out = self.decoder(batch)
                parts.append(np.asarray(self._joint(out), dtype=np.float64))
        F = np.concatenate(parts) if parts else np.empty((0, 0))
        if F.ndim != 2 or len(F) != len(Z):
            raise ValueError(
                f"the decoder must return an array of shape ({len(Z)}, D); got {F.shape}."
            )
        if not np.all(np.isfinite(F)):
            raise ValueError("the decoder returned NaN or inf.")
        return F

    # ------------------------------------------------------------------ lengths
    def _decode_tensor(self, Z):
        """Decoded points of a torch tensor of codes, as a tensor of ``Z``'s dtype and device.

        With gradients asked for, through a float64 copy of the decoder; without, through
        the decoder itself on its own device and dtype (the numbers of :meth:`decode`)."""
        torch = import_optional("torch")
        if Z.requires_grad and torch.is_grad_enabled():
            decoder = self._float64_decoder()
            ref = next(iter(decoder.parameters()), None)
            device = Z.device if ref is None else ref.device
            F = self._joint(decoder(Z.to(device)), torch)
            return F.to(device=Z.device, dtype=Z.dtype)
        ref = self._param()
        kw = {"device": Z.device, "dtype": Z.dtype} if ref is None else {
            "device": ref.device,
            "dtype": ref.dtype,
        }
        parts = []
        with torch.no_grad():
            for s in range(0, len(Z), self.batch_size):
                out = self.decoder(Z[s : s + self.batch_size].to(**kw))
                parts.append(self._joint(out, torch).to(device=Z.device, dtype=Z.dtype))
        F = torch.cat(parts) if parts else Z.new_empty((0, 0))
        if not bool(torch.isfinite(F).all()):
            raise ValueError("the decoder returned NaN or inf.")
        return F

    def _segment_log_lengths(self, A, B, values_A=None, values_B=None):
        """Log-lengths of latent segments: the decoded polylines through ``n_quad`` nodes
        (with ``smoothing``: the trapezoidal rule on ``|J_hat(z) (b - a)|``)."""
        if self._smoothing is not None:
            return self._jacobian_segment_log_lengths(A, B)
        xp = get_namespace(A, B)
        E, q = A.shape
        if E == 0:
            return A[:, 0] * 0.0
        nodes = segment_nodes(A, B, xp.linspace(0.0, 1.0, self.n_quad, like=A))
        flat = nodes.reshape(-1, q)
        F = self.decode(flat) if xp.name == "numpy" else self._decode_tensor(flat)
        F = F.reshape(E, self.n_quad, -1)
        steps = F[:, 1:] - F[:, :-1]
        grad = xp.name == "torch" and (A.requires_grad or B.requires_grad)
        lengths = row_norms(steps.reshape(-1, steps.shape[-1]), 1e-300 if grad else 0.0)
        lengths = xp.sum(lengths.reshape(E, self.n_quad - 1), axis=1)
        if not grad:  # zero-length segments: exactly zero, also where decoding is not exact
            same = (A == B).all(1) if xp.name == "torch" else np.all(A == B, axis=1)
            lengths = lengths * (~same)
        return xp.log(lengths)

    def _jacobian_segment_log_lengths(self, A, B):
        """``log sum_k w_k |J_hat(z_k) (b - a)|`` over the ``n_quad`` nodes of each segment."""
        xp = get_namespace(A, B)
        E, q = A.shape
        if E == 0:
            return A[:, 0] * 0.0
        nodes = segment_nodes(A, B, xp.linspace(0.0, 1.0, self.n_quad, like=A))
        delta = (B - A)[:, None, :]
        grad = xp.name == "torch" and (A.requires_grad or B.requires_grad)
        if xp.name == "numpy":
            J = self.jacobian(nodes.reshape(-1, q))
            V = np.broadcast_to(delta, nodes.shape).reshape(-1, q)
        else:
            J = self._jacobian_tensor(nodes.reshape(-1, q))
            V = delta.expand(nodes.shape).reshape(-1, q)
        rank, lam = self._smoothing
        speeds = _filtered_speeds(J, V, rank, lam, 1e-300 if grad else 0.0)
        weights = xp.exp(xp.asarray(trapezoid_log_weights(self.n_quad), like=A))
        lengths = xp.sum(speeds.reshape(E, self.n_quad) * weights[None], axis=1)
        with np.errstate(divide="ignore"):
            return xp.log(lengths)

    def _jacobian_tensor(self, Z):
        """Jacobians (m, D, q) of a torch decoder at a tensor of codes, in ``Z``'s dtype and
        device; differentiable with respect to ``Z`` when it requires gradients."""
        torch = import_optional("torch")
        decoder = self._float64_decoder()
        ref = next(iter(decoder.parameters()), None)
        device = Z.device if ref is None else ref.device

        def single(z):
            return self._joint(decoder(z[None]), torch)[0]

        jac = torch.func.vmap(torch.func.jacfwd(single))
        m, q = Z.shape
        Z64 = Z.to(device=device, dtype=torch.float64)
        D = self._joint(decoder(Z64[:1]), torch).shape[1] if m else 0
        step = chunk_rows(4 * max(D, 1) * q * 8, device=device, max_rows=self.batch_size)
        with torch.set_grad_enabled(Z.requires_grad and torch.is_grad_enabled()):
            parts = [jac(Z64[s : s + step]) for s in range(0, m, step)]
        J = torch.cat(parts) if parts else Z64.new_empty((0, D, q))
        if not bool(torch.isfinite(J).all()):
            raise ValueError("the decoder's Jacobian has NaN or inf entries.")
        return J.to(device=Z.device, dtype=Z.dtype)

    def _float64_decoder(self):
        """A float64 copy of a torch decoder (for gradients and Jacobians), made once."""
        if self._decoder64 is None:
            self._decoder64 = copy.deepcopy(self.decoder).double().eval()
            for p in self._decoder64.parameters():
                p.requires_grad_(False)
        return self._decoder64

    # ------------------------------------------------------------------ metric tensor
    def jacobian(self, Z, step: float = 1e-5) -> np.ndarray:
        """Jacobians ``J(z)`` of the (joint) decoder, shape (m, D, q), float64.

        Forward-mode autograd (``torch.func.jacfwd`` under ``vmap``) for torch decoders; central
        differences with a relative step ``step`` otherwise.
        """
        Z = np.asarray(Z, dtype=np.float64)
        m, q = Z.shape
        if self.differentiable:
            torch = import_optional("torch")
            decoder = self._float64_decoder()
            ref = next(iter(decoder.parameters()), None)
            device = ref.device if ref is not None else "cpu"

            def single(z):
                return self._joint(decoder(z[None]), torch)[0]

            # forward mode: q Jacobian-vector products (q is small), not D reverse passes
            jac = torch.func.vmap(torch.func.jacfwd(single))
            D = self.decode(Z[:1]).shape[1]
            step = chunk_rows(4 * D * q * 8, device=device, max_rows=self.batch_size)
            parts = [
                to_numpy(jac(torch.as_tensor(Z[s : s + step], dtype=torch.float64, device=device)))
                for s in range(0, m, step)
            ]
            return np.concatenate(parts) if parts else np.empty((0, 0, q))
        h = step * np.maximum(1.0, np.abs(Z))  # (m, q)
        columns = []
        for j in range(q):
            E = np.zeros_like(Z)
            E[:, j] = h[:, j]
            columns.append((self.decode(Z + E) - self.decode(Z - E)) / (2 * h[:, [j]]))
        return np.stack(columns, axis=2)

    def smoothed_jacobian(self, Z) -> np.ndarray:
        """The Jacobians in use, shape (m, D, q): ``J(z)``, or ``J_hat(z)`` with ``smoothing``.

        Parameters
        ----------
        Z : array-like of shape (m, q)
        """
        J = self.jacobian(Z)
        if self._smoothing is None:
            return J
        rank, lam = self._smoothing
        _kept_rank(rank, J.shape[2])
        return smoothed_jacobian(J, rank, lam)

    def metric_tensor(self, Z) -> np.ndarray:
        """``G(z) = J(z)^T J(z)`` (with ``smoothing``: ``J_hat^T J_hat``), shape (m, q, q)."""
        J = self.smoothed_jacobian(Z)
        return np.einsum("mdi,mdj->mij", J, J)

    def log_magnification_factor(self, Z) -> np.ndarray:
        """``log sqrt(det G(z))``, shape (m,); -inf where G is singular.

        With ``smoothing`` it is ``sum_i log(s_i**3 / (s_i**2 + lam_s))`` over the kept
        singular values, and -inf everywhere when ``rank < q`` (the smoothed metric has rank
        ``r``: it measures no area)."""
        if self._smoothing is not None:
            J = self.jacobian(Z)
            rank, lam = self._smoothing
            q = J.shape[2]
            if _kept_rank(rank, q) < q or J.shape[1] < q:
                return np.full(len(J), -np.inf)
            s = np.linalg.svd(J, compute_uv=False)
            with np.errstate(divide="ignore"):
                return np.sum(3 * np.log(s) - np.log(s**2 + lam), axis=1)
        sign, logdet = np.linalg.slogdet(self.metric_tensor(Z))
        return np.where(sign > 0, 0.5 * logdet, -np.inf)

    def velocity(self, points, n_per_segment: int = 4, parametrization: str = "index"):
        """The velocity ``phi(t) = |J(z(t)) z'(t)|`` along a latent polyline (Chen et al.).

        ``phi`` is the speed of the decoded curve in data space; its integral over ``t`` is
        the curve's length under the Jacobian metric. With ``smoothing``, ``J_hat`` replaces
        ``J``. ``phi`` is sampled at the midpoints of ``n_per_segment`` equal pieces of every
        segment, never at a vertex (where ``z'`` jumps), so ``mean(phi)`` is the midpoint
        rule for the length.

        Parameters
        ----------
        points : array-like of shape (k, q)
            The polyline (``k >= 2``), e.g. a geodesic's ``points`` or ``np.linspace(z0, z1,
            k)``.
        n_per_segment : int, default=4
            Samples per segment.
        parametrization : {"index", "length"}, default="index"
            ``"index"``: point ``i`` at ``t = i / (k - 1)``, each segment traversed at
            constant latent speed ``(k - 1) |z_{i+1} - z_i|`` (evenly spaced points give a
            constant latent speed: linear interpolation). ``"length"``: each segment's span
            of ``t`` is in proportion to its (midpoint-rule) length under the metric, the
            constant-speed parametrization of a geodesic; ``phi`` then varies only within
            segments, around the curve's length.

        Returns
        -------
        t : ndarray of shape ((k - 1) * n_per_segment,)
            Curve parameter in [0, 1], increasing.
        phi : ndarray of shape ((k - 1) * n_per_segment,)
            Speed in data units per unit of ``t``.
        """
        P = check_points(points, "points", min_samples=2)
        m = check_int(n_per_segment, "n_per_segment")
        if parametrization not in ("index", "length"):
            raise ValueError(
                f"parametrization must be 'index' or 'length', got {parametrization!r}."
            )
        k, q = P.shape
        u = (np.arange(m) + 0.5) / m
        nodes = segment_nodes(P[:-1], P[1:], u).reshape(-1, q)
        velocity = np.repeat((P[1:] - P[:-1]) * (k - 1), m, axis=0)
        J = self.jacobian(nodes)
        rank, lam = self._smoothing if self._smoothing is not None else (None, 0.0)
        phi = _filtered_speeds(J, velocity, rank, lam).reshape(k - 1, m)
        start = np.arange(k - 1) / (k - 1)
        span = np.full(k - 1, 1.0 / (k - 1))
        if parametrization == "length":
            lengths = phi.mean(1) * span  # segment lengths (midpoint rule)
            total = lengths.sum()
            if total > 0:
                new_span = lengths / total
                # where a segment has zero length it keeps zero span (and phi = 0 there)
                rescale = np.divide(span, new_span, out=np.zeros_like(span), where=new_span > 0)
                phi = phi * rescale[:, None]
                span = new_span
                start = np.concatenate([[0.0], np.cumsum(span)[:-1]])
        t = start[:, None] + span[:, None] * u[None]
        return t.ravel(), phi.ravel()


def magnification_factor(decoder, Z, smoothing=None) -> np.ndarray:
    """The magnification factor ``sqrt(det J(z)^T J(z))`` of a decoder at latent points.

    It is the factor by which the decoder scales latent area (volume) near ``z``: large where
    the decoded images change fast, which is where latent straight lines are long.

    Parameters
    ----------
    decoder : torch.nn.Module, callable or PullbackMetric
        A :class:`PullbackMetric` is used as it is (with its own ``smoothing``).
    Z : array-like of shape (m, q)
    smoothing : None or dict, default=None
        As in :class:`PullbackMetric`: the factor of the smoothed metric ``J_hat^T J_hat``,
        ``prod_i s_i**3 / (s_i**2 + lam_s)`` (0 when ``rank < q``).

    Returns
    -------
    mf : ndarray of shape (m,)
    """
    if isinstance(decoder, PullbackMetric):
        metric = decoder
    else:
        metric = PullbackMetric(decoder, smoothing=smoothing)
    return np.exp(metric.log_magnification_factor(check_points(Z, "Z")))


class LatentDistance(DistanceFeaturesOutMixin, GraphDistanceBase):
    """Pullback (decoder-induced) geodesic distances between latent codes.

    ``fit(Z)`` joins every code to its nearest neighbours in latent space and weights each
    edge by the length of its decoded image (:class:`PullbackMetric`); distances are shortest
    paths on that graph, single pairs come from a bidirectional search started from the A*
    bound ``min_length_factor_ * |z_a - z_b|``, and geodesics can be optimised as curves. It
    shares every query with :class:`gendist.GenerativeDistance` (``transform``,
    ``distances``, ``kneighbors``, ``distance``, ``geodesic``; codes or new points).

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        Latent codes (m, q) -> decoded points (m, D), or ``(mean, std)``.
    n_neighbors : int, default=10
        Neighbours of each code in the (symmetrised) kNN graph.
    radius : float or "auto", default=None
        Join codes closer than ``radius`` as well (adaptive epsilon-graph with
        ``n_neighbors``), or alone with ``n_neighbors=None``.
    neighbors : transformer or sparse matrix, default=None
        Bring your own neighbours (as in :class:`gendist.GenerativeDistance`): a
        ``KNeighborsTransformer``-style object fitted on the codes, or a sparse (m, m) graph in
        scikit-learn's precomputed convention; its pairs become the edges, with exact decoded
        lengths. ``radius`` must be None; ``n_neighbors`` is then only the k by which new
        codes join the graph (exact search). An approximate graph changes the geodesics.
    n_quad : int, default=8
        Decoded nodes per edge.
    shortcuts : bool or "auto", default="auto"
        Straight segments from each source to every code (:mod:`gendist.shortcuts`).
    refine : bool, "auto" or dict, default="auto"
        Refine the curves behind the distances by default, as in
        :class:`gendist.GenerativeDistance` (``refine_``).
    smoothing : None or dict, default=None
        Metric smoothing of Chen et al. (2018): ``dict(rank=r, lam=lam_s)`` measures every
        segment with the smoothed Jacobian ``U_r diag(s_i**3 / (s_i**2 + lam_s)) V_r^T``
        (trapezoidal rule on ``n_quad`` nodes, one Jacobian per node) instead of the
        decoded polyline; see :class:`PullbackMetric`. Edge weights, distances, geodesics,
        refinement and :meth:`velocity` all use it.
    batch_size : int, default=8192
        Latent points per decoder call.
    backend : {"auto", "scipy", "torch", "cugraph"}, default="auto"
        Shortest-path backend (see :mod:`gendist.paths`).
    n_jobs : int, default=None
        Workers for many-source shortest paths, the edge-weight chunks and the refinement of
        large batches of pairs (joblib semantics).
    dtype : {"float64", "float32"}, default="float64"
        Dtype of returned distance matrices.
    memory_limit : int, default=None
        Bytes allowed for a distance matrix or the graph (default: half the physical memory).
    device : str or torch.device, default=None
        None: numpy on the CPU. A torch device: the graph search, the edge weights (codes
        decoded as tensors; the decoder runs on its own device) and the ``"torch"``
        shortest-path backend there; needs a torch decoder.
    verbose : bool or None, default=None
        Progress bars: None shows one only for a stage that runs longer than 5 s (the
        graph's edge weights, the shortest paths, refinement); True always; False never.

    Attributes
    ----------
    metric_ : PullbackMetric
    vertices_ : ndarray of shape (m, q)
        The codes (a copy).
    graph_ : scipy.sparse.csr_matrix of shape (m, m)
    min_length_factor_ : float
        The smallest edge weight per unit latent length: ``min_length_factor_ * |z_u - z_v|``
        is a lower bound on the graph distance of u and v, the A* bound.
    n_components_, component_labels_
    radius_ : float or None
        The radius in use.
    log_distance_unit_, quadrature_error_, shortcuts_, graph_stretch_, shortcut_cost_,
    shortcuts_off_data_, refine_gain_, refine_seconds_, refine_, refine_nearest_, device_
        As in :class:`gendist.GenerativeDistance`.
    """

    _parameter_constraints: dict = {
        **GraphDistanceBase._parameter_constraints,
        "decoder": [callable],
        "neighbors": NEIGHBORS_CONSTRAINT,
        "smoothing": [None, dict],
    }

    def __init__(
        self,
        decoder,
        *,
        n_neighbors=10,
        radius=None,
        neighbors=None,
        n_quad=8,
        shortcuts="auto",
        refine="auto",
        smoothing=None,
        batch_size=8192,
        backend="auto",
        n_jobs=None,
        dtype="float64",
        memory_limit=None,
        device=None,
        verbose=None,
    ):
        self.decoder = decoder
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.neighbors = neighbors
        self.n_quad = n_quad
        self.shortcuts = shortcuts
        self.refine = refine
        self.smoothing = smoothing
        self.batch_size = batch_size
        self.backend = backend
        self.n_jobs = n_jobs
        self.dtype = dtype
        self.memory_limit = memory_limit
        self.device = device
        self.verbose = verbose

    def _check_params(self):
        check_neighbors(self)
        check_smoothing(self.smoothing)

    def _metric(self) -> PullbackMetric:
        return PullbackMetric(self.decoder, self.n_quad, self.batch_size, smoothing=self.smoothing)

    def _prepare(self, Z):
        """The codes are the vertices; the metric is the decoder's pullback."""
        if self.smoothing is not None:
            _kept_rank(check_smoothing(self.smoothing)[0], Z.shape[1])
        return Z, 0, self._metric(), None

    def velocity(self, points, n_per_segment: int = 4, parametrization: str = "index"):
        """The velocity ``phi(t) = |J(z(t)) z'(t)|`` along a latent polyline.

        :meth:`PullbackMetric.velocity` of this estimator's metric (its ``smoothing``
        included); it needs no fit.

        Parameters
        ----------
        points : array-like of shape (k, q) or Geodesic
            The polyline, e.g. ``self.geodesic(a, b).points``.
        n_per_segment : int, default=4
        parametrization : {"index", "length"}, default="index"

        Returns
        -------
        t : ndarray of shape ((k - 1) * n_per_segment,)
        phi : ndarray of shape ((k - 1) * n_per_segment,)
        """
        self._check_all_params()
        points = getattr(points, "points", points)
        return self._metric().velocity(points, n_per_segment, parametrization)
