"""Latent pullback geometry against closed forms, arc lengths and scipy's Dijkstra."""

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.sparse.csgraph import dijkstra
from scipy.spatial.distance import cdist

from gendist.graph import symmetric_csr
from gendist.latent import LatentDistance, PullbackMetric, magnification_factor
from gendist.paths import astar_shortest_path


def linear_decoder(A):
    layer = torch.nn.Linear(A.shape[1], A.shape[0], bias=True, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(A))
        layer.bias.normal_()
    return layer


class Helix(torch.nn.Module):
    """A unit-speed helix: an isometry of R (the latent line) onto a curve in R^3."""

    def __init__(self, pitch=0.5):
        super().__init__()
        self.c = 1.0 / np.sqrt(1.0 + pitch**2)
        self.pitch = pitch

    def forward(self, z):
        s = z[:, 0] * self.c
        return torch.stack([torch.cos(s), torch.sin(s), self.pitch * s], dim=1)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_linear_decoder_lengths_and_graph_distances_are_closed_form(rng, kind):
    A = rng.normal(size=(5, 2))
    decoder = linear_decoder(A) if kind == "torch" else (lambda Z: Z @ A.T + 1.0)
    Z = rng.normal(size=(150, 2))
    est = LatentDistance(decoder, n_neighbors=6, n_quad=3, refine=False).fit(Z)
    # every edge weighs |A (z_u - z_v)| (any quadrature is exact for a straight image)
    rows, cols = est.graph_.nonzero()
    np.testing.assert_allclose(
        est.graph_.data, np.linalg.norm((Z[rows] - Z[cols]) @ A.T, axis=1), rtol=1e-12
    )
    # the graph distances equal scipy's Dijkstra on those closed-form weights
    upper = rows < cols
    W = symmetric_csr(
        len(Z), rows[upper], cols[upper], np.linalg.norm((Z[rows] - Z[cols])[upper] @ A.T, axis=1)
    )
    np.testing.assert_allclose(est.fit_transform(Z), dijkstra(W, directed=False), rtol=1e-10)
    # ... and are never shorter than the straight latent line's image |A (z_a - z_b)|
    D = est.distances()
    straight = cdist(Z @ A.T, Z @ A.T)
    assert np.all(D >= straight * (1 - 1e-12))


def test_linear_decoder_refined_geodesic_is_the_straight_line(rng):
    A = rng.normal(size=(4, 2))
    Z = rng.uniform(-1, 1, size=(300, 2))
    est = LatentDistance(linear_decoder(A), n_neighbors=8, shortcuts=False).fit(Z)
    a, b = int(np.argmin(Z.sum(1))), int(np.argmax(Z.sum(1)))
    graph = est.geodesic(a, b)
    refined = est.geodesic(a, b, refine=True)
    exact = np.linalg.norm(A @ (Z[a] - Z[b]))
    assert graph.length > exact * (1 + 1e-4)  # the graph path zig-zags
    assert refined.length <= graph.length
    np.testing.assert_allclose(refined.length, exact, rtol=1e-6)


def test_batched_latent_geodesics_of_a_linear_decoder_are_straight_lines(rng):
    """A batch of latent pairs refined together: each reaches |A (z_a - z_b)| (closed form)."""
    A = rng.normal(size=(4, 3))
    Z = rng.uniform(-1, 1, size=(300, 3))
    est = LatentDistance(linear_decoder(A), n_neighbors=8, shortcuts=False).fit(Z)
    a, b = rng.integers(0, 300, 20), rng.integers(0, 300, 20)
    a, b = a[a != b], b[a != b]
    exact = np.linalg.norm((Z[a] - Z[b]) @ A.T, axis=1)
    graph = np.array([g.length for g in est.geodesics(a, b)])
    refined = np.array([g.length for g in est.geodesics(a, b, refine=True)])
    assert np.median(graph / exact) > 1 + 1e-3  # the graph paths zig-zag
    assert np.all(refined <= graph * (1 + 1e-12))
    assert np.all(refined >= exact * (1 - 1e-12))  # a straight image is exact by quadrature
    np.testing.assert_allclose(refined, exact, rtol=1e-5)  # rounds stop at a 1e-6 gain


def test_stochastic_decoder_measures_the_joint_embedding(rng):
    """A decoder returning (mean, std) measures curves in z -> (mean(z), std(z))."""
    A, B = rng.normal(size=(3, 2)), rng.normal(size=(2, 2))
    metric = PullbackMetric(lambda Z: (Z @ A.T, np.abs(Z @ B.T) + 1.0))
    a, b = np.array([[0.3, 0.4]]), np.array([[1.0, 0.7]])  # B z keeps its sign on a -> b
    assert np.all(np.sign(a @ B.T) == np.sign(b @ B.T))
    joint = np.vstack([A, B * np.sign(a @ B.T).T])
    np.testing.assert_allclose(
        np.exp(metric.log_segment_lengths(a, b)), np.linalg.norm(joint @ (b - a)[0]), rtol=1e-12
    )


