"""The compute layer's numerics against numpy and scipy: the compiled exp and logsumexp."""

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp

from gendist._compute import exp_in_place, logsumexp


def test_exp_is_within_one_ulp_of_numpys_over_the_normal_range():
    x = np.linspace(-708.0, 709.0, 2_000_003)
    x = np.concatenate([x, np.random.default_rng(0).uniform(-1, 1, 100_000), [0.0, -0.0]])
    expected = np.exp(x)
    got = exp_in_place(x.copy())
    ulps = np.abs(got - expected) / np.spacing(expected)
    assert ulps.max() <= 1.0
    assert got[-1] == got[-2] == 1.0


def test_compiled_log_is_within_one_ulp_of_numpys_from_the_subnormals_to_the_largest():
    """gendist._numba.log_in_place against numpy's log: 2 million values spread over every
    binade of float64 (subnormals included), the neighbourhood of 1 (where log is smallest
    relative to its argument) and of sqrt(2) (where the reduction switches); 0 gives -inf,
    negative values and NaN NaN, +inf +inf."""
    from gendist._numba import log_in_place

    rng = np.random.default_rng(1)
    x = np.concatenate([
        2.0 ** rng.uniform(-1074, 1024, 1_000_000),
        1.0 + rng.uniform(-1e-3, 1e-3, 500_000),
        np.sqrt(2.0) * (1.0 + rng.uniform(-1e-12, 1e-12, 10_000)),
        [5e-324, 2.2250738585072014e-308, np.finfo(np.float64).max, 1.0, 2.0, 0.5],
    ])
    got = x.copy()
    log_in_place(got, np.empty_like(x), np.empty_like(x))
    expected = np.log(x)
    ulps = np.abs(got - expected) / np.spacing(np.abs(expected))
    assert ulps.max() <= 1.0 and got[-3] == 0.0
    special = np.array([0.0, -0.0, -1.0, -np.inf, np.nan, np.inf])
    log_in_place(special, np.empty(6), np.empty(6))
    assert special[0] == special[1] == -np.inf and np.isnan(special[2:5]).all()
    assert special[5] == np.inf


def test_exp_flushes_subnormal_results_to_zero_and_keeps_nan_and_infinities():
    x = np.concatenate([np.linspace(-800.0, -708.0001, 1000), [-np.inf, np.nan, -1.0]])
    got = exp_in_place(x.copy())
    assert np.all(got[:-3] == 0.0) and np.exp(-708.0001) > 0  # numpy's are subnormal or 0
    assert got[-3] == 0.0 and np.isnan(got[-2]) and got[-1] == np.exp(-1.0)
    # values above 709 (near float64's largest) and +inf are numpy's, overflow included
    x = np.concatenate([np.linspace(700.0, 709.78, 1000), [np.inf]])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(exp_in_place(x.copy()), np.exp(x))


def test_exp_of_a_read_only_array_is_refused_as_numpy_refuses_it():
    a = np.zeros(1000)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        exp_in_place(a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_of_small_strided_and_float32_arrays_is_numpys(dtype):
    def cases():  # below the compiled kernel's size, strided (changed in place), float32
        x = [np.random.default_rng(1).uniform(-50, 50, size=(600, 3)).astype(dtype) for _ in "abc"]
        return [x[0][:100], x[1][:, 1]] + ([x[2]] if dtype == np.float32 else [])

    for a, fresh in zip(cases(), cases()):
        np.testing.assert_array_equal(exp_in_place(a), np.exp(fresh))


@pytest.mark.parametrize("axis", [0, 1])
def test_logsumexp_equals_scipys(axis):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(12, 3000)) * 40
    a[:, 5] = -np.inf  # an all -inf slice along axis 0
    a[3, 7] = np.inf
    a[:, 9] = -720.0  # terms below exp(-708) relative to the slice's max, which the compiled
    a[0, 9] = 0.0  # exp flushes to zero: below the sum's rounding
    a[4, 11] = np.nan
    a = a if axis == 0 else a.T.copy()
    expected = scipy_logsumexp(a, axis=axis)
    for overwrite in (False, True):
        got = logsumexp(a.copy(), axis=axis, overwrite=overwrite)
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-13)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


def _mixture_case(rng, d, n=300, K=7):
    """Centred points (d, n), upper-triangular whitening P (d, d * K) at [l, j * K + k], bias,
    log-norms; row 1 overflows (every term -inf) and row 2 holds a NaN. Returns them with the
    whitened coordinates w (n, d, K) computed by numpy."""
    XT = rng.normal(scale=3.0, size=(d, n))
    XT[:, 1] = 1e200
    XT[0, 2] = np.nan
    P = np.triu(rng.normal(size=(K, d, d))).transpose(1, 2, 0).reshape(d, d * K)
    bias, log_norm = rng.normal(size=d * K), rng.normal(size=K)
    with np.errstate(over="ignore", invalid="ignore"):
        w = (XT.T @ P + bias).reshape(n, d, K)
    return XT, P, bias, log_norm, w


