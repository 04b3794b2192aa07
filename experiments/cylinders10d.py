"""Shortcuts on two coaxial noisy cylinders (curved 2-D manifolds) in 10-D, under a fitted and
under the true density.

Two coaxial cylinders (a circle of radius ``radii[k]`` times an axial interval of length
``width``, points uniform on each surface, half the points on each) span a random 3-D
subspace of R^10 (random rotation); isotropic Gaussian noise of std ``noise`` blurs every
axis. Two densities define the metric: a GaussianMixture fitted on the points (full
covariances, as :class:`gendist.GaussianMixtureDensity`) and the true density of the draw,
in closed form (:class:`CoaxialCylinders`: a Bessel function across each circle, normal
CDFs along the axis, a Gaussian in the other seven axes). For each seed and density the
generative distances come with ``shortcuts=False`` (graph paths only) and with shortcuts
(``"auto"``, and ``True`` where auto leaves them off); the intrinsic truth is the geodesic
distance on each noise-free cylinder, ``sqrt((R dphi)^2 + dv^2)`` (pairs on different
cylinders infinitely far):

(a) NMI against the cylinder labels of spectral clustering on ``exp(-d^2 / tau)``,
    ``tau = c * median(d^2)``;
(b) t-SNE neighbourhood agreement: mean fraction of each point's ``k_agree`` nearest in the
    embedding that are among its ``k_agree`` nearest by the intrinsic distance, and the
    fraction of each point's ``k_agree`` nearest by the distance itself that lie on the
    other cylinder ("cross neighbours");
(c) Spearman correlation with the intrinsic distance over same-cylinder pairs, and the median
    ratio of the distance to an independent reference under the same metric: the length of
    an actual curve (straight up to the noise-free cylinder, along it on the unrolled
    straight line, straight down; or the straight segment when that is shorter), measured
    by this module's own quadrature on ``n_reference_pairs`` random same-cylinder pairs. The
    reference is an upper bound on the true generative distance, so a ratio above 1 is a
    lower bound on how much too long a distance is.

Euclidean distances are a reference row throughout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import i0e, log_ndtr
from scipy.stats import ortho_group, spearmanr
from sklearn.metrics import pairwise_distances
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from gendist.densities import GaussianMixtureDensity
from gendist.embed import tsne_embedding

from ._common import finish, markdown_table, new_figure
from .curved10d import neighbour_agreement, spectral_nmi, timed_distances

DEFAULTS = {
    "n_samples": 600,  # points in all, half on each cylinder
    "seeds": [0, 1, 2],  # one draw (points, rotation, noise) and mixture fit per seed
    "radii": [1.0, 1.6],  # radii of the two coaxial cylinders
    "width": 1.5,  # axial length of both cylinders
    "noise": 0.03,  # standard deviation of the isotropic noise, every axis
    "densities": ["mixture", "truth"],  # fitted GaussianMixture, closed-form true density
    "n_components": 16,  # GaussianMixture components (full covariances)
    "n_neighbors": None,  # None: the default graph (10-NN joined into one component)
    "radius": None,
    "lam": "quantile:0.1",
    "beta": 1.0,
    "n_quad": 8,
    "relative_taus": [0.01, 0.1, 1.0],  # tau / median(d^2) of spectral clustering
    "perplexity": 30.0,
    "k_agree": 10,  # neighbours compared in the t-SNE agreement and the cross neighbours
    "n_reference_pairs": 4000,  # same-cylinder pairs measured against the reference curve
    "reference_nodes": 129,  # trapezoidal nodes per piece of a reference curve
}

QUICK = {
    "n_samples": 200,
    "seeds": [0],
    "radii": [1.0, 2.0],
    "width": 1.0,
    "n_components": 8,
    "perplexity": 15.0,
    "n_reference_pairs": 600,
    "reference_nodes": 65,
}

TYPES = {
    "radius": str | float | None,
    "n_neighbors": int | None,
    "lam": str | float,
}

#: the densities this experiment knows
DENSITIES = ("mixture", "truth")

#: the distances of each density, then the Euclidean reference
MODES = ("graph", "shortcuts", "auto")


def check_requirements(config: dict) -> None:
    """Nothing beyond the experiments' own dependencies; the density names are checked."""
    unknown = set(config["densities"]) - set(DENSITIES)
    if unknown or not config["densities"]:
        raise ValueError(f"densities must be a non-empty list of {DENSITIES}, got {unknown}.")
    if len(config["radii"]) != 2 or min(config["radii"]) <= 0:
        raise ValueError(f"radii must be two positive numbers, got {config['radii']}.")


