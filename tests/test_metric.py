import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.sparse.csgraph import floyd_warshall

from gendist import ConformalMetric, GaussianMixtureDensity, GenerativeDistance, as_density
from gendist.metric import log_length_factor, resolve_lambda, trapezoid_log_weights

from .conftest import TORCH_DEVICES


def test_log_length_factor_matches_closed_form(rng):
    p = rng.uniform(0, 5, 100)
    lam, beta, p0 = 0.3, 1.7, 0.2
    expected = ((p0 + lam) / (p + lam)) ** beta
    with np.errstate(divide="ignore"):
        got = np.exp(log_length_factor(np.log(p), np.log(lam), beta, p0))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # p = 0 (log p = -inf) gives the largest factor, ((p0 + lam) / lam)^beta
    assert log_length_factor(np.array([-np.inf]), np.log(lam), beta, p0)[0] == pytest.approx(
        beta * np.log((p0 + lam) / lam)
    )


def test_high_dimension_log_space_where_naive_formula_fails(rng):
    """784-D isotropic mixture: naive p**-beta under/overflows, log space matches float128."""
    means = rng.uniform(0, 1, size=(20, 784))
    dens = GaussianMixtureDensity.isotropic(means, 0.01)
    Q = means[:6] + rng.normal(scale=0.05, size=(6, 784))
    log_p = dens.log_prob(Q)
    assert np.all(log_p > 710)
    with np.errstate(over="ignore"):
        lam = np.exp(np.median(log_p))  # absolute lambda overflows too
        naive = (1.0 / (np.exp(log_p) + lam)) ** 1.0
    assert not np.isfinite(lam)
    assert not np.any(naive > 0)  # the naive value is useless
    log_lam = float(np.median(log_p))
    ours = log_length_factor(log_p, log_lam, 1.0, 0.0)
    assert np.all(np.isfinite(ours))
    # reference in extended precision (long double exponent range reaches 1e4932)
    p = np.exp(log_p.astype(np.longdouble))
    lam_ld = np.exp(np.longdouble(log_lam))
    reference = np.log(lam_ld / (p + lam_ld))
    np.testing.assert_allclose(ours, reference.astype(float), rtol=1e-12, atol=1e-12)


def test_high_dimension_distances_equal_extended_precision_brute_force(rng):
    """Whole pipeline in 784-D vs an independent long-double quadrature + Floyd-Warshall."""
    centers = rng.uniform(0, 1, size=(3, 784))
    X = np.vstack([c + rng.normal(scale=0.03, size=(6, 784)) for c in centers])
    dens = GaussianMixtureDensity.isotropic(X, 0.01)
    est = GenerativeDistance(dens, lam="quantile:0.3", radius="auto", n_neighbors=4, n_quad=6)
    D = est.fit_transform(X)
    assert np.all(np.isfinite(D))

    # brute force: every pair within the graph's edges, weights in long double
    log_lam = est.log_lam_
    t = np.linspace(0, 1, 6)
    wts = np.full(6, 1 / 5)
    wts[[0, -1]] /= 2
    W = np.zeros((len(X), len(X)))
    rows, cols = est.graph_.nonzero()
    for i, j in zip(rows, cols):
        nodes = X[i] + t[:, None] * (X[j] - X[i])
        p = np.exp(dens.log_prob(nodes).astype(np.longdouble))
        lam = np.exp(np.longdouble(log_lam))
        h = lam / (p + lam)
        W[i, j] = float(np.linalg.norm(X[j] - X[i]) * (wts * h).sum())
    W[W == 0] = np.inf
    np.fill_diagonal(W, 0)
    np.testing.assert_allclose(D, floyd_warshall(W), rtol=1e-9)


