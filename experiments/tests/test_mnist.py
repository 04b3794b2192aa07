"""The MNIST / Fashion-MNIST interpolation experiment: data, helpers, and a --quick run checked
against independent references."""

import csv

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from scipy.stats import norm

from experiments import mnist, run_experiment
from experiments._data import default_data_dir, load_mnist

DATASETS = ("mnist", "fashion-mnist")

needs_data = pytest.mark.skipif(
    not all((default_data_dir() / name).is_dir() for name in DATASETS),
    reason="MNIST / Fashion-MNIST files not found in the data folder",
)


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- data
@needs_data
@pytest.mark.parametrize("dataset", DATASETS)
def test_loader_reads_both_splits(dataset, data_dir):
    for split, count in (("train", 60000), ("test", 10000)):
        X, y = load_mnist(data_dir, dataset=dataset, split=split)
        assert X.shape == (count, 784) and y.shape == (count,)
        assert X.dtype == np.float64 and X.min() == 0.0 and X.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
        # pixels are k / 255
        np.testing.assert_allclose(X[:50] * 255, np.round(X[:50] * 255), atol=1e-9)
    # a seeded subset is reproducible and made of rows of the full split
    S1, y1 = load_mnist(data_dir, dataset=dataset, split="test", n_samples=300, random_state=3)
    S2, _ = load_mnist(data_dir, dataset=dataset, split="test", n_samples=300, random_state=3)
    np.testing.assert_array_equal(S1, S2)
    rows = {(r.tobytes(), int(c)) for r, c in zip(X, y)}
    assert all((r.tobytes(), int(c)) in rows for r, c in zip(S1, y1))


@needs_data
def test_the_two_datasets_differ(data_dir):
    A, _ = load_mnist(data_dir, dataset="mnist", split="test", n_samples=200, random_state=0)
    B, _ = load_mnist(
        data_dir, dataset="fashion-mnist", split="test", n_samples=200, random_state=0
    )
    # digits are mostly background; clothes cover much more of the frame
    assert (A > 0).mean() < 0.3 < (B > 0).mean()


# ---------------------------------------------------------------- helpers
def test_linear_frames_and_smoothness_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.random(784), rng.random(784)
    F = mnist.linear_frames(a, b, 7)
    np.testing.assert_allclose(F[3], (a + b) / 2)
    assert mnist.smoothness(F) == pytest.approx(1 / 6, rel=1e-12)
    assert mnist.smoothness(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2 / 3)


def test_subdivide_keeps_the_polyline():
    P = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 3.0]])
    S = mnist.subdivide(P, 4)
    assert len(S) == 9 and np.allclose(S[[0, 4, 8]], P)
    assert np.linalg.norm(np.diff(S, axis=0), axis=1).sum() == pytest.approx(5.0)


def test_select_variance_finds_the_maximum_likelihood_variance():
    """With one component the held-out likelihood peaks at mean ||x - mu||^2 / d."""
    rng = np.random.default_rng(1)
    mu = np.zeros((1, 50))
    V = rng.normal(scale=0.3, size=(400, 50))
    best = float(((V - mu) ** 2).sum(1).mean() / 50)
    variance, table = mnist.select_variance(mu, V, [best / 2, best, 2 * best])
    assert variance == best and len(table) == 3
    reference = norm.logpdf(V, 0.0, np.sqrt(best)).sum(1).mean()
    assert table[1]["heldout_loglik"] == pytest.approx(reference, rel=1e-12)


# ---------------------------------------------------------------- the quick run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    if not all((default_data_dir() / name).is_dir() for name in DATASETS):
        pytest.skip("MNIST / Fashion-MNIST files not found in the data folder")
    out = tmp_path_factory.mktemp("mnist")
    return out, run_experiment("mnist", out, quick=True)