def test_isometric_curve_graph_distance_converges_to_arc_length(rng):
    """On a unit-speed helix the pullback distance is |z_a - z_b|: the decoded polyline's chord
    error falls like 1/n_quad**2, and the graph distance converges to the arc length."""
    helix = Helix()
    a, b = np.array([[0.0]]), np.array([[3.0]])
    errors = [
        abs(np.exp(PullbackMetric(helix, n_quad=T).log_segment_lengths(a, b))[0] - 3.0)
        for T in (4, 8, 16)
    ]
    assert errors[0] > errors[1] > errors[2]
    np.testing.assert_allclose(errors[0] / errors[1], (7 / 3) ** 2, rtol=0.15)
    graph_errors = []
    for n in (50, 400):
        step = 6.0 / (n - 1)
        Z = np.linspace(0, 6, n)[:, None] + rng.uniform(-0.2, 0.2, size=(n, 1)) * step
        D = LatentDistance(helix, n_neighbors=2, n_quad=2).fit_transform(Z)
        graph_errors.append(np.max(np.abs(D - np.abs(Z - Z.T))))
    # chords of latent length s lose ~ s^3 / 24 (curvature 1 / (1 + pitch^2)) each
    assert graph_errors[1] < graph_errors[0] / 30
    assert graph_errors[1] < 1e-4


def test_magnification_factor_of_linear_decoders(rng):
    A = rng.normal(size=(2, 2))
    Z = rng.normal(size=(20, 2))
    np.testing.assert_allclose(
        magnification_factor(linear_decoder(A), Z), abs(np.linalg.det(A)), rtol=1e-10
    )
    R = rng.normal(size=(7, 3))  # rectangular: sqrt(det(A^T A)) (Cauchy-Binet)
    expected = np.sqrt(np.linalg.det(R.T @ R))
    Z3 = rng.normal(size=(10, 3))
    np.testing.assert_allclose(magnification_factor(linear_decoder(R), Z3), expected, rtol=1e-10)
    np.testing.assert_allclose(magnification_factor(lambda Z: Z @ R.T, Z3), expected, rtol=1e-6)


def test_metric_tensor_autograd_equals_finite_differences(rng):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)
    ).double()
    Z = rng.normal(size=(6, 2))

    def numpy_net(Z):
        with torch.no_grad():
            return net(torch.as_tensor(Z)).numpy()

    np.testing.assert_allclose(
        PullbackMetric(net).metric_tensor(Z),
        PullbackMetric(numpy_net).metric_tensor(Z),
        rtol=1e-6,
        atol=1e-9,
    )


def test_astar_equals_dijkstra(rng):
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)
    ).double()
    Z = np.vstack([rng.normal(size=(250, 2)), rng.normal(size=(30, 2)) + 8.0])  # 2 components
    est = LatentDistance(net, n_neighbors=6, shortcuts=False, refine=False).fit(Z)
    full = dijkstra(est.graph_, directed=True)
    for a, b in rng.integers(0, len(Z), size=(25, 2)):
        d = est.distance(int(a), int(b))
        if np.isfinite(full[a, b]):
            np.testing.assert_allclose(d, full[a, b], rtol=1e-9)
            g = est.geodesic(int(a), int(b))
            np.testing.assert_allclose(g.length, full[a, b], rtol=1e-9)
            np.testing.assert_allclose(
                sum(est.graph_[u, v] for u, v in zip(g.indices[:-1], g.indices[1:])),
                full[a, b],
                rtol=1e-12,
            )
        else:
            assert d == np.inf
    # with no heuristic at all, A* is Dijkstra too
    length, _ = astar_shortest_path(est.graph_, 0, 5, np.zeros(len(Z)))
    np.testing.assert_allclose(length, full[0, 5], rtol=1e-12)
    with pytest.raises(ValueError, match="not consistent"):
        astar_shortest_path(est.graph_, 0, 5, np.full(len(Z), 1e6) * (np.arange(len(Z)) != 5))


def test_refined_latent_geodesic_never_longer_than_graph_path(rng):
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6)
    ).double()
    Z = rng.normal(size=(300, 2))
    est = LatentDistance(net, n_neighbors=8).fit(Z)
    for a, b in rng.integers(0, len(Z), size=(4, 2)):
        if a == b:
            continue
        graph = est.geodesic(int(a), int(b), refine=False)
        for method in ("autograd", "finite-difference"):
            refined = est.geodesic(int(a), int(b), refine={"method": method, "n_rounds": 5})
            assert refined.length <= graph.length
            np.testing.assert_allclose(
                est.metric_.curve_length(refined.points), refined.length, rtol=1e-9
            )


