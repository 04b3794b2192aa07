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

:class:`PullbackMetric` computes these lengths (batched, chunked, on the decoder's device),
the metric tensor and the magnification factor ``sqrt(det G(z))``; :class:`LatentDistance`
puts them on the graph and shortest-path engine of gendist: a kNN graph on latent codes,
all-pairs through the normal backends, A* for single pairs and curve optimisation
(:func:`gendist.refine.refine_path`) for continuous geodesics.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._optional import import_optional
from ._validation import check_int, check_points
from .graph import build_edges, component_report, symmetric_csr
from .paths import Geodesic, astar_shortest_path, shortest_paths

__all__ = ["PullbackMetric", "LatentDistance", "magnification_factor"]


def _is_torch_module(decoder) -> bool:
    return type(decoder).__module__.startswith("torch") or any(
        cls.__module__.startswith("torch.nn") for cls in type(decoder).__mro__
    )


class PullbackMetric:
    """The pullback of the Euclidean metric through a decoder.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        Maps latent codes of shape (m, q) to decoded points of shape (m, D), or to a tuple
        ``(mean, std)`` of two such arrays (a stochastic decoder). A torch module is called on
        tensors of its own device and dtype, without gradients except where they are asked
        for; any other callable is called on float64 numpy arrays.
    n_quad : int, default=8
        Nodes of the decoded polyline along each latent segment (>= 2), endpoints included.
    batch_size : int, default=8192
        Latent points per decoder call.
    """

    def __init__(self, decoder, n_quad: int = 8, batch_size: int = 8192):
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {type(decoder).__name__}.")
        self.decoder = decoder
        self.n_quad = check_int(n_quad, "n_quad", minimum=2)
        self.batch_size = check_int(batch_size, "batch_size")
        self.differentiable = _is_torch_module(decoder)
        self._decoder64 = None

    # ------------------------------------------------------------------ decoding
    def _param(self):
        return next(iter(self.decoder.parameters()), None)

    @staticmethod
    def _joint(out, torch=None):
        """Decoded points as rows (m, D): image-shaped outputs are flattened, and ``(mean,
        std)`` is concatenated along the features."""
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
                parts.append(out.detach().cpu().double().numpy())
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
    def _nodes(self, A, B):
        t = np.linspace(0.0, 1.0, self.n_quad)
        return A[:, None, :] + t[None, :, None] * (B - A)[:, None, :]

    def log_segment_lengths(self, A, B) -> np.ndarray:
        """Log-length of the latent segments ``A[e] -> B[e]`` (decoded polylines).

        Parameters
        ----------
        A, B : ndarray of shape (E, q)

        Returns
        -------
        log_length : ndarray of shape (E,); -inf for zero-length segments
        """
        A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
        E, q = A.shape
        if E == 0:
            return np.empty(0)
        F = self.decode(self._nodes(A, B).reshape(-1, q)).reshape(E, self.n_quad, -1)
        lengths = np.linalg.norm(np.diff(F, axis=1), axis=2).sum(axis=1)
        lengths[np.all(A == B, axis=1)] = 0.0
        with np.errstate(divide="ignore"):
            return np.log(lengths)

    def edge_log_weights(self, Z, rows, cols, progress: bool = False) -> np.ndarray:
        """Log-lengths of the edges ``Z[rows[e]] -> Z[cols[e]]``, in chunks of about
        ``batch_size`` decoded points.

        Returns
        -------
        log_weight : ndarray of shape (E,)
        """
        step = max(1, self.batch_size // self.n_quad)
        out = np.empty(len(rows))
        for s in tqdm(range(0, len(rows), step), desc="edge weights", disable=not progress):
            r, c = rows[s : s + step], cols[s : s + step]
            out[s : s + len(r)] = self.log_segment_lengths(Z[r], Z[c])
        return out

    def curve_length(self, points) -> float:
        """Length of a latent polyline under the metric."""
        P = np.asarray(points, dtype=np.float64)
        return float(np.exp(self.log_segment_lengths(P[:-1], P[1:])).sum())

    def _float64_decoder(self):
        """A float64 copy of a torch decoder (for gradients and Jacobians), made once."""
        if self._decoder64 is None:
            self._decoder64 = copy.deepcopy(self.decoder).double().eval()
            for p in self._decoder64.parameters():
                p.requires_grad_(False)
        return self._decoder64

    def curve_length_tensor(self, P):
        """Differentiable length of a latent polyline given as a float64 torch tensor (m, q)."""
        torch = import_optional("torch")
        decoder = self._float64_decoder()
        ref = next(iter(decoder.parameters()), None)
        device = P.device if ref is None else ref.device
        t = torch.linspace(0.0, 1.0, self.n_quad, dtype=torch.float64, device=device)
        P = P.to(device)
        A, delta = P[:-1], P[1:] - P[:-1]
        nodes = A[:, None, :] + t[None, :, None] * delta[:, None, :]
        F = self._joint(decoder(nodes.reshape(-1, P.shape[1])), torch)
        F = F.reshape(len(A), self.n_quad, -1)
        steps = F[:, 1:] - F[:, :-1]
        # |step| with a floor, so that coincident points have a finite gradient
        return torch.sqrt((steps * steps).sum(-1) + 1e-300).sum().cpu()

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
            parts = [
                jac(torch.as_tensor(Z[s : s + 256], dtype=torch.float64, device=device))
                .cpu()
                .numpy()
                for s in range(0, m, 256)
            ]
            return np.concatenate(parts) if parts else np.empty((0, 0, q))
        h = step * np.maximum(1.0, np.abs(Z))  # (m, q)
        columns = []
        for j in range(q):
            E = np.zeros_like(Z)
            E[:, j] = h[:, j]
            columns.append((self.decode(Z + E) - self.decode(Z - E)) / (2 * h[:, [j]]))
        return np.stack(columns, axis=2)

    def metric_tensor(self, Z) -> np.ndarray:
        """``G(z) = J(z)^T J(z)``, shape (m, q, q)."""
        J = self.jacobian(Z)
        return np.einsum("mdi,mdj->mij", J, J)

    def log_magnification_factor(self, Z) -> np.ndarray:
        """``log sqrt(det G(z))``, shape (m,); -inf where G is singular."""
        sign, logdet = np.linalg.slogdet(self.metric_tensor(Z))
        return np.where(sign > 0, 0.5 * logdet, -np.inf)


def magnification_factor(decoder, Z) -> np.ndarray:
    """The magnification factor ``sqrt(det J(z)^T J(z))`` of a decoder at latent points.

    It is the factor by which the decoder scales latent area (volume) near ``z``: large where
    the decoded images change fast, which is where latent straight lines are long.

    Parameters
    ----------
    decoder : torch.nn.Module, callable or PullbackMetric
    Z : array-like of shape (m, q)

    Returns
    -------
    mf : ndarray of shape (m,)
    """
    metric = decoder if isinstance(decoder, PullbackMetric) else PullbackMetric(decoder)
    return np.exp(metric.log_magnification_factor(check_points(Z, "Z")))


class LatentDistance(TransformerMixin, BaseEstimator):
    """Pullback (decoder-induced) geodesic distances between latent codes.

    ``fit(Z)`` joins every code to its nearest neighbours in latent space and weights each
    edge by the length of its decoded image (:class:`PullbackMetric`); distances are shortest
    paths on that graph, single pairs come from A* and geodesics can be optimised as curves.

    Parameters
    ----------
    decoder : torch.nn.Module or callable
        Latent codes (m, q) -> decoded points (m, D), or ``(mean, std)``.
    n_neighbors : int, default=10
        Neighbours of each code in the (symmetrised) kNN graph.
    n_quad : int, default=8
        Decoded nodes per edge.
    batch_size : int, default=8192
        Latent points per decoder call.
    backend : str, default="auto"
        Shortest-path backend (see :mod:`gendist.paths`).
    n_jobs : int, default=None
        Workers for many-source shortest paths.
    verbose : bool, default=False
        Progress bars.

    Attributes
    ----------
    metric_ : PullbackMetric
    graph_ : scipy.sparse.csr_matrix of shape (m, m)
    min_length_factor_ : float
        The smallest edge weight per unit latent length: ``min_length_factor_ * |z_u - z_v|``
        is a lower bound on the graph distance of u and v, the A* heuristic.
    n_components_, component_labels_
    """

    def __init__(
        self,
        decoder,
        *,
        n_neighbors=10,
        n_quad=8,
        batch_size=8192,
        backend="auto",
        n_jobs=None,
        verbose=False,
    ):
        self.decoder = decoder
        self.n_neighbors = n_neighbors
        self.n_quad = n_quad
        self.batch_size = batch_size
        self.backend = backend
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, Z, y=None):
        """Build the latent kNN graph and its pullback edge weights.

        Parameters
        ----------
        Z : array-like of shape (m, q)
            Latent codes (e.g. posterior means of an encoder).
        """
        Z = check_points(Z, "Z", min_samples=2)
        k = check_int(self.n_neighbors, "n_neighbors")
        self.metric_ = PullbackMetric(self.decoder, self.n_quad, self.batch_size)
        self.Z_ = Z
        self.n_features_in_ = Z.shape[1]
        self.nn_ = NearestNeighbors().fit(Z)
        rows, cols, lengths = build_edges(Z, None, min(k, len(Z) - 1), nn=self.nn_)
        log_w = self.metric_.edge_log_weights(Z, rows, cols, progress=bool(self.verbose))
        weights = np.exp(log_w)
        self.graph_ = symmetric_csr(len(Z), rows, cols, weights)
        positive = lengths > 0
        self.min_length_factor_ = (
            float(np.min(weights[positive] / lengths[positive])) if positive.any() else 0.0
        )
        self.n_components_, self.component_labels_ = component_report(self.graph_)
        return self

    def distances(self, sources=None, limit=np.inf):
        """Graph distances from ``sources`` (default: all codes) to every code.

        Returns
        -------
        D : ndarray of shape (len(sources), m)
        """
        check_is_fitted(self, "graph_")
        m = self.graph_.shape[0]
        sources = np.arange(m) if sources is None else np.asarray(sources, dtype=np.int64)
        return shortest_paths(
            self.graph_,
            sources,
            limit=limit,
            backend=self.backend,
            n_jobs=self.n_jobs,
            progress=bool(self.verbose),
        )

    def fit_transform(self, Z, y=None):
        """Fit, then return all pairwise pullback distances among the codes, (m, m)."""
        return self.fit(Z).distances()

    def transform(self, Z):
        """Distances from new codes to every fitted code: each new code joins the graph
        through straight pullback segments to its ``n_neighbors`` nearest fitted codes.

        Returns
        -------
        D : ndarray of shape (len(Z), m)
        """
        check_is_fitted(self, "graph_")
        Z = check_points(Z, "Z", n_features=self.n_features_in_)
        k = min(check_int(self.n_neighbors, "n_neighbors"), len(self.Z_))
        _, idx = self.nn_.kneighbors(Z, k)
        q, G = len(Z), self.graph_
        m = G.shape[0]
        joins = np.exp(
            self.metric_.log_segment_lengths(np.repeat(Z, k, axis=0), self.Z_[idx.ravel()])
        )
        # the new codes as vertices m, m + 1, ... with out-edges only: sources, never passed
        graph = sparse.csr_matrix(
            (
                np.concatenate([G.data, joins]),
                np.concatenate([G.indices, idx.ravel()]).astype(np.int64),
                np.concatenate([G.indptr, G.indptr[-1] + k * np.arange(1, q + 1)]).astype(np.int64),
            ),
            shape=(m + q, m + q),
        )
        return shortest_paths(
            graph,
            np.arange(m, m + q),
            columns=np.arange(m),
            backend=self.backend,
            n_jobs=self.n_jobs,
        )

    def _check_vertex(self, i, name):
        m = self.graph_.shape[0]
        if not (np.issubdtype(type(i), np.integer) and 0 <= i < m):
            raise IndexError(f"{name} must be a code index in [0, {m}), got {i!r}.")
        return int(i)

    def _heuristic(self, target: int) -> np.ndarray:
        return self.min_length_factor_ * np.linalg.norm(self.Z_ - self.Z_[target], axis=1)

    def distance(self, a: int, b: int) -> float:
        """Pullback graph distance between codes ``a`` and ``b`` (indices), by A*."""
        check_is_fitted(self, "graph_")
        a, b = self._check_vertex(a, "a"), self._check_vertex(b, "b")
        return astar_shortest_path(self.graph_, a, b, self._heuristic(b))[0]

    def geodesic(self, a: int, b: int, refine=False) -> Geodesic:
        """The geodesic between codes ``a`` and ``b``: the A* graph path, optionally
        optimised as a continuous curve.

        Parameters
        ----------
        a, b : int
            Code indices.
        refine : bool or dict, default=False
            Optimise the curve's length under the pullback metric with
            :func:`gendist.refine.refine_path` (endpoints fixed, initialised from the graph
            path); a dict passes its options (``n_points``, ``n_rounds``, ``method``, ...).
            The result is never longer than the graph path.

        Returns
        -------
        Geodesic
            ``points`` in latent space, ``indices`` (-1 for points off the graph after
            refinement), ``length``.
        """
        check_is_fitted(self, "graph_")
        a, b = self._check_vertex(a, "a"), self._check_vertex(b, "b")
        length, path = astar_shortest_path(self.graph_, a, b, self._heuristic(b))
        if path is None:
            raise ValueError(f"codes {a} and {b} are in different components of the graph.")
        points = self.Z_[path]
        if not refine or len(path) < 2:
            return Geodesic(points, path, length)
        from .refine import refine_path

        options = refine if isinstance(refine, dict) else {}
        refined, refined_length = refine_path(self.metric_, points, **options)
        if refined is points or np.array_equal(refined, points):  # not shortened
            return Geodesic(points, path, length)
        indices = np.full(len(refined), -1, dtype=np.int64)
        indices[[0, -1]] = a, b
        return Geodesic(refined, indices, refined_length)