def _mixture_reference(w, log_norm):
    """log p (scipy's logsumexp of ``log_norm - |w_k|^2``) and the responsibilities (K, n)."""
    with np.errstate(over="ignore", invalid="ignore"):
        terms = log_norm[None] - (w**2).sum(axis=1)
        expected = scipy_logsumexp(terms, axis=1)
        gamma = np.exp(terms - expected[:, None])
    return expected, gamma.T


def test_the_compiled_mixture_pass_is_scipys_logsumexp_of_the_squares():
    """gendist._numba.mixture_log_prob against scipy's logsumexp of ``log_norm - |w|^2``
    (w = prod + bias, per component) and the responsibilities from it: random blocks, a
    row whose squares overflow (every term -inf: log p = -inf, no weight) and a NaN row."""
    from gendist._numba import mixture_log_prob

    rng = np.random.default_rng(0)
    n, d, K = 300, 4, 7
    prod = rng.normal(scale=3.0, size=(n, d * K))
    prod[1] = 1e200
    prod[2, 5] = np.nan
    bias, log_norm = rng.normal(size=d * K), rng.normal(size=K)
    w = (prod + bias).reshape(n, d, K)
    with np.errstate(over="ignore", invalid="ignore"):
        terms = log_norm[None] - (w**2).sum(axis=1)
        expected = scipy_logsumexp(terms, axis=1)
        gamma = np.exp(terms - expected[:, None])
    out = np.empty(n)
    mixture_log_prob(prod.copy(), bias, log_norm, out, False)
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-14)
    assert out[1] == -np.inf and np.isnan(out[2])
    weighted = prod.copy()
    mixture_log_prob(weighted, bias, log_norm, out, True)
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=1e-14)
    good = np.isfinite(expected)
    np.testing.assert_allclose(weighted[good], (w * gamma[:, None, :]).reshape(n, -1)[good],
                               rtol=1e-13, atol=1e-300)
    assert np.all(weighted[1] == 0.0)  # -inf: no component, no gradient


@pytest.mark.parametrize("d", [1, 4, 12])
def test_the_unrolled_mixture_kernels_are_scipys_logsumexp_of_the_squares(d):
    """gendist._numba.mixture_kernels and mixture_logsumexp against scipy's logsumexp of
    ``log_norm - |w_k|^2`` per component, ``w = x^T P_k + b_k`` by numpy, with the
    responsibilities; the score kernel against numpy's ``sum_k g_k P_k w_k``. A row whose
    squares overflow gives log p = -inf and no weight, a NaN row NaN."""
    from gendist._numba import mixture_kernels, mixture_logsumexp

    rng = np.random.default_rng(d)
    XT, P, bias, log_norm, w = _mixture_case(rng, d)
    n, K = XT.shape[1], log_norm.size
    expected, gamma = _mixture_reference(w, log_norm)
    good = np.isfinite(expected)
    terms_kernel, score_kernel = mixture_kernels(d)
    for responsibilities in (False, True):
        terms, top, out = np.empty((K, n)), np.empty(n), np.empty(n)
        terms_kernel(XT, P, bias, log_norm, terms, top)
        mixture_logsumexp(terms, top, out, responsibilities)
        np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)
        assert out[1] == -np.inf and np.isnan(out[2])
    np.testing.assert_allclose(terms[:, good], gamma[:, good], rtol=1e-12, atol=1e-300)
    assert np.all(terms[:, 1] == 0.0) and np.all(terms[:, 2] == 0.0)
    score = np.zeros((d, good.sum()))
    score_kernel(XT[:, good].copy(), P, bias, terms[:, good].copy(), score)
    weighted = w[good] * gamma.T[good][:, None, :]  # (m, d, K)
    reference = np.einsum("ljk,mjk->lm", P.reshape(d, d, K), weighted)
    np.testing.assert_allclose(score, reference, rtol=1e-11, atol=1e-12)


