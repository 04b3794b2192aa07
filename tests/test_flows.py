"""RealNVPDensity (a RealNVP flow on zuko), zuko flows through TorchDensity, and the two-moons
interpolation experiment.

The references are independent of the code under test: scipy's normal log-density and a
finite-difference Jacobian for the change of variables, a trapezoidal integral over a grid,
a single Gaussian fitted in closed form, the data's own moments, and plain torch calls.
"""

import math
import sys

import joblib
import numpy as np
import pytest
import sklearn
from scipy.integrate import trapezoid
from scipy.stats import multivariate_normal, norm
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from gendist import GenerativeDistance, RealNVPDensity, TorchDensity, as_density
from gendist.datasets import make_moons

torch = pytest.importorskip("torch")
zuko = pytest.importorskip("zuko")

SMALL = {"n_transforms": 4, "hidden_features": (32, 32), "batch_size": 128}


@pytest.fixture(scope="module")
def moons():
    X, _ = make_moons(600, random_state=0)
    X_test, _ = make_moons(1000, random_state=1)  # a separate draw, never seen in training
    return X, X_test


@pytest.fixture(scope="module")
def flow64(moons):
    """A briefly trained float64 flow, for the exact identities."""
    threads = torch.get_num_threads()
    flow = RealNVPDensity(**SMALL, epochs=20, dtype="float64", random_state=0).fit(moons[0])
    assert torch.get_num_threads() == threads  # n_jobs=None trains on 1 thread, then restores
    return flow


@pytest.fixture(scope="module")
def trained(moons):
    """A float32 flow trained to early stopping."""
    return RealNVPDensity(
        n_transforms=6,
        hidden_features=(32, 32),
        batch_size=128,
        epochs=150,
        patience=20,
        random_state=0,
    ).fit(moons[0])


def test_latent_map_is_invertible(flow64, moons):
    X = moons[1][:200]
    Z = flow64.to_latent(X)
    assert Z.shape == X.shape and Z.dtype == np.float64
    np.testing.assert_allclose(flow64.from_latent(Z), X, atol=1e-9)
    Z2 = np.random.default_rng(0).standard_normal((200, 2)) * 2
    np.testing.assert_allclose(flow64.to_latent(flow64.from_latent(Z2)), Z2, atol=1e-9)


def test_log_prob_is_change_of_variables_with_numerical_jacobian(flow64, moons):
    """log p(x) = log N(f(x); 0, I) + log|det df/dx|, with the Jacobian of the whole map
    (standardisation included) by central finite differences."""
    X = np.vstack([moons[1][:15], [[3.0, -2.0], [-1.5, 1.5]]])  # data and far-away points
    h = 1e-6
    log_det = []
    for x in X:
        cols = []
        for k in range(2):
            e = np.zeros(2)
            e[k] = h
            cols.append((flow64.to_latent([x + e]) - flow64.to_latent([x - e]))[0] / (2 * h))
        log_det.append(np.log(abs(np.linalg.det(np.column_stack(cols)))))
    expected = norm.logpdf(flow64.to_latent(X)).sum(axis=1) + np.array(log_det)
    np.testing.assert_allclose(flow64.log_prob(X), expected, atol=1e-6)


def test_density_integrates_to_one(flow64):
    gx, gy = np.linspace(-4.0, 5.0, 400), np.linspace(-4.0, 4.5, 400)
    grid = np.stack(np.meshgrid(gx, gy, indexing="ij"), axis=-1).reshape(-1, 2)
    p = np.exp(flow64.log_prob(grid)).reshape(len(gx), len(gy))
    assert trapezoid(trapezoid(p, gy, axis=1), gx) == pytest.approx(1.0, abs=5e-3)


def test_training_lowers_held_out_nll(trained, moons):
    X, X_test = moons
    nll = -trained.score(X_test)
    untrained = RealNVPDensity(
        n_transforms=6, hidden_features=(32, 32), epochs=1, lr=1e-12, random_state=0
    ).fit(X)
    gaussian = multivariate_normal(X.mean(axis=0), np.cov(X.T, bias=True))  # the Gaussian MLE
    assert nll < -untrained.score(X_test) - 1.0
    assert nll < -gaussian.logpdf(X_test).mean() - 0.5
    # history and early stopping
    h = trained.history_
    assert len(h["train_nll"]) == len(h["val_nll"]) == trained.n_epochs_ <= 150
    assert trained.best_epoch_ == int(np.argmin(h["val_nll"]))
    assert trained.n_epochs_ <= trained.best_epoch_ + trained.patience + 1
    assert h["val_nll"][-1] < h["val_nll"][0]