@dataclass(frozen=True)
class CoaxialCylinders:
    """The true density of a draw: two coaxial cylinders (weights 1/2), each uniform on its
    surface, blurred by isotropic Gaussian noise, in the frame ``basis``.

    In the rotated frame ``z = x @ basis.T``, with ``rho = |(z0, z1)|``, ``v = z2`` and the
    remaining axes ``w``::

        p(x) = sum_k 1/2 ring_k(rho) * slab(v) * N(w; 0, noise^2 I)
        ring_k(rho) = exp(-(rho - R_k)^2 / (2 s^2)) i0e(rho R_k / s^2) / (2 pi s^2)
        slab(v) = (Phi((width/2 - v) / s) - Phi((-width/2 - v) / s)) / width

    ``ring_k`` is the uniform circle of radius ``R_k`` convolved with N(0, s^2 I_2) (I_0 is
    the modified Bessel function, ``i0e`` its scaled form), ``slab`` the uniform interval
    convolved with N(0, s^2).

    Parameters
    ----------
    basis : ndarray of shape (d, d)
        Orthogonal; its first three rows span the cylinders' subspace.
    radii : tuple of two floats
    width : float
    noise : float
    """

    basis: np.ndarray
    radii: tuple
    width: float
    noise: float

    def log_ring(self, rho: np.ndarray, radius: float) -> np.ndarray:
        """Log-density in the plane of the blurred circle of ``radius`` at distance ``rho``
        from the axis."""
        s2 = self.noise**2
        with np.errstate(divide="ignore"):
            return (
                -np.log(2 * np.pi * s2)
                - (rho - radius) ** 2 / (2 * s2)
                + np.log(i0e(rho * radius / s2))
            )

    def log_slab(self, v: np.ndarray) -> np.ndarray:
        """Log-density along the axis (symmetric; evaluated at ``|v|`` for accuracy)."""
        v = np.abs(v)
        upper = log_ndtr((self.width / 2 - v) / self.noise)
        lower = log_ndtr((-self.width / 2 - v) / self.noise)
        return upper + np.log1p(-np.exp(lower - upper)) - np.log(self.width)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Log-density of each row of ``X`` (shape (n, d))."""
        Z = np.asarray(X, dtype=np.float64) @ self.basis.T
        rho = np.hypot(Z[:, 0], Z[:, 1])
        ring = np.logaddexp(*(self.log_ring(rho, R) for R in self.radii)) - np.log(2.0)
        s2 = self.noise**2
        rest = Z.shape[1] - 3
        normal = -0.5 * (Z[:, 3:] ** 2).sum(axis=1) / s2 - 0.5 * rest * np.log(2 * np.pi * s2)
        return ring + self.log_slab(Z[:, 2]) + normal


def make_cylinders(cfg: dict, seed: int):
    """One draw.

    Returns
    -------
    X : ndarray (n, 10)
    y : ndarray (n,)
        Cylinder of each point.
    phi, v : ndarray (n,)
        Angle and axial position of each noise-free point.
    T : ndarray (n, n)
        Intrinsic (on-cylinder geodesic) distances; inf across cylinders.
    truth : CoaxialCylinders
        The true density of the draw.
    """
    rng = np.random.RandomState(seed)
    n, d = cfg["n_samples"], 10
    radii = tuple(float(r) for r in cfg["radii"])
    y = np.arange(n) % 2
    phi = rng.uniform(0, 2 * np.pi, n)
    v = rng.uniform(-cfg["width"] / 2, cfg["width"] / 2, n)
    R = np.asarray(radii)[y]
    Z = np.zeros((n, d))
    Z[:, 0], Z[:, 1], Z[:, 2] = R * np.cos(phi), R * np.sin(phi), v
    basis = ortho_group.rvs(d, random_state=rng)
    X = Z @ basis + cfg["noise"] * rng.randn(n, d)
    dphi = np.abs(np.angle(np.exp(1j * (phi[:, None] - phi[None, :]))))
    T = np.hypot(R[:, None] * dphi, v[:, None] - v[None, :])
    T[y[:, None] != y[None, :]] = np.inf
    truth = CoaxialCylinders(basis, radii, float(cfg["width"]), float(cfg["noise"]))
    return X, y, phi, v, T, truth


def log_length_factor(log_p: np.ndarray, log_lam: float, beta: float, p0: float) -> np.ndarray:
    """``log h = beta (log(p0 + lam) - log(p + lam))``, written out here so that the
    reference does not use gendist's metric."""
    with np.errstate(divide="ignore"):
        log_top = np.logaddexp(np.log(p0), log_lam)
    return beta * (log_top - np.logaddexp(log_p, log_lam))


