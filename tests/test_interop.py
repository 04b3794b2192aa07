"""Neighbour graphs in and out, against the other libraries' own APIs: scikit-learn's
KNeighborsTransformer and precomputed convention, pynndescent, UMAP, openTSNE and POT."""

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.datasets import make_moons
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsTransformer, NearestNeighbors, kneighbors_graph
from sklearn.utils._param_validation import InvalidParameterError

from gendist import GenerativeDistance, LatentDistance


@pytest.fixture
def moons():
    return make_moons(150, noise=0.1, random_state=0)[0]


def gmm():
    return GaussianMixture(4, random_state=0)


def tanh_decoder():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))


# ---------------------------------------------------------------------- neighbours in
@pytest.mark.parametrize("k", [5, 9])
def test_kneighbors_transformer_gives_the_builtin_knn_distances(moons, k):
    # the graph stage: refine="auto" reads a time, which two fits may read differently
    exact = GenerativeDistance(gmm(), n_neighbors=k, refine=False)
    D = exact.fit_transform(moons)
    given = GenerativeDistance(
        gmm(), neighbors=KNeighborsTransformer(n_neighbors=k), refine=False
    )
    np.testing.assert_allclose(given.fit_transform(moons), D, rtol=1e-12, atol=0)
    assert given.radius_ is None and (given.graph_ != exact.graph_).nnz == 0
    # a precomputed graph in the same convention; new points keep the exact search (k
    # inferred from the graph's rows)
    graph = KNeighborsTransformer(n_neighbors=k).fit_transform(moons)
    again = GenerativeDistance(gmm(), neighbors=graph, refine=False).fit(moons)
    np.testing.assert_allclose(again.distances(), exact.distances(), rtol=1e-12, atol=0)
    new = moons[:4] + 0.02
    np.testing.assert_allclose(again.transform(new), exact.transform(new), rtol=1e-12)
    assert again.distance(new[0], 7) == pytest.approx(exact.distance(new[0], 7), rel=1e-12)
    # the transformer parameter is left unfitted (a clone is fitted)
    assert not hasattr(given.neighbors, "n_samples_fit_")


def test_kneighbors_transformer_on_latent_distance(rng):
    Z = rng.normal(size=(120, 2))
    exact = LatentDistance(tanh_decoder(), n_neighbors=6).fit(Z)
    knn = KNeighborsTransformer(n_neighbors=6)
    given = LatentDistance(tanh_decoder(), n_neighbors=6, neighbors=knn)
    np.testing.assert_allclose(given.fit_transform(Z), exact.fit_transform(Z), rtol=1e-12)
    np.testing.assert_allclose(given.transform(Z[:3] + 0.1), exact.transform(Z[:3] + 0.1))


def test_given_neighbours_are_checked(moons):
    with pytest.raises(ValueError, match="radius"):
        GenerativeDistance(gmm(), radius=0.3, neighbors=KNeighborsTransformer()).fit(moons)
    with pytest.raises(ValueError, match="shape"):
        GenerativeDistance(gmm(), neighbors=sparse.eye(10, format="csr")).fit(moons)
    with pytest.raises(InvalidParameterError, match="neighbors"):
        GenerativeDistance(gmm(), neighbors=np.eye(len(moons))).fit(moons)
    with pytest.raises(InvalidParameterError, match="neighbors"):
        LatentDistance(np.tanh, neighbors="pynndescent").fit(moons)


def test_pynndescent_graph(rng):
    import pynndescent
    X = rng.normal(size=(300, 3))
    k = 8
    transformer = pynndescent.PyNNDescentTransformer(n_neighbors=k, random_state=0, n_jobs=1)
    approx = transformer.fit_transform(X)
    off = sparse.csr_matrix(approx - sparse.diags(approx.diagonal()))
    off.eliminate_zeros()  # its neighbours other than the point itself
    # k neighbours besides the point itself, as KNeighborsTransformer(n_neighbors=k)
    assert np.all(np.diff(off.indptr) == k)
    exact = kneighbors_graph(X, k, mode="connectivity", include_self=False)
    assert off.astype(bool).multiply(exact).sum() / exact.nnz > 0.9  # recall
    est = GenerativeDistance(gmm(), neighbors=transformer, refine=False).fit(X)
    D = est.fit_transform(X)
    assert np.all(np.isfinite(D)) and np.array_equal(D, D.T)
    assert est._join_neighbors == k  # new points join their k nearest (exact search)


# ---------------------------------------------------------------------- neighbours out
@pytest.fixture
def fitted(moons):
    return GenerativeDistance(gmm(), n_neighbors=6, shortcuts=False).fit(moons)