@pytest.mark.parametrize("beta", [1.0, 1.7])
@pytest.mark.parametrize("log_p_offset", [0.0, 1500.0])
@pytest.mark.parametrize("n_quad", [2, 3, 8])
@pytest.mark.parametrize("d", [2, 10])
def test_edge_weights_equal_a_per_edge_brute_force_in_log_space(
    n_quad, d, log_p_offset, beta, rng
):
    """edge_log_weights (chunked) against a loop over the edges with numpy's logaddexp and
    scipy's logsumexp: log w = log|B - A| + logsumexp_k(log w_k + log h(z_k)). The density is
    zero (log p = -inf) beyond x_0 > 1.5, so some nodes have the largest factor; with the
    offset, h / h_max underflows float64 at every other node (p / lam ~ e^1500)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    def log_density(Z):
        log_p = multivariate_normal(np.zeros(d), np.eye(d)).logpdf(Z) + log_p_offset
        return np.where(Z[:, 0] > 1.5, -np.inf, log_p)

    X = rng.normal(size=(300, d))
    rows, cols = rng.integers(0, 300, 2000), rng.integers(0, 300, 2000)
    log_lam, p0 = -3.0, 0.05
    metric = ConformalMetric(
        as_density(log_density), log_lam, beta, p0, n_quad=n_quad, chunk_bytes=50_000
    )
    values = metric.vertex_values(X)
    got = metric.edge_log_weights(X, rows, cols, values)

    t = np.linspace(0.0, 1.0, n_quad)
    log_wk = np.log(np.r_[0.5, np.ones(n_quad - 2), 0.5] / (n_quad - 1))
    offset = np.logaddexp(np.log(p0), log_lam)
    expected = np.empty(len(rows))
    for e, (i, j) in enumerate(zip(rows, cols)):
        nodes = X[i] + t[:, None] * (X[j] - X[i])
        log_h = beta * (offset - np.logaddexp(log_density(nodes), log_lam))
        with np.errstate(divide="ignore"):
            log_norm = np.log(np.linalg.norm(X[j] - X[i]))
        expected[e] = log_norm + logsumexp(log_wk + log_h)
    finite = np.isfinite(expected)
    assert np.array_equal(finite, np.isfinite(got))  # zero-length edges (i == j) alike
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-12)


@pytest.mark.parametrize("beta", [1.0, 1.7])
@pytest.mark.parametrize(("top", "fall"), [(-695.0, 58.0), (-675.0, 58.0), (-640.0, 100.0)])
def test_quadrature_terms_astride_exps_normal_range_keep_their_digits(top, fall, beta):
    """Factors h / h_max from exp(top) down to exp(top - fall), below exp(-708) where exp
    leaves float64's normal range (and the compiled exp flushes to zero): the log-length
    equals scipy's logsumexp of the log-terms to 1e-12, summed in log space (top below
    -668) or not. At top = -695 the third node's term, exp(-711.6), is 6e-8 of the sum."""
    from scipy.special import logsumexp

    n_quad, log_lam = 8, -3.0
    slope = fall / beta  # log p rises along each segment: the log-terms fall by ``fall``

    def log_density(Z):
        return -top / beta + log_lam + slope * Z[:, 0]

    rng = np.random.default_rng(3)
    A = np.column_stack([np.zeros(600), rng.normal(size=600)])
    B = A + np.array([1.0, 0.0])
    metric = ConformalMetric(as_density(log_density), log_lam, beta, n_quad=n_quad)
    got = metric.log_segment_lengths(A, B)
    t = np.linspace(0.0, 1.0, n_quad)
    log_wk = np.log(np.r_[0.5, np.ones(n_quad - 2), 0.5] / (n_quad - 1))
    log_h = -beta * np.logaddexp(log_density(A[:1] + t[:, None] * (B[0] - A[0])) - log_lam, 0)
    assert log_h.max() > -700 and log_h.min() < -708
    np.testing.assert_allclose(got, logsumexp(log_wk + log_h), rtol=0, atol=1e-12)


def test_trapezoid_quadrature_converges_at_second_order():
    dens = GaussianMixtureDensity([1.0], np.zeros((1, 2)), np.eye(2)[None] * 0.2)
    metric = ConformalMetric(dens, np.log(0.05), beta=1.0)
    a, b = np.array([[-1.0, 0.3]]), np.array([[1.2, -0.2]])

    def h(t):
        x = a[0] + t * (b[0] - a[0])
        return np.exp(metric.log_factor(dens.log_prob(x[None]))[0])

    exact = np.linalg.norm(b - a) * quad(h, 0, 1, epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    errors = []
    for T in (9, 17, 33, 65):
        m = ConformalMetric(dens, np.log(0.05), n_quad=T)
        errors.append(abs(np.exp(m.log_segment_lengths(a, b)[0]) - exact) / exact)
    assert errors[-1] < 1e-3
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.0) & (ratios < 5.0)), ratios  # halving the step: error / 4


def test_trapezoid_weights():
    w = np.exp(trapezoid_log_weights(5))
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])
    with pytest.raises(ValueError, match="n_quad"):
        trapezoid_log_weights(1)


def test_lambda_from_quantile(rng):
    log_p = rng.normal(size=101)
    assert np.exp(resolve_lambda("quantile:0.5", log_p)) == pytest.approx(
        np.median(np.exp(log_p)), rel=1e-12
    )
    assert resolve_lambda(2.0) == pytest.approx(np.log(2.0))
    for bad, err in [
        (0.0, ValueError),
        (-1, ValueError),
        (np.nan, ValueError),
        ("quantile:1.5", ValueError),
        ("median", ValueError),
        (None, TypeError),
    ]:
        with pytest.raises(err, match="lam"):
            resolve_lambda(bad, log_p)
    with pytest.raises(ValueError, match="zero density"):
        resolve_lambda("quantile:0.5", np.full(5, -np.inf))


def test_zero_length_segment_has_zero_length():
    metric = ConformalMetric(as_density(lambda A: np.zeros(len(A))), 0.0)
    a = np.ones((1, 3))
    assert metric.log_segment_lengths(a, a.copy())[0] == -np.inf
    assert metric.curve_length(np.vstack([a, a])) == 0.0