def test_quick_writes_its_files(quick):
    out, res = quick
    names = ["mnist.csv", "frames.csv", "variance.csv", "summary.md", "frame_logp.png"]
    names += [f"strips_{name}.png" for name in DATASETS]
    for name in names:
        assert (out / name).stat().st_size > 0
    cfg = {**mnist.DEFAULTS, **mnist.QUICK}
    rows = _read(out / "mnist.csv")
    assert len(rows) == len(res["rows"]) == len(DATASETS) * 2 * cfg["n_pairs"] * 2
    assert {(r["dataset"], r["kind"], r["path"]) for r in rows} == {
        (d, k, p) for d in DATASETS for k in mnist.KINDS for p in mnist.PATHS
    }
    frames = _read(out / "frames.csv")
    assert len(frames) == len(rows) * (cfg["n_frames"] - 2)
    summary = (out / "summary.md").read_text()
    assert all(name in summary for name in DATASETS)


def test_quick_density_and_graph(quick):
    _, res = quick
    cfg = {**mnist.DEFAULTS, **mnist.QUICK}
    k = cfg["n_neighbors"]
    for name in DATASETS:
        info = res["details"][name]
        est, X = info["est"], info["images"]
        comp, val, vert = info["component_index"], info["validation_index"], info["vertex_index"]
        assert (len(comp), len(val), len(vert)) == (
            cfg["n_components"],
            cfg["n_validation"],
            cfg["n_vertices"],
        )
        # the three roles use disjoint images; the vertices are not the component means
        assert len(np.unique(np.concatenate([comp, val, vert]))) == len(comp) + len(val) + len(vert)
        np.testing.assert_array_equal(est.vertices_, X[vert])
        np.testing.assert_array_equal(info["density"].means, X[comp])

        # the chosen variance maximises the held-out likelihood, recomputed with scipy
        table = info["variance_table"]
        assert info["variance"] == max(table, key=lambda r: r["heldout_loglik"])["variance"]
        s = np.sqrt(info["variance"])
        ll = [
            logsumexp(norm.logpdf(x[None, :], X[comp], s).sum(1)) - np.log(len(comp))
            for x in X[val]
        ]
        chosen = [r for r in table if r["variance"] == info["variance"]][0]
        assert chosen["heldout_loglik"] == pytest.approx(np.mean(ll), rel=1e-9)

        # adaptive epsilon-graph: every pair closer than the radius is an edge, every vertex
        # keeps at least k neighbours; the radius is the quantile of the k-th neighbour distance
        D = cdist(est.vertices_, est.vertices_)
        kth = np.sort(D, axis=1)[:, k]
        assert info["radius"] == pytest.approx(np.quantile(kth, cfg["radius_quantile"]))
        i, j = np.nonzero((D < info["radius"]) & (D > 0))
        assert np.all(np.asarray(est.graph_[i, j]).ravel() > 0)
        assert np.diff(est.graph_.indptr).min() >= k
        # lambda is the median vertex density; beta="auto" gives the densest vertex the
        # length factor h = (lambda / (p + lambda))**beta = exp(-contrast)
        assert est.log_lam_ == pytest.approx(np.quantile(est.log_prob_, 0.5))
        assert est.log_prob_.max() < 700  # p itself is representable here
        lam, p_max = np.exp(est.log_lam_), np.exp(est.log_prob_.max())
        h = (lam / (p_max + lam)) ** est.beta
        assert h == pytest.approx(np.exp(-cfg["contrast"]), rel=1e-9)
        assert est.metric_.log_factor(est.log_prob_.max()) == pytest.approx(-cfg["contrast"])