def test_transform_new_codes_matches_brute_force(rng):
    A = rng.normal(size=(3, 2))
    Z = rng.normal(size=(120, 2))
    est = LatentDistance(lambda Y: Y @ A.T, n_neighbors=5, shortcuts=False).fit(Z)
    new = rng.normal(size=(4, 2))
    D = est.transform(new)
    full = est.distances()
    _, idx = est.nn_.kneighbors(new, 5)
    for i in range(len(new)):
        first = np.linalg.norm((Z[idx[i]] - new[i]) @ A.T, axis=1)
        np.testing.assert_allclose(D[i], np.min(first[:, None] + full[idx[i]], axis=0))


def test_latent_errors(rng):
    with pytest.raises(TypeError, match="callable"):
        PullbackMetric(np.eye(2))
    est = LatentDistance(lambda Z: np.full((len(Z), 3), np.nan), n_neighbors=3)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(rng.normal(size=(10, 2)))
    est = LatentDistance(lambda Z: Z[:, 0], n_neighbors=3)
    with pytest.raises(ValueError, match="shape"):
        est.fit(rng.normal(size=(10, 2)))
    est = LatentDistance(lambda Z: Z, n_neighbors=3).fit(rng.normal(size=(10, 2)))
    with pytest.raises(ValueError, match="features"):
        est.transform(rng.normal(size=(3, 4)))
    with pytest.raises(IndexError):
        est.distance(0, 10)


def test_image_shaped_and_pickled_decoders(rng):
    """Decoders returning images (m, 1, h, w) measure the flattened images; the VAE's
    stochastic decoder pickles (it is a named module)."""
    import pickle

    A = rng.normal(size=(4, 2))
    flat = LatentDistance(lambda Z: Z @ A.T, n_neighbors=5)
    image = LatentDistance(lambda Z: (Z @ A.T).reshape(len(Z), 1, 2, 2), n_neighbors=5)
    Z = rng.normal(size=(60, 2))
    np.testing.assert_allclose(image.fit_transform(Z), flat.fit_transform(Z), rtol=1e-12)
    np.testing.assert_allclose(
        magnification_factor(linear_decoder(A), Z[:3]),
        magnification_factor(lambda Y: (Y @ A.T).reshape(len(Y), 2, 2), Z[:3]),
        rtol=1e-6,
    )

    from gendist import VAE

    vae = VAE(hidden=(8,), epochs=1, random_state=0).fit(rng.uniform(size=(30, 6)))
    est = LatentDistance(vae.stochastic_decoder(), n_neighbors=4).fit(
        vae.encode(rng.uniform(size=(20, 6)))
    )
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.distances(), est.distances())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_latent_distance_passes_the_sklearn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(LatentDistance(np.tanh, n_neighbors=3), on_fail=None)
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert not failed
    assert len(results) > 40
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}


def test_latent_distance_has_the_generative_queries(rng, tmp_path):
    """kneighbors, memory_limit, dtype, out= and points as ends, on a linear decoder whose
    graph distances are scipy's Dijkstra on the closed-form weights |A (z_u - z_v)|."""
    from gendist import GraphTooLargeError

    A = rng.normal(size=(5, 2))
    Z = rng.normal(size=(150, 2))
    est = LatentDistance(lambda Y: Y @ A.T, n_neighbors=6, shortcuts=False).fit(Z)
    W = est.graph_.tocoo()
    exact = sparse.csr_matrix(
        (np.linalg.norm((Z[W.row] - Z[W.col]) @ A.T, axis=1), (W.row, W.col)), shape=W.shape
    )
    full = dijkstra(exact, directed=False)
    np.testing.assert_allclose(est.distances(), full, rtol=1e-10)
    # k nearest codes by bounded searches = brute force on all pairs
    D = full.copy()
    np.fill_diagonal(D, np.inf)
    order = np.argsort(D, axis=1, kind="stable")[:, :4]
    d4, i4 = est.kneighbors(n_neighbors=4)
    np.testing.assert_allclose(d4, np.take_along_axis(D, order, 1), rtol=1e-10)
    # float32 results, rows written to a memory map, the memory guard
    f32 = LatentDistance(lambda Y: Y @ A.T, n_neighbors=6, dtype="float32", shortcuts=False).fit(Z)
    assert f32.distances([0, 1]).dtype == np.float32
    out = np.lib.format.open_memmap(tmp_path / "d.npy", "w+", np.float64, (3, 150))
    est.distances([0, 1, 2], out=out)
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), full[:3], rtol=1e-10)
    small = LatentDistance(
        lambda Y: Y @ A.T, n_neighbors=6, memory_limit=1000, shortcuts=False
    ).fit(Z)
    with pytest.raises(GraphTooLargeError, match="out="):
        small.distances()
    # a new code as an end: the best join through its neighbours, as transform measures
    z = rng.normal(size=2)
    assert est.distance(z, 3) == pytest.approx(est.transform(z[None])[0, 3], rel=1e-12)
