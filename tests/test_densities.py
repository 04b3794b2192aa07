import tracemalloc

import numpy as np
import pytest
import sklearn
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.neighbors import KernelDensity

from gendist import (
    CallableDensity,
    GaussianMixtureDensity,
    SklearnDensity,
    TorchDensity,
    as_density,
)
from gendist.densities import evaluate_log_density

from .conftest import TORCH_DEVICES, mixture_log_prob_reference


@pytest.fixture
def fitted_gmm(rng):
    X = np.vstack([rng.normal(size=(200, 3)) + 3, rng.normal(size=(200, 3)) * 0.5 - 2])
    return GaussianMixture(3, covariance_type="full", random_state=0).fit(X), X


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_all_adapters_agree_on_the_same_mixture(fitted_gmm, rng, device):
    gm, X = fitted_gmm
    Q = rng.normal(size=(300, 3)) * 3
    reference = mixture_log_prob_reference(Q, gm.weights_, gm.means_, gm.covariances_)

    ours = GaussianMixtureDensity.from_sklearn(gm)
    torch_dist = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.tensor(gm.weights_, device=device)),
        torch.distributions.MultivariateNormal(
            torch.tensor(gm.means_, device=device),
            covariance_matrix=torch.tensor(gm.covariances_, device=device),
        ),
    )
    adapters = {
        "sklearn": as_density(gm),
        "ours": ours,
        "torch": as_density(torch_dist),
        "callable": as_density(
            lambda A: mixture_log_prob_reference(A, gm.weights_, gm.means_, gm.covariances_)
        ),
    }
    assert isinstance(adapters["sklearn"], SklearnDensity)
    assert isinstance(adapters["torch"], TorchDensity)
    assert adapters["torch"].device.type == device
    assert isinstance(adapters["callable"], CallableDensity)
    for name, dens in adapters.items():
        got = evaluate_log_density(dens, Q)
        np.testing.assert_allclose(got, reference, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_matches_scipy_for_every_covariance_type(covariance_type, rng, device):
    X = rng.normal(size=(400, 4)) * [1, 2, 0.5, 1]
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    ours = GaussianMixtureDensity.from_sklearn(gm)
    cov = gm.covariances_
    full = {
        "full": lambda: cov,
        "tied": lambda: np.repeat(cov[None], 3, 0),
        "diag": lambda: np.array([np.diag(c) for c in cov]),
        "spherical": lambda: np.array([np.eye(4) * c for c in cov]),
    }[covariance_type]()
    Q = rng.normal(size=(100, 4)) * 2
    reference = mixture_log_prob_reference(Q, gm.weights_, gm.means_, full)
    np.testing.assert_allclose(ours.log_prob(Q), reference, rtol=1e-10)
    np.testing.assert_allclose(ours.log_prob(Q), gm.score_samples(Q), rtol=1e-10)
    # the torch path of the same code, on a tensor, answers a tensor
    got = ours.log_prob(torch.tensor(Q, device=device))
    assert isinstance(got, torch.Tensor) and got.device.type == device
    np.testing.assert_allclose(got.cpu().numpy(), reference, rtol=1e-10)


def _fitted_mixture(covariance_type, d, rng, shift=0.0):
    """A 5-component sklearn mixture fitted on two offset, anisotropic clouds in d dimensions,
    with query points around the data (some beyond it)."""
    X = rng.normal(size=(2000, d)) * rng.uniform(0.5, 2.0, d) + 3.0 * rng.normal(size=d)
    X[:1000] += 4.0
    X += shift
    gm = GaussianMixture(5, covariance_type=covariance_type, random_state=0).fit(X)
    Q = X[rng.choice(len(X), 5000)] + rng.normal(size=(5000, d))
    return gm, Q


@pytest.mark.parametrize("d", [2, 10, 50])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_matches_sklearn_score_samples_across_row_blocks(covariance_type, d, rng):
    """5,000 points in a working memory of 1 MiB: at least two blocks (a row needs more than
    8 * 10 * K = 400 bytes)."""
    gm, Q = _fitted_mixture(covariance_type, d, rng)
    ours = GaussianMixtureDensity.from_sklearn(gm)
    with sklearn.config_context(working_memory=1):
        got = ours.log_prob(Q)
    np.testing.assert_allclose(got, gm.score_samples(Q), rtol=1e-10)


@pytest.mark.parametrize("shift", [0.0, 1e3])
@pytest.mark.parametrize("d", [2, 10, 50])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_float32_mixture_error_is_bounded(covariance_type, d, shift, rng):
    """dtype='float32': |log p - sklearn's float64 log p| <= 1e-5 max(1, |log p|), also for
    data far from the origin (the points are centred before the cast)."""
    gm, Q = _fitted_mixture(covariance_type, d, rng, shift)
    got = GaussianMixtureDensity.from_sklearn(gm, dtype="float32").log_prob(Q)
    assert got.dtype == np.float64
    reference = gm.score_samples(Q)
    assert np.all(np.abs(got - reference) <= 1e-5 * np.maximum(1.0, np.abs(reference)))


def test_mixture_refuses_an_unknown_dtype():
    with pytest.raises(ValueError, match="dtype must be"):
        GaussianMixtureDensity([1.0], np.zeros((1, 2)), np.ones(1), "spherical", dtype="int32")


def test_isotropic_mixture_in_784_dimensions_matches_direct_formula(rng):
    means = rng.uniform(0, 1, size=(50, 784))
    var = 0.01
    dens = GaussianMixtureDensity.isotropic(means, var)
    Q = means[:5] + rng.normal(scale=0.05, size=(5, 784))
    sq = ((Q[:, None, :] - means[None]) ** 2).sum(-1)  # direct, no expansion
    comp = np.log(1 / 50) - 0.5 * 784 * np.log(2 * np.pi * var) - 0.5 * sq / var
    reference = np.logaddexp.reduce(comp, axis=1)
    assert np.all(reference > 710)  # p itself overflows float64
    np.testing.assert_allclose(dens.log_prob(Q), reference, rtol=1e-10)


def test_mixture_samples_have_the_mixture_moments(gap_mixture):
    w, m, c = gap_mixture
    dens = GaussianMixtureDensity(w, m, c)
    S = dens.sample(40000, random_state=0)
    mean = (w[:, None] * m).sum(0)
    cov = sum(wk * (ck + np.outer(mk - mean, mk - mean)) for wk, mk, ck in zip(w, m, c))
    np.testing.assert_allclose(S.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(S.T), cov, atol=0.05)


def test_sklearn_adapters(rng):
    X = rng.normal(size=(100, 2))
    kde = KernelDensity(bandwidth=0.3, kernel="tophat").fit(X)
    np.testing.assert_array_equal(as_density(kde).log_prob(X), kde.score_samples(X))
    cosine = as_density(KernelDensity(kernel="cosine").fit(X))  # scikit-learn cannot sample
    assert not cosine.can_sample
    with pytest.raises(TypeError, match="cannot draw samples"):
        cosine.sample(3)

    unfitted = BayesianGaussianMixture(n_components=2, random_state=0)
    adapter = as_density(unfitted)
    assert adapter.requires_fit
    fitted = adapter.fit(X)
    assert not hasattr(unfitted, "weights_")  # the user's estimator is not modified
    np.testing.assert_allclose(
        fitted.log_prob(X),
        BayesianGaussianMixture(n_components=2, random_state=0).fit(X).score_samples(X),
    )
    assert fitted.sample(7, random_state=0).shape == (7, 2)
    assert as_density(kde).sample(5, random_state=0).shape == (5, 2)


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_torch_module_with_log_prob_float32(rng, device):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.zeros(2))

        def log_prob(self, x):
            return torch.distributions.Normal(self.loc, 1.0).log_prob(x).sum(-1)

    dens = as_density(Model().to(device))
    assert dens.dtype == torch.float32 and dens.device.type == device
    X = rng.normal(size=(50, 2))
    reference = -0.5 * (X**2).sum(1) - np.log(2 * np.pi)
    got = dens.log_prob(X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, reference, rtol=1e-6)