def test_chunked_quadrature_equals_one_pass(rng, gap_mixture):
    w, m, c = gap_mixture
    dens = GaussianMixtureDensity(w, m, c)
    X = rng.normal(size=(300, 2))
    rows, cols = rng.integers(0, 300, 500), rng.integers(0, 300, 500)
    log_p = dens.log_prob(X)
    one = ConformalMetric(dens, -2.0, n_quad=9)
    tiny = ConformalMetric(dens, -2.0, n_quad=9, chunk_bytes=1000)  # ~9 segments per chunk
    assert tiny._segments_per_chunk(2) < 10
    expected = one.log_segment_lengths(X[rows], X[cols])
    # small chunks take numpy's exp, large ones the compiled one (each within 1 ulp of exp):
    # log-lengths near 0 differ by a rounding of their O(1) terms
    tol = {"rtol": 1e-14, "atol": 1e-15}
    np.testing.assert_allclose(tiny.edge_log_weights(X, rows, cols, log_p), expected, **tol)
    np.testing.assert_allclose(tiny.log_segment_lengths(X[rows], X[cols]), expected, **tol)


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_torch_edge_weights_equal_numpy(rng, device):
    """The torch quadrature gives the numpy log-weights to 1e-10 (float64 mixture), also with
    duplicate points (zero-length edges), tiny chunks and new points joined by transform;
    a float32 torch model is evaluated in float32 and accumulated in float64."""
    X = rng.normal(size=(400, 5))
    X[7] = X[8]  # a duplicate: a zero-length edge, log-weight -inf
    mixture = GaussianMixtureDensity.isotropic(X[:40], 0.7)
    # the subject is the quadrature: refine="auto" decides by a time, which may differ
    ref = GenerativeDistance(mixture, n_neighbors=8, refine=False).fit(X)
    coo = ref.graph_.tocoo()  # stored entries, the explicit zero of the duplicate included
    rows, cols = coo.row, coo.col
    expected = ref.metric_.edge_log_weights(X, rows, cols, ref.log_prob_)
    metric = ConformalMetric(mixture, ref.metric_.log_lam, 1.0, 0.0, 8, chunk_bytes=20_000)
    got = metric.edge_log_weights(X, rows, cols, ref.log_prob_, device=device)
    assert np.array_equal(np.isinf(got), np.isinf(expected)) and np.isinf(got).any()
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10)
    est = GenerativeDistance(mixture, n_neighbors=8, device=device, refine=False).fit(X)
    np.testing.assert_allclose(est.graph_.toarray(), ref.graph_.toarray(), rtol=1e-10)
    Y = rng.normal(size=(5, 5))
    np.testing.assert_allclose(est.transform(Y), ref.transform(Y), rtol=1e-10)
    # a float32 torch model: its float32 log-densities, float64 quadrature
    normal = torch.distributions.MultivariateNormal(torch.zeros(5), torch.eye(5))
    adapter = as_density(normal)
    est32 = GenerativeDistance(normal, n_neighbors=8, device=device).fit(X)
    ref32 = GenerativeDistance(adapter, n_neighbors=8).fit(X)
    np.testing.assert_allclose(est32.graph_.toarray(), ref32.graph_.toarray(), rtol=1e-6)


def test_torch_edge_weights_retry_with_halved_chunks_on_out_of_memory(rng):
    """A device out of memory for big chunks: the chunk halves until it fits."""
    X = rng.normal(size=(200, 2))
    mixture = GaussianMixtureDensity.isotropic(X[:10], 0.5)
    ref = GenerativeDistance(mixture, n_neighbors=6).fit(X)
    rows, cols = ref.graph_.nonzero()
    calls = []

    class SmallDevice(type(mixture)):
        def log_prob_tensor(self, x):
            calls.append(len(x))
            if len(x) > 600:
                raise torch.cuda.OutOfMemoryError("out of memory (simulated)")
            return super().log_prob_tensor(x)

    small = SmallDevice.isotropic(X[:10], 0.5)
    metric = ConformalMetric(small, ref.metric_.log_lam, 1.0, 0.0, 8)
    got = metric.edge_log_weights(X, rows, cols, ref.log_prob_, device="cpu")
    expected = ref.metric_.edge_log_weights(X, rows, cols, ref.log_prob_)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # the first chunks failed, then every node was evaluated once in chunks that fit
    assert calls[0] > 600
    assert sum(c for c in calls if c <= 600) == (metric.n_quad - 2) * len(rows)


def test_torch_edge_weights_need_a_torch_density(rng):
    X = rng.normal(size=(50, 2))
    with pytest.raises(TypeError, match="torch tensors"):
        GenerativeDistance(lambda A: -0.5 * (A**2).sum(1), n_neighbors=5, device="cpu").fit(X)


@pytest.mark.parametrize(
    "z",
    [0.0, 411.3, -800.0, np.float32(3.5), np.array([-np.inf, -30, 0.5, 39.9, 40.1, 1e300, np.inf])],
)
def test_softplus_equals_numpys_logaddexp_for_scalars_and_arrays(z):
    from gendist._compute import softplus

    got = softplus(z)
    expected = np.logaddexp(np.asarray(z, dtype=np.float64), 0.0)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=4e-16, atol=3e-16)
    # and the length factor of a single log-density value, as a scalar call makes it
    assert np.isfinite(log_length_factor(np.float64(411.3), 0.0, 1.0, 0.0))