def test_kneighbors_graph_follows_the_precomputed_convention(fitted):
    k, n = 5, fitted.graph_.shape[0]
    G = fitted.kneighbors_graph(n_neighbors=k)
    assert isinstance(G, sparse.csr_matrix) and G.shape == (n, n)
    assert np.all(np.diff(G.indptr) == k + 1)
    rows = G.indices.reshape(n, k + 1)
    assert np.array_equal(rows[:, 0], np.arange(n)) and np.all(G.data.reshape(n, -1)[:, 0] == 0)
    dist, ind = fitted.kneighbors(n_neighbors=k)
    np.testing.assert_array_equal(rows[:, 1:], ind)
    np.testing.assert_array_equal(G.data.reshape(n, -1)[:, 1:], dist)
    # scikit-learn reads it back: the same neighbours as the dense matrix
    D = fitted.distances()
    for matrix in (G, D):
        got = NearestNeighbors(metric="precomputed").fit(matrix).kneighbors(n_neighbors=k)
        np.testing.assert_allclose(got[0], dist, rtol=1e-12)
    C = fitted.kneighbors_graph(n_neighbors=k, mode="connectivity")
    assert np.all(np.diff(C.indptr) == k) and np.all(C.data == 1)
    np.testing.assert_array_equal(C.indices.reshape(n, k)[:, 1:], ind[:, : k - 1])
    with pytest.raises(ValueError, match="mode"):
        fitted.kneighbors_graph(3, mode="weights")


def test_sparse_cost_matrix(fitted):
    D = fitted.fit_transform(fitted.vertices_)
    limit = float(np.quantile(D, 0.2))
    C = fitted.sparse_cost_matrix(limit)
    assert isinstance(C, sparse.csr_matrix) and (C != C.T).nnz == 0
    dense = C.toarray()
    inside = D <= limit
    stored = np.zeros(D.shape, bool)
    coo = C.tocoo()
    stored[coo.row, coo.col] = True  # explicit zeros included
    assert np.array_equal(stored, inside)
    np.testing.assert_allclose(dense[inside], D[inside], rtol=1e-12)
    assert np.all(C.diagonal() == 0) and C.nnz == inside.sum()
    with pytest.raises(ValueError, match="limit"):
        fitted.sparse_cost_matrix(0.0)


@pytest.mark.filterwarnings("ignore::UserWarning:umap")
def test_umap_accepts_the_graphs(fitted):
    import umap
    D = fitted.fit_transform(fitted.vertices_)
    k = 10  # UMAP's n_neighbors counts the point itself
    params = dict(n_neighbors=k, random_state=0, n_epochs=30, init="random", n_jobs=1)
    dense = umap.UMAP(metric="precomputed", **params).fit(D)
    # the kNN graph as UMAP's precomputed_knn (its rows: self first, then by distance)
    G = fitted.kneighbors_graph(n_neighbors=k - 1)
    n = G.shape[0]
    knn = (G.indices.reshape(n, k).astype(np.int64), G.data.reshape(n, k))
    from_knn = umap.UMAP(metric="precomputed", precomputed_knn=knn, **params).fit(D)
    # a symmetric sparse precomputed matrix: the cost matrix
    limit = float(np.sort(D, axis=1)[:, k].max()) * (1 + 1e-9)
    from_sparse = umap.UMAP(metric="precomputed", **params).fit(fitted.sparse_cost_matrix(limit))
    # the sparse path reads the same k nearest (the point itself first) as kneighbors
    np.testing.assert_array_equal(from_sparse._knn_indices, knn[0])
    for other in (from_knn, from_sparse):
        np.testing.assert_allclose(other.graph_.toarray(), dense.graph_.toarray(), atol=1e-12)
        np.testing.assert_allclose(other.embedding_, dense.embedding_, atol=1e-4)