def curve_lengths(points: np.ndarray, log_h) -> np.ndarray:
    """Lengths under the metric of a batch of polylines ``points`` (B, m, d): trapezoidal
    rule on the nodes, ``sum |segment| (h_a + h_b) / 2``."""
    B, m, d = points.shape
    h = np.exp(log_h(points.reshape(-1, d))).reshape(B, m)
    steps = np.linalg.norm(np.diff(points, axis=1), axis=2)
    return np.sum(steps * (h[:, 1:] + h[:, :-1]) / 2, axis=1)


def cylinder_feet(X, y, basis, radii):
    """Each point's foot on its noise-free cylinder (same angle and axial position), its
    angle and its axial position, from the rotated frame ``z = x @ basis.T``."""
    Z = X @ basis.T
    angle, axial = np.arctan2(Z[:, 1], Z[:, 0]), Z[:, 2]
    R = np.asarray(radii)[y]
    feet = np.zeros_like(Z)
    feet[:, 0], feet[:, 1], feet[:, 2] = R * np.cos(angle), R * np.sin(angle), axial
    return feet @ basis, angle, axial


def cylinder_curves(angle, axial, radius, a, b, basis, nodes: int) -> np.ndarray:
    """Polylines (len(a), nodes, d) on the cylinders from the feet ``a`` to the feet ``b``:
    the unrolled straight line (angle the shortest way round and axial position both linear
    in the parameter), on cylinder radius ``radius[a]``."""
    t = np.linspace(0.0, 1.0, nodes)[None, :]
    dphi = np.angle(np.exp(1j * (angle[b] - angle[a])))  # signed, shortest way round
    phi = angle[a, None] + t * dphi[:, None]
    on = np.zeros((len(a), nodes, basis.shape[0]))
    on[..., 0] = radius[a, None] * np.cos(phi)
    on[..., 1] = radius[a, None] * np.sin(phi)
    on[..., 2] = axial[a, None] + t * (axial[b] - axial[a])[:, None]
    return on @ basis


def reference_lengths(X, y, pairs, basis, radii, log_h, nodes: int) -> np.ndarray:
    """Length of the reference curve between each pair (i, j) of the same cylinder: the
    shorter of the straight segment and the curve that goes straight from x_i to its foot
    on the noise-free cylinder (:func:`cylinder_feet`), along the cylinder
    (:func:`cylinder_curves`) and straight from x_j's foot to x_j; every piece measured by
    :func:`curve_lengths` on ``nodes`` nodes under ``log_h``."""
    i, j = pairs
    feet, angle, axial = cylinder_feet(X, y, basis, radii)
    radius = np.asarray(radii)[y]
    t = np.linspace(0.0, 1.0, nodes)[None, :, None]
    out = np.empty(len(i))
    for s in range(0, len(i), 256):
        a, b = i[s : s + 256], j[s : s + 256]
        straight = curve_lengths(X[a, None] + t * (X[b] - X[a])[:, None], log_h)
        up = curve_lengths(X[a, None] + t * (feet[a] - X[a])[:, None], log_h)
        down = curve_lengths(feet[b, None] + t * (X[b] - feet[b])[:, None], log_h)
        along = curve_lengths(cylinder_curves(angle, axial, radius, a, b, basis, nodes), log_h)
        out[s : s + 256] = np.minimum(straight, up + along + down)
    return out


def cross_neighbours(D: np.ndarray, y: np.ndarray, k: int) -> float:
    """Mean fraction of each point's ``k`` nearest by ``D`` that carry another label."""
    D = np.array(D, dtype=np.float64)
    np.fill_diagonal(D, np.inf)
    near = np.argsort(D, axis=1, kind="stable")[:, :k]
    return float(np.mean(y[near] != y[:, None]))


def _density(name, X, truth, cfg, seed):
    if name == "truth":
        return truth
    gm = GaussianMixture(cfg["n_components"], covariance_type="full", random_state=seed).fit(X)
    return GaussianMixtureDensity(gm.weights_, gm.means_, gm.covariances_)