def test_model_output_is_checked():
    X = np.zeros((10, 2))

    def nan_rows(A):
        out = np.zeros(len(A))
        out[:3] = np.nan
        return out

    with pytest.raises(ValueError, match="NaN for 3 and \\+inf for 0 of 10 points"):
        evaluate_log_density(as_density(nan_rows), X)
    with pytest.raises(ValueError, match="\\+inf for 10 of 10"):
        evaluate_log_density(as_density(lambda A: np.full(len(A), np.inf)), X)
    with pytest.raises(ValueError, match="shape \\(10, 1\\).*squeeze"):
        evaluate_log_density(as_density(lambda A: np.zeros((len(A), 1))), X)
    with pytest.raises(ValueError, match="shape \\(9,\\)"):
        evaluate_log_density(as_density(lambda A: np.zeros(len(A) - 1)), X)
    # -inf (zero density) is a valid answer
    assert np.all(
        evaluate_log_density(as_density(lambda A: np.full(len(A), -np.inf)), X) == -np.inf
    )


def test_bad_density_objects():
    with pytest.raises(TypeError, match="density must be"):
        as_density(3.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixtureDensity([1, -1], np.zeros((2, 2)), np.ones(2), "spherical")
    with pytest.raises(ValueError, match="shape"):
        GaussianMixtureDensity([1, 1], np.zeros((2, 2)), np.ones((3, 2)), "diag")
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixtureDensity([1], np.zeros((1, 2)), -np.eye(2)[None], "full")
    with pytest.raises(TypeError, match="cannot draw samples"):
        as_density(lambda A: np.zeros(len(A))).sample(3)


def test_mixture_works_in_row_blocks_within_working_memory(rng):
    """The (rows, K * d) blocks of a full-covariance mixture fit in scikit-learn's
    working_memory: numpy's peak allocation stays under the budget, and the blocks join up to
    scipy's log-density."""
    K, d, n = 200, 20, 5000
    means = rng.normal(size=(K, d))
    A = rng.normal(size=(K, d, d)) / np.sqrt(d)
    covs = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(d)
    weights = rng.uniform(0.5, 1.5, size=K)
    dens = GaussianMixtureDensity(weights, means, covs)
    Q = rng.normal(size=(n, d)) * 1.5
    dens.log_prob(Q[:2])  # any one-off allocations outside the measurement
    budget_mib = 8
    with sklearn.config_context(working_memory=budget_mib):
        tracemalloc.start()
        try:
            got = dens.log_prob(Q)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < budget_mib * 2**20  # all n rows at once would take n * K * d * 8 B = 160 MB
    reference = mixture_log_prob_reference(Q, weights / weights.sum(), means, covs)
    np.testing.assert_allclose(got, reference, rtol=1e-10)


def test_sklearn_adapter_sees_an_estimator_fitted_after_wrapping(fitted_gmm, rng):
    _, X = fitted_gmm
    gm = GaussianMixture(2, covariance_type="full", random_state=0)
    adapter = SklearnDensity(gm)
    assert adapter.requires_fit
    gm.fit(X)
    assert not adapter.requires_fit
    assert adapter.fit(X) is adapter  # fitted: used as it is, not refitted
    Q = rng.normal(size=(50, 3)) * 3
    reference = mixture_log_prob_reference(Q, gm.weights_, gm.means_, gm.covariances_)
    np.testing.assert_allclose(evaluate_log_density(adapter, Q), reference, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_mixture_refuses_an_asymmetric_covariance(covariance_type, rng):
    """Cholesky reads one triangle only; an asymmetric matrix is refused, relative to its
    scale, while rounding-size asymmetry is accepted and gives scipy's density."""
    sym = np.array([[2.0, 0.3], [0.3, 1.0]])
    asym = np.array([[2.0, 0.3], [0.1, 1.0]])  # its lower triangle alone is positive definite
    weights, means = np.ones(3), rng.normal(size=(3, 2))
    full = covariance_type == "full"
    name = "component 2" if full else "tied covariance"

    def covariances(last, good=sym):
        return np.stack([good, good, last]) if full else last

    for scale in (1.0, 1e-20):  # the tolerance is relative: a tiny matrix is no exception
        with pytest.raises(ValueError, match=f"{name}.* not symmetric"):
            GaussianMixtureDensity(weights, means, covariances(scale * asym), covariance_type)

    nearly_symmetric = 1e8 * sym
    nearly_symmetric[0, 1] += 2e8 * 1e-12  # 1e-12 of the largest entry, under rtol=1e-10
    covs = covariances(nearly_symmetric, good=1e8 * sym)
    dens = GaussianMixtureDensity(weights, 1e4 * means, covs, covariance_type)
    Q = 1e4 * rng.normal(size=(100, 2))
    symmetric = (nearly_symmetric + nearly_symmetric.T) / 2
    reference_covs = [1e8 * sym, 1e8 * sym, symmetric] if full else [symmetric] * 3
    reference = mixture_log_prob_reference(Q, weights / 3, 1e4 * means, reference_covs)
    np.testing.assert_allclose(dens.log_prob(Q), reference, rtol=1e-9)


@pytest.mark.parametrize(
    "covariance_type, bad, name",
    [
        ("full", [[1.0, 2.0], [2.0, 1.0]], "component 1"),  # eigenvalues 3 and -1
        ("full", [[1.0, 1.0], [1.0, 1.0]], "component 1"),  # eigenvalues 2 and 0
        ("tied", [[1.0, 2.0], [2.0, 1.0]], "tied covariance"),
        ("diag", [1.0, 0.0], "component 1"),
        ("spherical", -1.0, "component 1"),
    ],
)
def test_mixture_names_the_component_whose_covariance_is_not_positive(covariance_type, bad, name):
    bad = np.asarray(bad)
    full_matrix = bad if bad.ndim == 2 else np.diag(np.broadcast_to(bad, (2,)))
    assert np.linalg.eigvalsh(full_matrix).min() <= 0  # the closed-form eigenvalues above
    good = {"full": np.eye(2), "diag": np.ones(2), "spherical": 1.0}.get(covariance_type)
    covs = bad if covariance_type == "tied" else np.stack([good, bad, good])
    with pytest.raises(ValueError, match=f"{name}.*(positive definite|must be positive)"):
        GaussianMixtureDensity(np.ones(3), np.zeros((3, 2)), covs, covariance_type)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_sklearn_gaussian_mixture_is_differentiable_with_the_closed_form_gradient(
    covariance_type, rng
):
    """A fitted GaussianMixture is evaluated as score_samples does and differentiated by
    torch: the gradient of log p is sum_k r_k(x) C_k^-1 (mu_k - x), with the responsibilities
    r_k from scikit-learn's predict_proba. A refit after wrapping is followed; a subclass
    (which may score differently) and a BayesianGaussianMixture (whose score_samples is a
    variational expectation) keep their own score_samples."""
    X = rng.normal(size=(300, 3)) * [1.0, 2.0, 0.5]
    estimator = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    gm = clone(estimator).fit(X)
    adapter = as_density(gm)
    assert adapter.differentiable
    Q = rng.normal(size=(40, 3)) * 2
    np.testing.assert_allclose(adapter.log_prob(Q), gm.score_samples(Q), rtol=1e-10)
    T = torch.tensor(Q, requires_grad=True)
    adapter.log_prob_tensor(T).sum().backward()
    cov = gm.covariances_ if gm.covariance_type == "full" else np.array(
        [np.diag(c) for c in gm.covariances_]
    )
    r = gm.predict_proba(Q)
    expected = sum(
        r[:, [k]] * np.linalg.solve(cov[k], (gm.means_[k] - Q).T).T for k in range(3)
    )
    np.testing.assert_allclose(T.grad.numpy(), expected, rtol=1e-8, atol=1e-10)

    gm.fit(X[:150] + 5.0)  # refit in place: the adapter follows the new parameters
    np.testing.assert_allclose(adapter.log_prob(Q), gm.score_samples(Q), rtol=1e-10)
    gm.weights_ = gm.weights_[::-1].copy()  # a parameter array reassigned: followed too
    np.testing.assert_allclose(adapter.log_prob(Q), gm.score_samples(Q), rtol=1e-10)
    for name in ("_mixture_of", "_mixture"):  # an adapter pickled before the cache existed
        del adapter.__dict__[name]
    np.testing.assert_allclose(adapter.log_prob(Q), gm.score_samples(Q), rtol=1e-10)

    class Tempered(type(gm)):
        def score_samples(self, X):
            return 0.5 * super().score_samples(X)

    tempered = Tempered(**gm.get_params()).fit(X)
    wrapped = as_density(tempered)
    assert not wrapped.differentiable
    np.testing.assert_array_equal(wrapped.log_prob(Q), tempered.score_samples(Q))
    with pytest.raises(TypeError, match="torch tensors"):
        wrapped.log_prob_tensor(T)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        as_density(clone(estimator)).log_prob_tensor(T)
    bayesian = BayesianGaussianMixture(n_components=3, random_state=0).fit(X)
    assert not as_density(bayesian).differentiable
    np.testing.assert_array_equal(as_density(bayesian).log_prob(Q), bayesian.score_samples(Q))


@pytest.mark.parametrize("d", [4, 14])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_score_is_the_gradient_of_sklearns_log_density(covariance_type, d, rng):
    """log_prob_and_score: log p is scikit-learn's score_samples, and the score its central
    finite differences (step 1e-5, error O(1e-10)), also far out where the components'
    responsibilities are extreme; across row blocks (working_memory=0.05); in 4-D and 14-D
    (full and tied: the unrolled kernels, and a product)."""
    X = np.vstack([rng.normal(size=(150, d)) + 2, rng.normal(size=(150, d)) * 0.6 - 1])
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    Q = np.vstack([rng.normal(size=(400, d)) * 2, rng.normal(size=(5, d)) * 15])
    density = as_density(gm)
    assert density.has_score
    with sklearn.config_context(working_memory=0.05):  # blocks of about 80 rows
        log_p, score = density.log_prob_and_score(Q)
    np.testing.assert_allclose(log_p, gm.score_samples(Q), rtol=1e-10)
    h = 1e-5
    expected = np.empty_like(Q)
    for j in range(Q.shape[1]):
        step = np.zeros(Q.shape[1])
        step[j] = h
        expected[:, j] = (gm.score_samples(Q + step) - gm.score_samples(Q - step)) / (2 * h)
    scale = np.maximum(1.0, np.abs(expected).max(axis=1, keepdims=True))
    np.testing.assert_allclose(score / scale, expected / scale, rtol=0, atol=1e-7)


def test_a_single_gaussians_score_is_its_closed_form(rng):
    A = rng.normal(size=(5, 5))
    cov, mean = A @ A.T + 0.1 * np.eye(5), rng.normal(size=5)
    Q = rng.normal(size=(50, 5)) * 3
    _, score = GaussianMixtureDensity([1.0], mean[None], cov[None]).log_prob_and_score(Q)
    np.testing.assert_allclose(score, -np.linalg.solve(cov, (Q - mean).T).T, rtol=1e-9)


def test_a_subclass_that_changes_log_prob_has_no_closed_form_score(rng):
    """The closed form is the base mixture's gradient: a subclass with its own log_prob is
    refined by autograd through that log_prob instead."""
    from gendist.metric import ConformalMetric
    from gendist.refine import _gradient_method

    class Tempered(GaussianMixtureDensity):
        def log_prob(self, X):
            return 0.5 * super().log_prob(X)

    args = ([1.0, 2.0], [[0.0, 0.0], [2.0, 1.0]], np.stack([np.eye(2)] * 2))
    assert GaussianMixtureDensity(*args).has_score and not Tempered(*args).has_score
    assert _gradient_method(ConformalMetric(Tempered(*args), 0.0)) == "autograd"


def test_densities_without_a_closed_form_score_say_so(rng):
    X = rng.normal(size=(50, 2))
    kde = KernelDensity(kernel="tophat").fit(X)
    for density in (as_density(kde), as_density(lambda Z: -(Z**2).sum(1))):
        assert not density.has_score
        with pytest.raises(TypeError, match="no closed-form score"):
            density.log_prob_and_score(X)
    with pytest.raises(ValueError, match="expects"):
        GaussianMixtureDensity([1.0], np.zeros((1, 2)), np.eye(2)[None]).log_prob_and_score(X.T)


@pytest.mark.parametrize("d", [1, 3, 10, 50])
def test_a_gaussian_kernel_density_is_its_exact_kernel_sum_with_its_score(d, rng):
    """A Gaussian KernelDensity (sample weights, one of them zero; Scott's bandwidth) is
    evaluated as the mixture of its training points: log p is the kernel sum by scipy's
    logsumexp over scipy's pairwise distances, its score the central differences of that
    sum; score_samples' tree traversal agrees in few dimensions (it strays in 50-D)."""
    X = rng.normal(size=(300, d))
    w = rng.uniform(0.1, 1.0, 300)
    w[5] = 0.0
    kde = KernelDensity(bandwidth="scott").fit(X, sample_weight=w)
    h = kde.bandwidth_

    def reference(Z):
        squares = cdist(Z, X, "sqeuclidean") / (2 * h * h)
        return logsumexp(-squares, b=w / w.sum(), axis=1) - 0.5 * d * np.log(2 * np.pi * h * h)

    density = as_density(kde)
    assert density.differentiable and density.has_score
    Q = rng.normal(size=(40, d)) * 1.5
    log_p, score = density.log_prob_and_score(Q)
    np.testing.assert_allclose(log_p, reference(Q), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(density.log_prob(Q), reference(Q), rtol=1e-12, atol=1e-12)
    if d <= 10:
        np.testing.assert_allclose(log_p, kde.score_samples(Q), rtol=1e-6)
    for j in range(min(d, 3)):
        step = np.zeros(d)
        step[j] = 1e-6
        slope = (reference(Q + step) - reference(Q - step)) / 2e-6
        np.testing.assert_allclose(score[:, j], slope, rtol=1e-5, atol=1e-6)


def test_kernel_densities_that_are_no_gaussian_mixture_are_refused_by_from_sklearn(rng):
    X = rng.normal(size=(30, 2))
    for kde in (KernelDensity(kernel="epanechnikov").fit(X),
                KernelDensity(metric="manhattan").fit(X)):
        assert not as_density(kde).has_score
        with pytest.raises(ValueError, match="no Gaussian mixture"):
            GaussianMixtureDensity.from_sklearn(kde)
    minkowski = KernelDensity(metric="minkowski", metric_params={"p": 2}).fit(X)
    np.testing.assert_allclose(GaussianMixtureDensity.from_sklearn(minkowski).log_prob(X),
                               minkowski.score_samples(X), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_a_variance_whose_inverse_overflows_is_refused_before_any_nan(covariance_type):
    """Variances near the smallest float64 (a KernelDensity of bandwidth 1e-160 has 1e-320)
    overflow the expanded quadratic form's coefficients: a ValueError naming the component,
    where the log-densities were NaN everywhere. (Full covariances whiten by 1 / sqrt of the
    variance, which stays finite.) A bandwidth of 1e-140 is still exact."""
    variance = 1e-320
    cov = {"diag": np.full((1, 2), variance), "spherical": np.full(1, variance)}[covariance_type]
    with pytest.raises(ValueError, match=r"covariances\[0\].*too small for float64"):
        GaussianMixtureDensity([1.0], np.zeros((1, 2)), cov, covariance_type)
    kde = KernelDensity(bandwidth=1e-160).fit(np.random.default_rng(0).normal(size=(20, 2)))
    with pytest.raises(ValueError, match="too small for float64"):
        as_density(kde).log_prob(np.zeros((1, 2)))
    h, x = 1e-140, np.full((1, 2), 1e-130)
    tiny = KernelDensity(bandwidth=h).fit(np.zeros((1, 2)))
    expected = -(x**2).sum() / (2 * h * h) - np.log(2 * np.pi * h * h)
    np.testing.assert_allclose(as_density(tiny).log_prob(x), [expected], rtol=1e-12)


@pytest.mark.parametrize("d", [3, 60])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_rows_out_of_range_give_nan_or_zero_density(covariance_type, d, rng):
    """A NaN row gives NaN (refused downstream), a row far beyond float64's squares gives
    log p = -inf and a zero score, and the rows beside them keep scipy's answer, in every
    compiled path (direct and expanded forms, d = 3 and 60)."""
    cov = {"full": np.stack([np.eye(d) * s for s in (0.5, 2.0)]), "tied": np.eye(d),
           "diag": rng.uniform(0.5, 2.0, (2, d)), "spherical": np.array([0.5, 2.0])}
    mixture = GaussianMixtureDensity([0.3, 0.7], rng.normal(size=(2, d)), cov[covariance_type],
                                     covariance_type)
    Q = rng.normal(size=(6, d))
    Q[1, 0], Q[3] = np.nan, 1e200
    log_p, score = mixture.log_prob_and_score(Q)
    np.testing.assert_array_equal(np.isnan(log_p), [False, True, False, False, False, False])
    assert log_p[3] == -np.inf and not score[3].any()
    ok = [0, 2, 4, 5]
    full = {"full": cov["full"], "tied": np.stack([cov["tied"]] * 2),
            "diag": np.stack([np.diag(c) for c in cov["diag"]]),
            "spherical": np.stack([np.eye(d) * s for s in cov["spherical"]])}[covariance_type]
    reference = mixture_log_prob_reference(Q[ok], mixture.weights, mixture.means, full)
    np.testing.assert_allclose(log_p[ok], reference, rtol=1e-10)
    np.testing.assert_array_equal(mixture.log_prob(Q)[ok], log_p[ok])


def _random_mixture(covariance_type, d, K, rng):
    """A mixture with random weights, means and covariances, and its (K, d, d) covariances."""
    means = rng.normal(size=(K, d)) * 2.0
    if covariance_type in ("full", "tied"):
        L = rng.normal(size=(K, d, d)) * 0.4 + np.eye(d)
        full = L @ L.transpose(0, 2, 1)
        if covariance_type == "tied":
            full = np.stack([full[0]] * K)
        cov = full if covariance_type == "full" else full[0]
    elif covariance_type == "diag":
        cov = rng.uniform(0.2, 2.0, (K, d))
        full = np.stack([np.diag(c) for c in cov])
    else:
        cov = rng.uniform(0.2, 2.0, K)
        full = np.stack([np.eye(d) * c for c in cov])
    weights = rng.uniform(0.5, 1.5, K)
    density = GaussianMixtureDensity(weights, means, cov, covariance_type)
    return density, full


def _segment_nodes_reference(A, B, t):
    """(T, E, d) nodes A + t_j (B - A), written out in numpy."""
    return A[None] + t[:, None, None] * (B - A)[None]


@pytest.mark.parametrize("d", [1, 2, 3, 4, 10, 14, 52])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_log_density_along_segments_is_scipys_at_every_node(covariance_type, d, rng):
    """log_prob_on_segments (the identity from the ends from 4-D on, the nodes built in place
    below) against scipy's densities at the nodes written out: short and long segments,
    some far out in the tails, in every compiled path (unrolled and BLAS, direct and
    expanded diagonal forms)."""
    density, full = _random_mixture(covariance_type, d, 4, rng)
    E = 300
    A = rng.normal(size=(E, d)) * 2.0
    B = A + rng.normal(size=(E, d)) * rng.choice([0.1, 1.0, 6.0], size=(E, 1))
    A[:20] *= 15.0  # tails: log p of hundreds to thousands of nats below the modes
    t = np.array([0.1, 1 / 3, 0.5, 0.9])
    got = density.log_prob_on_segments(A, B, t)
    nodes = _segment_nodes_reference(A, B, t).reshape(-1, d)
    reference = mixture_log_prob_reference(nodes, density.weights, density.means, full)
    assert got.shape == (len(t), E)
    np.testing.assert_allclose(got.ravel(), reference, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_segments_far_beyond_the_components_are_evaluated_at_their_nodes(covariance_type, rng):
    """Ends 1e5 and 1e200 standard deviations out on either side of a component: the
    identity would round at the ends' scale (1e10 nats and more, or overflow), so those
    segments' nodes are evaluated directly and the node at the component keeps scipy's
    value; segments beside them keep the identity."""
    d = 5
    density, full = _random_mixture(covariance_type, d, 3, rng)
    centre, direction = density.means[0], np.eye(d)[0]
    A = rng.normal(size=(8, d))
    B = A + rng.normal(size=(8, d))
    A[0], B[0] = centre - 1e5 * direction, centre + 1e5 * direction
    A[1], B[1] = centre - 1e200 * direction, centre + 1e200 * direction
    t = np.array([0.25, 0.5, 0.75])
    got = density.log_prob_on_segments(A, B, t)
    nodes = _segment_nodes_reference(A, B, t).reshape(-1, d)
    reference = mixture_log_prob_reference(nodes, density.weights, density.means, full)
    reference = reference.reshape(len(t), -1)
    finite = np.isfinite(reference)
    assert np.isfinite(reference[1, :2]).all()  # the middle nodes sit on the component
    np.testing.assert_allclose(got[finite], reference[finite], rtol=1e-12, atol=1e-9)
    assert (got[~finite] == -np.inf).all()


def test_log_density_along_segments_follows_the_model_that_is_evaluated(rng):
    """A subclass's own log_prob, a scikit-learn estimator's score_samples and a callable are
    what the nodes get, node-major (row j: every segment's node at t[j])."""
    d = 4
    density, _ = _random_mixture("full", d, 3, rng)

    class Tempered(GaussianMixtureDensity):
        def log_prob(self, X):
            return 0.5 * super().log_prob(X)

    tempered = Tempered(density.weights, density.means, density.covariances)
    A, B = rng.normal(size=(50, d)), rng.normal(size=(50, d))
    t = np.array([0.2, 0.7])
    nodes = _segment_nodes_reference(A, B, t).reshape(-1, d)
    np.testing.assert_allclose(tempered.log_prob_on_segments(A, B, t).ravel(),
                               0.5 * density.log_prob(nodes), rtol=1e-12)
    X = rng.normal(size=(500, d))
    for estimator in (GaussianMixture(3, random_state=0).fit(X),
                      KernelDensity(bandwidth=0.7).fit(X)):
        got = as_density(estimator).log_prob_on_segments(A, B, t).ravel()
        np.testing.assert_allclose(got, estimator.score_samples(nodes), rtol=1e-9)
    callable_density = as_density(lambda P: -np.sum(P**2, axis=1))
    np.testing.assert_allclose(callable_density.log_prob_on_segments(A, B, t),
                               -np.sum(_segment_nodes_reference(A, B, t) ** 2, axis=2))


def test_log_density_along_segments_refuses_mismatched_shapes(rng):
    density, _ = _random_mixture("full", 4, 3, rng)
    A = rng.normal(size=(5, 4))
    t = np.array([0.5])
    for adapter in (density, as_density(lambda P: -np.sum(P**2, axis=1))):
        with pytest.raises(ValueError, match="segment ends"):
            adapter.log_prob_on_segments(A, A[:4], t)
        with pytest.raises(ValueError, match="segment ends"):
            adapter.log_prob_on_segments(A, A, t[:, None])
    with pytest.raises(ValueError, match=r"\(E, 4\)"):
        density.log_prob_on_segments(A[:, :3], A[:, :3], t)


def test_a_narrow_component_among_wide_ones_keeps_its_peak_on_long_segments(rng):
    """A collapsed component (variance 1e-6, scikit-learn's reg_covar) among two of variance
    1e12, segments of length about 1e6 through it: the identity's rounding at the ends'
    scale would hide the narrow peak (about 100 nats at the node on it), so those segments
    are evaluated directly and every node keeps scipy's value."""
    d = 5
    means = np.vstack([np.zeros(d), rng.normal(size=(2, d)) * 1e6])
    full = np.stack([np.eye(d) * 1e-6, np.eye(d) * 1e12, np.eye(d) * 1e12])
    density = GaussianMixtureDensity([1.0, 1.0, 1.0], means, full, "full")
    t = np.linspace(0.0, 1.0, 8)[1:-1]
    D = rng.normal(size=(400, d)) * 1e6
    A = -t[rng.integers(0, len(t), 400)][:, None] * D  # some node on the narrow mean
    got = density.log_prob_on_segments(A, A + D, t)
    nodes = _segment_nodes_reference(A, A + D, t).reshape(-1, d)
    reference = mixture_log_prob_reference(nodes, density.weights, density.means, full)
    assert reference.max() > 20.0  # the narrow peak is reached
    np.testing.assert_allclose(got.ravel(), reference, rtol=1e-12, atol=1e-9)


def test_only_segments_beyond_the_identitys_accuracy_are_evaluated_node_by_node(
    rng, monkeypatch
):
    """Ordinary segments take the identity (no node evaluated); a segment whose ends lie 1e5
    standard deviations out is evaluated at its nodes, alone."""
    d = 6
    density, _ = _random_mixture("full", d, 4, rng)
    evaluated = []
    direct = GaussianMixtureDensity._float64_log_prob

    def counting(self, X):
        evaluated.append(len(X))
        return direct(self, X)

    monkeypatch.setattr(GaussianMixtureDensity, "_float64_log_prob", counting)
    A = rng.normal(size=(500, d)) * 2.0
    B = A + rng.normal(size=(500, d))
    t = np.linspace(0.0, 1.0, 8)[1:-1]
    density.log_prob_on_segments(A, B, t)
    assert evaluated == []
    A[7], B[7] = density.means[0] - 1e5, density.means[0] + 1e5
    density.log_prob_on_segments(A, B, t)
    assert evaluated == [len(t)]


@pytest.mark.parametrize("d", [3, 6])
def test_log_density_along_segments_edge_cases(d, rng):
    """float32 mixtures answer in float64; no segment or no position gives an empty
    answer; NaN in an end gives NaN at that segment's nodes only, as log_prob does; torch
    tensors are refused; positions outside [0, 1] (beyond the identity's bound) keep scipy's
    values; an instance's own log_prob is the one evaluated."""
    density, full = _random_mixture("full", d, 3, rng)
    single = GaussianMixtureDensity(density.weights, density.means, density.covariances,
                                    dtype="float32")
    A, B = rng.normal(size=(40, d)), rng.normal(size=(40, d))
    t = np.array([0.25, 0.5])
    np.testing.assert_allclose(single.log_prob_on_segments(A, B, t),
                               density.log_prob_on_segments(A, B, t), rtol=1e-13)
    assert density.log_prob_on_segments(A, B, t[:0]).shape == (0, 40)
    assert density.log_prob_on_segments(A[:0], B[:0], t).shape == (2, 0)
    A[3, 0] = np.nan
    got = density.log_prob_on_segments(A, B, t)
    nodes = _segment_nodes_reference(A, B, t).reshape(-1, d)
    np.testing.assert_array_equal(np.isnan(got).ravel(), np.isnan(density.log_prob(nodes)))
    assert np.isnan(got[:, 3]).all() and np.isfinite(np.delete(got, 3, axis=1)).all()
    with pytest.raises(TypeError, match="numpy arrays"):
        density.log_prob_on_segments(torch.tensor(B), torch.tensor(B), t)
    beyond = np.array([-0.5, 1.5])  # points on the segments' lines, outside them
    outside = _segment_nodes_reference(B, B[::-1], beyond).reshape(-1, d)
    np.testing.assert_allclose(
        density.log_prob_on_segments(B, B[::-1], beyond).ravel(),
        mixture_log_prob_reference(outside, density.weights, density.means, full), rtol=1e-10
    )
    density.log_prob = lambda X: np.zeros(len(X))
    np.testing.assert_array_equal(density.log_prob_on_segments(B, B, t), np.zeros((2, 40)))


@pytest.mark.parametrize("d", [4, 13])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_a_narrow_component_far_from_the_centre_keeps_its_closed_form(covariance_type, d):
    """A component of variance 1e-16 at 1e4 from a unit one: its ends' terms, computed from
    points 5e3 from the centre, round by about 1e-8 of their whitened coordinates, which the
    identity would carry to the node on the mean (a few thousandths of a nat); such segments
    are evaluated directly: no node further from the closed form than direct evaluation
    (which rounds so too off the mean) by more than 1e-6 nats, the node on the mean within
    1e-6 of it."""
    variance = 1e-16
    means = np.zeros((2, d))
    means[1, 0] = 1e4
    cov = {"full": np.stack([np.eye(d), np.eye(d) * variance]),
           "diag": np.stack([np.ones(d), np.ones(d) * variance]),
           "spherical": np.array([1.0, variance])}[covariance_type]
    density = GaussianMixtureDensity([1.0, 1.0], means, cov, covariance_type)
    half = 300 * np.sqrt(variance) * np.eye(d)[0]
    A, B = (means[1] - half)[None], (means[1] + half)[None]
    t = np.array([0.25, 0.5])
    nodes = _segment_nodes_reference(A, B, t).reshape(-1, d)
    offset = (nodes[:, 0] - 1e4) / np.sqrt(variance)
    closed_form = np.log(0.5) - offset**2 / 2 - d / 2 * np.log(2 * np.pi * variance)
    got = density.log_prob_on_segments(A, B, t).ravel()
    direct = density.log_prob(nodes)
    assert np.all(np.abs(got - closed_form) <= np.abs(direct - closed_form) + 1e-6)
    assert abs(got[1] - closed_form[1]) <= 1e-6  # t = 0.5: the mean