def test_quick_geodesics_and_strips(quick):
    _, res = quick
    cfg = {**mnist.DEFAULTS, **mnist.QUICK}
    n = cfg["n_frames"]
    rows = {(r["dataset"], r["pair"], r["path"]): r for r in res["rows"]}
    for name in DATASETS:
        info = res["details"][name]
        est, density = info["est"], info["density"]
        V = est.vertices_
        labels = info["labels"][info["vertex_index"]]
        means, sd = density.means, np.sqrt(info["variance"])
        for pair in info["pairs"]:
            a, b, path = pair["a"], pair["b"], pair["indices"]
            geo, lin = rows[name, pair["pair"], "geodesic"], rows[name, pair["pair"], "linear"]
            assert (labels[a] == labels[b]) == (pair["kind"] == "same")
            # the geodesic runs from a to b along graph edges, and is the shortest such path
            assert path[0] == a and path[-1] == b and len(path) == geo["n_vertices"]
            assert geo["vertices"] == " ".join(map(str, path)) and lin["vertices"] == f"{a} {b}"
            # with beta="auto" no edge underflows next to a path's length: the shortest path is
            # the same searched from either end (in the quick setting, seeds 0-3)
            assert geo["reverse_agrees"] == 1.0
            np.testing.assert_array_equal(est.geodesic(b, a).indices[::-1], path)
            inner = labels[path[1:-1]]
            other = [c not in (labels[a], labels[b]) for c in inner]
            assert geo["other_class"] == pytest.approx(np.mean(other) if other else 0.0)
            weights = np.asarray(est.graph_[path[:-1], path[1:]]).ravel()
            assert np.all(weights > 0)
            shortest = dijkstra(est.graph_, indices=a)[b]
            assert pair["geodesic_length"] == pytest.approx(shortest, rel=1e-12)
            assert weights.sum() == pytest.approx(shortest, rel=1e-9)
            # the reported generative length is the metric's length of the vertex polyline
            assert geo["generative_length"] == pytest.approx(
                est.metric_.curve_length(V[path]), rel=1e-12
            )
            assert geo["generative_length"] == pytest.approx(shortest, rel=1e-9)
            # h <= 1 (p0 = 0): no generative length exceeds the Euclidean one
            for r in (geo, lin):
                euclid = r["detour"] * r["chord"]
                assert 0 < r["generative_length"] <= euclid * (1 + 1e-9)
                assert 0 < r["generative_length_subdivided"] <= euclid * (1 + 1e-9)
            assert geo["detour"] >= 1 - 1e-12 and lin["detour"] == pytest.approx(1.0)

            F_geo = pair["paths"]["geodesic"]["frames"]
            F_lin = pair["paths"]["linear"]["frames"]
            # both strips start and end at the pair; the linear one has equal steps, so its
            # smoothness is 1 / (n - 1) exactly; no strip can do better
            for F in (F_geo, F_lin):
                assert F.shape == (n, 784)
                np.testing.assert_array_equal(F[[0, -1]], V[[a, b]])
            np.testing.assert_allclose(F_lin, V[a] + np.linspace(0, 1, n)[:, None] * (V[b] - V[a]))
            assert lin["frame_smoothness"] == pytest.approx(1 / (n - 1), rel=1e-12)
            assert geo["frame_smoothness"] >= 1 / (n - 1) - 1e-12
            assert 0 < geo["vertex_smoothness"] <= 1
            # geodesic frames are equally spaced in arc length: no chord exceeds the spacing
            steps = np.linalg.norm(np.diff(F_geo, axis=0), axis=1)
            assert steps.max() <= geo["detour"] * geo["chord"] / (n - 1) * (1 + 1e-9)

            # frame log-densities against scipy: one Gaussian log-pdf per pixel and component
            for key, F, r in (("geodesic", F_geo, geo), ("linear", F_lin, lin)):
                ref = np.array(
                    [
                        logsumexp(norm.logpdf(x[None, :], means, sd).sum(1)) - np.log(len(means))
                        for x in F[1:-1]
                    ]
                )
                got = pair["paths"][key]["frame_log_prob"]
                np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-6)
                assert r["frame_logp_mean"] == pytest.approx(ref.mean(), rel=1e-9, abs=1e-6)
                assert r["frame_logp_min"] == pytest.approx(ref.min(), rel=1e-9, abs=1e-6)


def test_quick_geodesics_stay_in_higher_density(quick):
    """The outcome of the experiment, not a theorem: the geodesic's frames are more likely
    under the mixture than the linear interpolation's. In the quick setting this held for
    every dataset and kind with seeds 0-3 (median of the interior minimum; and, for pairs of
    different classes, the interior mean of every pair)."""
    _, res = quick
    rows = res["rows"]
    for name in DATASETS:
        for kind in mnist.KINDS:
            geo, lin = (
                {
                    r["pair"]: r
                    for r in rows
                    if (r["dataset"], r["kind"], r["path"]) == (name, kind, path)
                }
                for path in mnist.PATHS
            )
            assert np.median([r["frame_logp_min"] for r in geo.values()]) > np.median(
                [r["frame_logp_min"] for r in lin.values()]
            )
            if kind == "different":
                assert all(geo[p]["frame_logp_mean"] > lin[p]["frame_logp_mean"] for p in geo)