def test_mixture_kernels_compile_where_nothing_can_be_written(monkeypatch, tmp_path):
    """With no writable place for the generated module, the kernels are compiled in the process
    and agree with the cached ones; widths outside [1, 12] are refused."""
    import gendist._numba as compiled_kernels

    rng = np.random.default_rng(3)
    XT, P, bias, log_norm, _ = _mixture_case(rng, 3, n=50, K=4)
    XT = XT[:, 3:].copy()
    results = []
    for where in (None, tmp_path / "a-file" / "kernels"):
        compiled_kernels.mixture_kernels.cache_clear()
        if where is not None:
            (tmp_path / "a-file").write_text("")  # a file where a directory would go
            monkeypatch.setattr(compiled_kernels, "_generated_dir", lambda w=where: str(w))
        terms, top = np.empty((4, XT.shape[1])), np.empty(XT.shape[1])
        kernel = compiled_kernels.mixture_kernels(3)[0]
        kernel(XT, P, bias, log_norm, terms, top)
        results.append(terms)
        source = kernel.py_func.__code__.co_filename
        assert source.endswith(".py") if where is None else source.startswith("<gendist")
    compiled_kernels.mixture_kernels.cache_clear()
    np.testing.assert_array_equal(results[0], results[1])
    for bad in (0, 13):
        with pytest.raises(ValueError, match="n_features must be in"):
            compiled_kernels.mixture_kernels(bad)


def test_a_generated_kernel_module_that_was_changed_is_written_again(monkeypatch, tmp_path):
    """The module file is compared with the source this version generates: one overwritten
    by anything else is replaced before it is imported."""
    import gendist._numba as compiled_kernels

    monkeypatch.setattr(compiled_kernels, "_generated_dir", lambda: str(tmp_path))
    compiled_kernels.mixture_kernels.cache_clear()
    compiled_kernels.mixture_kernels(2)
    (written,) = tmp_path.glob("mixture_2_*.py")
    source = written.read_text()
    written.write_text("raise RuntimeError('not the generated kernels')\n")
    compiled_kernels.mixture_kernels.cache_clear()
    try:
        terms_kernel, _ = compiled_kernels.mixture_kernels(2)
    finally:
        compiled_kernels.mixture_kernels.cache_clear()
    assert written.read_text() == source
    terms, top = np.empty((1, 1)), np.empty(1)
    terms_kernel(np.zeros((2, 1)), np.eye(2), np.zeros(2), np.zeros(1), terms, top)
    assert terms[0, 0] == 0.0 and top[0] == 0.0


def test_the_compiled_trapezoid_of_factors_is_scipys_logsumexp_of_the_log_terms():
    """gendist._numba.log_trapezoid_of_factors (beta = 1) against scipy's logsumexp of
    ``log w_k - softplus(log p_k - log lam)`` over the nodes: ordinary segments, segments whose
    factors all underflow (log p - log lam from 700 to 1e4: summed in log space), a zero
    density (-inf: factor 1), an infinite one (+inf: factor 0, and -inf where every node has
    it), NaN; with interior nodes (n_quad = 8) and without (n_quad = 2)."""
    from gendist._numba import log_trapezoid_of_factors

    rng = np.random.default_rng(5)
    log_lam = -3.0
    for n_quad in (2, 8):
        E = 400
        log_p = rng.normal(scale=30.0, size=(n_quad, E))  # ends first, then interior nodes
        log_p[:, :50] = rng.uniform(700.0, 1e4, size=(n_quad, 50)) + log_lam
        log_p[0, 60] = -np.inf
        log_p[:, 61] = np.inf
        log_p[-1, 62] = np.inf
        log_p[-1, 63] = np.nan
        w = np.full(n_quad, 1.0 / (n_quad - 1))
        w[[0, 1]] *= 0.5  # the ends
        x = log_p - log_lam
        with np.errstate(invalid="ignore"):
            softplus = np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
        expected = scipy_logsumexp(np.log(w)[:, None] - softplus, axis=0)
        out = np.empty(E)
        w_inner = w[2] if n_quad > 2 else 0.0
        log_trapezoid_of_factors(log_p[0], log_p[1], log_p[2:], log_lam, w[0], w_inner,
                                 -668.0, out)
        np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)
        assert np.all(out[:50] < -668.0) and out[61] == -np.inf and np.isnan(out[63])
        assert np.array_equal(np.isnan(out), np.isnan(expected))


def test_log_segment_norms_are_scale_safe_euclidean_lengths(rng):
    """log |B - A| against Python's math.hypot (scale-safe by construction), from lengths whose
    squares underflow to ones whose squares overflow; zero rows give -inf, NaN rows NaN."""
    import math

    from gendist._compute import log_segment_norms

    for d in (1, 2, 7):
        A = rng.normal(size=(64, d))
        B = A + rng.normal(size=(64, d))
        B[3] = A[3]  # zero length
        for scale in (1e-200, 1e-155, 1.0, 1e155, 1e200):
            a, b = A * scale, B * scale
            got = log_segment_norms(a, b)
            with np.errstate(divide="ignore"):
                expected = [math.log(math.hypot(*(y - x))) if (y != x).any() else -np.inf
                            for x, y in zip(a, b)]
            np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-12)
    A[5, 0] = np.nan
    assert np.isnan(log_segment_norms(A, B)[5]) and not np.isnan(log_segment_norms(A, B)[6])