def _scores(D, y, T, same, ref, cfg, seed):
    """The measures of one distance matrix; returns the row's values and the embedding."""
    nmi = [spectral_nmi(D, y, c, seed) for c in cfg["relative_taus"]]
    # one OpenMP thread: Barnes-Hut t-SNE of a few hundred points gains nothing from more,
    # and on a machine whose cores other jobs share it loses up to tenfold to spin-waiting
    with threadpool_limits(1, user_api="openmp"):
        Y = tsne_embedding(D, perplexity=cfg["perplexity"], random_state=seed)
    row = {f"nmi_tau{c:g}": v for c, v in zip(cfg["relative_taus"], nmi)}
    row.update(
        {
            "nmi_mean": float(np.mean(nmi)),
            "tsne_agreement": neighbour_agreement(Y, T, cfg["k_agree"]),
            "cross_neighbours": cross_neighbours(D, y, cfg["k_agree"]),
            "spearman": float(spearmanr(D[same], T[same])[0]),
        }
    )
    if ref is not None:
        pairs, lengths = ref
        ratio = D[pairs] / lengths
        row["median_ratio_to_reference"] = float(np.median(ratio))
        row["below_reference"] = float(np.mean(ratio < 1 - 1e-3))
    return row, Y


def run(out: Path, config: dict | None = None) -> dict:
    """Every seed, density and distance; write ``cylinders10d.csv``, ``summary.md`` and
    ``cylinders10d.png`` to ``out``.

    Returns
    -------
    results : dict
        ``rows`` (one per seed, density and distance: graph, shortcuts, auto; and
        Euclidean), ``summary``, ``files`` and ``seconds``.
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    rows, examples = [], {}
    for seed in tqdm(cfg["seeds"], desc="cylinders10d", unit="draw"):
        X, y, phi, v, T, truth = make_cylinders(cfg, seed)
        same = np.isfinite(T) & ~np.eye(len(X), dtype=bool)
        i, j = np.nonzero(np.triu(same))
        pick = np.random.RandomState(seed).choice(
            len(i), min(cfg["n_reference_pairs"], len(i)), replace=False
        )
        pairs = (i[pick], j[pick])
        for name in cfg["densities"]:
            density = _density(name, X, truth, cfg, seed)
            D_graph, est, s_graph = timed_distances(X, density, cfg, False)
            D_auto, est_auto, s_auto = timed_distances(X, density, cfg, "auto")
            auto_on, stretch = bool(est_auto.shortcuts_), float(est_auto.graph_stretch_)
            if auto_on:
                D_short, s_short = D_auto, s_auto
            else:
                D_short, _, s_short = timed_distances(X, density, cfg, True)
            log_p = truth if name == "truth" else density.log_prob

            def log_h(P, log_p=log_p, log_lam=est.log_lam_):
                return log_length_factor(log_p(P), log_lam, cfg["beta"], 0.0)

            lengths = reference_lengths(
                X, y, pairs, truth.basis, truth.radii, log_h, cfg["reference_nodes"]
            )
            common = {
                "seed": seed,
                "density": name,
                "auto_shortcuts": auto_on,
                "graph_stretch": stretch,
                "off_data": float(est_auto.shortcuts_off_data_),
                "graph_components": int(est.n_components_),
            }
            scored = {}
            for mode, D, seconds in (
                ("graph", D_graph, s_graph),
                ("shortcuts", D_short, s_short),
            ):
                row, Y = _scores(D, y, T, same, (pairs, lengths), cfg, seed)
                scored[mode] = row
                rows.append({**common, "distance": mode, **row, "seconds": seconds})
                if seed == cfg["seeds"][0]:
                    examples[name, mode] = (Y, row["tsne_agreement"])
            chosen = "shortcuts" if auto_on else "graph"
            rows.append({**common, "distance": "auto", **scored[chosen], "seconds": s_auto})
        row, Y = _scores(pairwise_distances(X), y, T, same, None, cfg, seed)
        rows.append({"seed": seed, "density": "-", "distance": "euclidean", **row})
        if seed == cfg["seeds"][0]:
            examples["-", "euclidean"] = (Y, row["tsne_agreement"])
            examples["labels"] = (y, phi)
    return finish(
        out,
        start,
        tables={"cylinders10d.csv": rows},
        summary=_summary(rows, cfg),
        figures={"cylinders10d.png": _figure(examples, cfg)},
        rows=rows,
    )


def _groups(cfg):
    """(density, distance) of the table's lines, in order."""
    return [(name, mode) for name in cfg["densities"] for mode in MODES] + [("-", "euclidean")]