def test_samples_have_the_data_moments(trained, moons):
    X_test = moons[1]
    S = trained.sample(5000, random_state=0)
    assert S.shape == (5000, 2) and S.dtype == np.float64
    np.testing.assert_allclose(S.mean(axis=0), X_test.mean(axis=0), atol=0.1)
    np.testing.assert_allclose(np.cov(S.T), np.cov(X_test.T), atol=0.12)
    np.testing.assert_array_equal(S, trained.sample(5000, random_state=0))


def test_score_and_score_samples(trained, moons):
    X = moons[1][:50]
    np.testing.assert_array_equal(trained.score_samples(X), trained.log_prob(X))
    assert trained.score(X) == pytest.approx(trained.log_prob(X).mean())


def test_reproducible_and_standardisation_log_det(moons):
    X = moons[0][:300]
    params = dict(**SMALL, epochs=3, dtype="float64")
    a = RealNVPDensity(**params, random_state=1).fit(X)
    b = RealNVPDensity(**params, random_state=1).fit(X)
    c = RealNVPDensity(**params, random_state=2).fit(X)
    np.testing.assert_array_equal(a.log_prob(X), b.log_prob(X))
    assert a.history_ == b.history_
    assert not np.allclose(a.log_prob(X), c.log_prob(X))
    # the same flow on data scaled by 10 and shifted: log p drops by exactly log(10^2)
    scaled = RealNVPDensity(**params, random_state=1).fit(10 * X + 3)
    np.testing.assert_allclose(
        scaled.log_prob(10 * X + 3), a.log_prob(X) - 2 * math.log(10), atol=1e-6
    )
    # without a validation split: every epoch runs, the last is kept
    d = RealNVPDensity(**params, validation_fraction=0.0, random_state=1).fit(X)
    assert d.history_["val_nll"] == [] and d.n_epochs_ == 3 and d.best_epoch_ == 2


def test_log_prob_tensor_gradient_matches_finite_differences(flow64, moons):
    X = moons[1][:10]
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    out = flow64.log_prob_tensor(x)
    np.testing.assert_allclose(out.detach().numpy(), flow64.log_prob(X), atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), x)
    h = 1e-6
    fd = np.column_stack(
        [(flow64.log_prob(X + h * e) - flow64.log_prob(X - h * e)) / (2 * h) for e in np.eye(2)]
    )
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-5, atol=1e-6)
    # answers in the dtype of its input
    out32 = flow64.log_prob_tensor(torch.tensor(X, dtype=torch.float32))
    assert out32.dtype == torch.float32


def test_evaluation_leaves_torch_threads_alone(flow64, moons, monkeypatch):
    """No evaluation touches torch's process-wide thread setting; with a small working_memory
    the row blocks join up to one plain torch call on all the points."""
    calls = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    X = moons[1][:200]
    with sklearn.config_context(working_memory=0.02):  # a few points per block
        log_p = flow64.log_prob(X)
        Z = flow64.to_latent(X)
        X_back = flow64.from_latent(Z)
    flow64.log_prob_tensor(torch.tensor(X))
    flow64.sample(5, random_state=0)
    assert calls == []
    with torch.no_grad():
        dist = flow64.flow_()
        x = torch.tensor((X - flow64.mean_) / flow64.scale_)
        z_ref = dist.transform(x).numpy()
        log_p_ref = dist.log_prob(x).numpy() - np.log(flow64.scale_).sum()
    np.testing.assert_allclose(log_p, log_p_ref, rtol=1e-12)
    np.testing.assert_allclose(Z, z_ref, rtol=1e-12)
    np.testing.assert_allclose(X_back, X, atol=1e-9)