def test_opentsne_accepts_the_kneighbors_graph(fitted):
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedDistanceMatrix, PrecomputedNeighbors

    D = fitted.fit_transform(fitted.vertices_)
    k = 15
    G = fitted.kneighbors_graph(n_neighbors=k)
    dist, ind = fitted.kneighbors(n_neighbors=k)
    P = {}
    for name, index in {
        "dense": PrecomputedDistanceMatrix(D, k=k),
        "sparse": PrecomputedDistanceMatrix(G, k=k),
        "knn": PrecomputedNeighbors(ind, dist),
    }.items():
        P[name] = PerplexityBasedNN(perplexity=5, knn_index=index).P.toarray()
    np.testing.assert_allclose(P["sparse"], P["dense"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(P["knn"], P["dense"], rtol=1e-10, atol=1e-15)


def test_pot_sparse_emd_equals_the_dense_one(fitted, rng):
    import ot
    D = fitted.fit_transform(fitted.vertices_)
    src, dst = np.arange(0, 40), np.arange(75, 115)
    a, b = rng.dirichlet(np.ones(len(src))), rng.dirichlet(np.ones(len(dst)))
    M = D[np.ix_(src, dst)]
    plan = ot.emd(a, b, M)
    cost = float(np.sum(plan * M))
    # a limit that keeps the dense plan's support: the sparse problem has the same optimum
    limit = float(M[plan > 0].max()) * (1 + 1e-9)
    C = fitted.sparse_cost_matrix(limit)[src][:, dst].tocoo()
    assert C.nnz < M.size
    sparse_plan = ot.emd(a, b, C)
    np.testing.assert_allclose(float(sparse_plan.multiply(C).sum()), cost, rtol=1e-9)
    np.testing.assert_allclose(ot.emd2(a, b, C), cost, rtol=1e-9)


# ---------------------------------------------------------------------- pandas output
def test_set_output_pandas_and_feature_names(moons, rng):
    import pandas as pd
    from sklearn.exceptions import NotFittedError
    from sklearn.pipeline import make_pipeline

    from gendist import GeodesicAffinity

    frame = pd.DataFrame(moons, columns=["x", "y"], index=[f"p{i}" for i in range(len(moons))])
    n = len(moons)
    for est, prefix, data in [
        (GenerativeDistance(gmm(), n_neighbors=6), "generativedistance", frame),
        (LatentDistance(np.tanh, n_neighbors=6), "latentdistance", frame),
    ]:
        with pytest.raises(NotFittedError):
            est.get_feature_names_out()
        est.set_output(transform="pandas")
        out = est.fit_transform(data)
        names = [f"{prefix}{i}" for i in range(n)]
        assert isinstance(out, pd.DataFrame) and list(out.columns) == names
        assert list(out.index) == list(frame.index)
        np.testing.assert_array_equal(est.get_feature_names_out(), names)
        new = est.transform(frame.iloc[:3] + 0.01)
        assert list(new.columns) == names and list(new.index) == ["p0", "p1", "p2"]
        est.set_output(transform="default")
        assert isinstance(est.transform(frame.iloc[:3]), np.ndarray)
    pipe = make_pipeline(GenerativeDistance(gmm(), n_neighbors=6), GeodesicAffinity())
    out = pipe.set_output(transform="pandas").fit_transform(frame)
    assert list(out.columns) == [f"geodesicaffinity{i}" for i in range(n)]
    assert np.all((out.to_numpy() >= 0) & (out.to_numpy() <= 1))
    np.testing.assert_array_equal(
        pipe.get_feature_names_out(), [f"geodesicaffinity{i}" for i in range(n)]
    )


# ---------------------------------------------------------------------- decoder outputs
class ModelOutput(dict):
    """pythae's ModelOutput: a dict whose items are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


class DecoderOutput:
    """diffusers' DecoderOutput: an object with ``.sample``."""

    def __init__(self, sample):
        self.sample = sample


class Wrapped(torch.nn.Module):
    def __init__(self, net, style):
        super().__init__()
        self.net, self.style = net, style

    def forward(self, z):
        x = self.net(z)
        if self.style == "pythae":
            return ModelOutput(reconstruction=x.reshape(len(z), 2, 2), z=z)
        if self.style == "diffusers":
            return DecoderOutput(sample=x)
        return (x,)  # diffusers with return_dict=False


@pytest.mark.parametrize("style", ["pythae", "diffusers", "tuple"])
@pytest.mark.filterwarnings("ignore:refine_path did not converge")
def test_decoders_of_other_libraries_keep_autograd(rng, style):
    net = tanh_decoder().double()
    Z = rng.normal(size=(80, 2))
    plain = LatentDistance(net, n_neighbors=6).fit(Z)
    wrapped = LatentDistance(Wrapped(net, style), n_neighbors=6).fit(Z)
    np.testing.assert_allclose(wrapped.fit_transform(Z), plain.fit_transform(Z), rtol=1e-12)
    np.testing.assert_allclose(
        wrapped.metric_.metric_tensor(Z[:3]), plain.metric_.metric_tensor(Z[:3]), rtol=1e-10
    )
    a, b = 0, int(np.argmax(plain.distances([0])[0]))
    options = {"method": "autograd", "n_rounds": 3}
    got = wrapped.geodesic(a, b, refine=options)
    want = plain.geodesic(a, b, refine=options)
    assert got.length <= wrapped.geodesic(a, b).length
    np.testing.assert_allclose(got.points, want.points, rtol=1e-8, atol=1e-10)
    # gradients flow through the wrapped output
    z = torch.tensor(Z[:4], requires_grad=True)
    wrapped.metric_.log_segment_lengths(z[:2], z[2:]).sum().backward()
    assert z.grad is not None and torch.all(torch.isfinite(z.grad))


def test_decoder_output_without_points_is_refused(rng):
    from gendist.latent import decoder_output

    with pytest.raises(ValueError, match="reconstruction"):
        decoder_output(ModelOutput(z=np.zeros((2, 2))))
    with pytest.raises(ValueError, match="mean, std"):
        LatentDistance(lambda z: (z, z, z)).fit(rng.normal(size=(20, 2)))