def _stat(rows, density, distance, key) -> str:
    values = [r.get(key) for r in rows if (r["density"], r["distance"]) == (density, distance)]
    values = np.array([np.nan if v is None else v for v in values], dtype=float)
    if np.isnan(values).all():
        return "–"
    return f"{np.nanmean(values):.3f} ± {np.nanstd(values):.3f}"


def _summary(rows, cfg) -> str:
    keys = [
        "nmi_mean",
        "tsne_agreement",
        "cross_neighbours",
        "spearman",
        "median_ratio_to_reference",
        "seconds",
    ]
    body = [[d, m, *[_stat(rows, d, m, k) for k in keys]] for d, m in _groups(cfg)]
    per_tau = [
        [d, m, *[_stat(rows, d, m, f"nmi_tau{c:g}") for c in cfg["relative_taus"]]]
        for d, m in _groups(cfg)
    ]
    auto = [
        [
            r["seed"],
            r["density"],
            r["auto_shortcuts"],
            r["graph_stretch"],
            r["graph_components"],
            r["below_reference"],
        ]
        for r in rows
        if r["distance"] == "graph"
    ]
    k = cfg["k_agree"]
    return (
        "\n\n".join(
            [
                "# Shortcuts on two coaxial noisy cylinders in 10-D",
                f"{cfg['n_samples']} points on two coaxial cylinders (radii {cfg['radii']}, "
                f"axial length {cfg['width']}, uniform on each surface, half the points on "
                f"each) in a random 3-D subspace of R^10, noise {cfg['noise']} in every axis; "
                f"seeds {cfg['seeds']}. Densities: GaussianMixture({cfg['n_components']}, "
                "full) fitted on the points ('mixture') and the closed-form true density "
                f"('truth'); n_neighbors={cfg['n_neighbors']}, radius={cfg['radius']!r}, "
                f"lam={cfg['lam']!r}, beta={cfg['beta']}, n_quad={cfg['n_quad']}. Mean ± sd "
                "over seeds. NMI: spectral clustering against the cylinder labels, averaged "
                f"over tau = c * median(d^2), c in {cfg['relative_taus']}. t-SNE agreement: "
                f"fraction of each point's {k} nearest in the embedding among its {k} nearest "
                f"by the on-cylinder geodesic distance. Cross neighbours: fraction of each "
                f"point's {k} nearest by the distance that lie on the other cylinder. "
                "Spearman: against the on-cylinder distance over same-cylinder pairs. d / ref: "
                f"median over {cfg['n_reference_pairs']} same-cylinder pairs of the distance "
                "over the length, under the same metric, of the reference curve (an upper "
                "bound on the true generative distance). s: fit_transform seconds. 'auto' "
                "repeats the line of the distance that shortcuts='auto' chose.",
                markdown_table(
                    [
                        "density",
                        "distance",
                        "NMI",
                        "t-SNE agreement",
                        "cross neighbours",
                        "Spearman",
                        "d / ref",
                        "s",
                    ],
                    body,
                ),
                "NMI per c (mean ± sd over seeds):",
                markdown_table(
                    ["density", "distance", *[f"c={c:g}" for c in cfg["relative_taus"]]],
                    per_tau,
                ),
                'What `shortcuts="auto"` chose (`shortcuts_`, `graph_stretch_`), the graph\'s '
                "connected components, and the fraction of reference pairs where the graph "
                "distance is shorter than the reference curve:",
                markdown_table(
                    ["seed", "density", "auto on", "graph stretch", "components", "graph < ref"],
                    auto,
                ),
            ]
        )
        + "\n"
    )


def _figure(examples, cfg):
    y, phi = examples["labels"]
    panels = [(d, m) for d in cfg["densities"] for m in ("graph", "shortcuts")]
    panels.append(("-", "euclidean"))
    fig = new_figure((2.9 * len(panels), 5.8))
    axes = fig.subplots(2, len(panels), squeeze=False)
    for j, key in enumerate(panels):
        Y, agreement = examples[key]
        title = key[1] if key[0] == "-" else f"{key[0]} density, {key[1]}"
        for i, (colour, cmap, what) in enumerate(
            ((y, "coolwarm", "cylinder"), (phi, "twilight", "angle"))
        ):
            ax = axes[i, j]
            ax.scatter(Y[:, 0], Y[:, 1], c=colour, s=4, cmap=cmap)
            ax.set_title(f"{title}\nby {what}; agreement {agreement:.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