@pytest.mark.parametrize("n_jobs", [None, 1, 2, -1, -2])
def test_fit_trains_on_joblib_n_jobs_threads_and_restores(n_jobs, moons, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    RealNVPDensity(**SMALL, epochs=1, n_jobs=n_jobs, random_state=0).fit(moons[0][:100])
    cores = joblib.cpu_count()
    expected = {None: 1, 1: 1, 2: 2, -1: cores, -2: max(cores - 1, 1)}[n_jobs]
    assert calls == [expected, 7]  # set for the training, then torch's setting back


def test_errors(flow64):
    with pytest.raises(ValueError, match="at least 2"):
        RealNVPDensity().fit(np.zeros((10, 1)))
    bad = np.zeros((10, 2))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RealNVPDensity().fit(bad)
    unfitted = RealNVPDensity()
    assert unfitted.requires_fit and not flow64.requires_fit
    for call in (
        lambda: unfitted.log_prob(np.zeros((2, 2))),
        lambda: unfitted.sample(3),
        lambda: unfitted.to_latent(np.zeros((2, 2))),
        lambda: unfitted.from_latent(np.zeros((2, 2))),
        lambda: unfitted.log_prob_tensor(torch.zeros(2, 2)),
    ):
        with pytest.raises(NotFittedError):
            call()
    with pytest.raises(ValueError, match="3 features"):
        flow64.log_prob(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="1 features"):
        flow64.to_latent(np.zeros((4, 1)))


@pytest.mark.parametrize(
    "params, error",
    [
        ({"epochs": 0}, ValueError),
        ({"n_transforms": 1.5}, TypeError),
        ({"hidden_features": 64}, TypeError),
        ({"lr": -1.0}, ValueError),
        ({"validation_fraction": 1.0}, ValueError),
        ({"activation": "gelu"}, ValueError),
        ({"dtype": "int32"}, ValueError),
        ({"n_jobs": 0}, ValueError),
    ],
)
def test_parameter_errors(params, error):
    with pytest.raises(error, match=next(iter(params))):
        RealNVPDensity(**params).fit(np.random.default_rng(0).normal(size=(20, 2)))


def test_missing_zuko_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "zuko", None)
    with pytest.raises(ImportError, match=r"gendist\[flows\]"):
        RealNVPDensity().fit(np.random.default_rng(0).normal(size=(20, 2)))


def test_sklearn_conventions(flow64):
    params = flow64.get_params()
    assert params["dtype"] == "float64" and params["hidden_features"] == (32, 32)
    fresh = clone(flow64)
    assert fresh.requires_fit and fresh.get_params() == params


def test_flow_in_generative_distance_is_fitted_as_a_copy_or_used_as_is(moons):
    X = moons[0][:200]
    flow = RealNVPDensity(**SMALL, epochs=2, random_state=0)
    est = GenerativeDistance(density=flow, n_neighbors=10).fit(X)
    # an unfitted flow is a parameter: the estimator fits a copy and leaves it unfitted
    assert flow.requires_fit and est.density_ is not flow and not est.density_.requires_fit
    np.testing.assert_allclose(est.log_prob_, est.density_.log_prob(X))
    # a fitted flow is used as it is, never refitted
    flow.fit(X)
    weights = [p.clone() for p in flow.flow_.parameters()]
    history = flow.history_
    est2 = GenerativeDistance(density=flow, n_neighbors=10).fit(X + 0.5)
    assert est2.density_ is flow and flow.history_ is history
    assert all(torch.equal(a, b) for a, b in zip(weights, flow.flow_.parameters()))
    np.testing.assert_allclose(est2.log_prob_, flow.log_prob(X + 0.5))


def test_zuko_maf_through_torch_density(moons):
    X = moons[0][:200].astype(np.float32).astype(np.float64)
    torch.manual_seed(0)
    module = zuko.flows.MAF(2, transforms=2, hidden_features=[16, 16])
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    x = torch.tensor(X, dtype=torch.float32)
    for _ in range(30):
        loss = -module().log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist = module()

    def reference(points):
        with torch.no_grad():
            return dist.log_prob(torch.tensor(points, dtype=torch.float32)).double().numpy()

    adapter = as_density(dist)
    assert isinstance(adapter, TorchDensity) and adapter.differentiable
    assert isinstance(as_density(module), TorchDensity)  # the lazy module works as well

    est = GenerativeDistance(density=dist, n_neighbors=10).fit(X)
    ref = GenerativeDistance(density=reference, n_neighbors=10).fit(X)
    lazy = GenerativeDistance(density=module, n_neighbors=10).fit(X)
    np.testing.assert_allclose(est.log_prob_, reference(X), rtol=1e-6)
    np.testing.assert_allclose(lazy.log_prob_, est.log_prob_, rtol=1e-6)
    np.testing.assert_allclose(est.graph_.toarray(), ref.graph_.toarray(), rtol=1e-5)
    D = est.transform(X[:5])
    np.testing.assert_allclose(D, ref.transform(X[:5]), rtol=1e-5)
    g = est.geodesic(0, 1)
    assert np.isfinite(g.length) and np.allclose(g.points[[0, -1]], X[[0, 1]])

    sampled = GenerativeDistance(
        density=dist, vertices="samples", n_vertex_samples=150, n_neighbors=10, random_state=0
    ).fit(X)
    assert sampled.vertices_.shape == (350, 2)
    xt = torch.tensor(X[:4], requires_grad=True)
    (grad,) = torch.autograd.grad(adapter.log_prob_tensor(xt).sum(), xt)
    assert grad.dtype == torch.float64 and torch.isfinite(grad).all() and grad.abs().sum() > 0
