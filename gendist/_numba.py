"""Compiled kernels (numba) and the one decorator that compiles them.

Importing this module imports numba (about a second); the modules that use it import it
where it is used, so that ``import gendist`` stays light.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys

import numba
import numpy as np

#: adding 1.5 * 2^52 to a float64 of magnitude below 2^51 rounds it to an integer, which the
#: low bits of the sum then hold (Cody-Waite range reduction without a float-to-int
#: conversion, which AVX2 lacks for 64-bit integers and which would stop vectorisation)
_ROUND = 6755399441055744.0
_ROUND_BITS = int(np.array([_ROUND]).view(np.int64)[0])
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two: k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10

#: the kernel's domain: below EXP_MIN (exp(-708) = 3.3e-308, just above the subnormals, which
#: start at 2.2e-308) results are flushed to zero;
#: above EXP_MAX (where exp approaches float64's largest value) it gives +inf, so that callers
#: send larger values to numpy
EXP_MIN = -708.0
EXP_MAX = 709.0


def compiled(function=None, **options):
    """``numba.njit`` without bounds checks, releasing the GIL, cached on disk where numba
    finds a writable place (beside this file, or ``NUMBA_CACHE_DIR`` / the user's cache
    directory); compiled in each process where it finds none (a read-only install).

    ``options`` go to ``numba.njit`` (``fastmath``, ...). Usable bare or with options.
    """
    if function is None:
        return lambda f: compiled(f, **options)
    options = {"nogil": True, "boundscheck": False, **options}
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(**options)(function)


# numpy's float64 exp is a scalar libm call on CPUs without AVX-512 (8-10 ns a value on the
# AVX2 machine of the benchmarks), and numba has no vector exp without Intel's SVML: this
# loop is vectorised by LLVM (about 2 ns a value, 4-5x numpy there) and within 1 ulp of
# numpy's exp on [EXP_MIN, EXP_MAX] (tests/test_compute.py). It is used on every CPU; on
# AVX-512 ones, where numpy's exp is vectorised too, the gain has not been measured. The
# polynomial is exp's Taylor series to degree 13, whose remainder on |r| <= ln(2) / 2 is
# below 6e-18; "contract" lets LLVM fuse its multiply-adds.
@compiled(fastmath={"contract"})
def exp_in_place(flat, scratch):  # pragma: no cover - compiled
    """``flat[:] = exp(flat)`` for a 1-D float64 array, using a float64 ``scratch`` of its size.

    Values below :data:`EXP_MIN` give 0 (exp there is below 3.3e-308, near or past the
    subnormals), above
    :data:`EXP_MAX` +inf (exact only from 709.79 on: the caller sends such arrays to numpy);
    NaN stays NaN.
    """
    n = flat.size
    for i in range(n):
        x = flat[i]
        low = x < EXP_MIN
        high = x > EXP_MAX
        c = EXP_MIN if low else (EXP_MAX if high else x)
        t = c * _LOG2E + _ROUND
        scratch[i] = t
        k = t - _ROUND
        r = (c - k * _LN2_HI) - k * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        flat[i] = 0.0 if low else (np.inf if high else p)
    bits = scratch.view(np.int64)
    for i in range(n):  # 2^k from the integer k in the low bits of t
        bits[i] = (bits[i] - _ROUND_BITS + 1023) << 52
    for i in range(n):
        flat[i] *= scratch[i]


_TINY = 2.2250738585072014e-308  # the smallest normal float64
_TWO54 = 18014398509481984.0
_MANTISSA = np.uint64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.uint64(0x3FF0000000000000)
_TWO52_BITS = np.uint64(0x4330000000000000)  # 2^52: its low mantissa bits hold an integer
_SHIFT = np.uint64(52)
_EXPONENT = np.uint64(0x7FF)
_BIAS = 4503599627371519.0  # 2^52 + 1023
_SQRT2 = 1.4142135623730951
# fdlibm's e_log.c: log(1 + f) = f - (f^2 / 2 - s (f^2 / 2 + R(s^2))), s = f / (2 + f)
_LG1, _LG2, _LG3 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01
_LG4, _LG5, _LG6 = 2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


# numpy's float64 log is a scalar libm call on AVX2 CPUs (about 10 ns a value here), like
# its exp (see exp_in_place): this is fdlibm's algorithm (e_log.c, within 1 ulp) in three
# vectorised passes, the exponent and mantissa split through integer views of two scratch
# arrays, without a float-to-int conversion. numba's error model "numpy" drops the
# ZeroDivisionError check of its division, which kept LLVM from vectorising the loop.
@compiled(fastmath={"contract"}, error_model="numpy")  # no ZeroDivisionError branch
def log_in_place(flat, scratch, exponent):  # pragma: no cover - compiled
    """``flat[:] = log(flat)`` for a 1-D float64 array, using two float64 scratch arrays of its
    size; within 1 ulp of numpy's log, subnormals included; 0 gives -inf, negative values
    and NaN NaN, +inf +inf."""
    n = flat.size
    for i in range(n):  # subnormals scaled into the normal range (and 2^54 subtracted below)
        x = flat[i]
        scratch[i] = x * _TWO54 if x < _TINY else x
    bits, exp_bits = scratch.view(np.uint64), exponent.view(np.uint64)
    for i in range(n):
        b = bits[i]
        exp_bits[i] = ((b >> _SHIFT) & _EXPONENT) | _TWO52_BITS
        bits[i] = (b & _MANTISSA) | _ONE_BITS
    for i in range(n):
        x = flat[i]
        m = scratch[i]
        k = exponent[i] - _BIAS - (54.0 if x < _TINY else 0.0)
        big = m > _SQRT2
        m = 0.5 * m if big else m
        k = k + 1.0 if big else k
        f = m - 1.0
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
        t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
        half = 0.5 * f * f
        r = k * _LN2_HI - ((half - (s * (half + t1 + t2) + k * _LN2_LO)) - f)
        r = -np.inf if x == 0.0 else r
        r = np.nan if x < 0.0 else r
        r = x if not x < np.inf else r  # +inf and NaN
        flat[i] = r


@compiled(fastmath={"contract"}, error_model="numpy")  # vectorised divisions
def log_trapezoid_of_factors(ends_a, ends_b, inner, log_lam, w_end, w_inner, log_underflow,
                             out):  # pragma: no cover - compiled
    """The trapezoidal rule of the conformal factor relative to its largest value, ``beta = 1``:
    ``out[e] = log(w_end (r(ends_a[e]) + r(ends_b[e])) + w_inner sum_k r(inner[k, e]))`` with
    ``r(v) = (1 + exp(v - log_lam))^-1 = h / h_max``, from the log-densities ``v`` at the ends
    and interior nodes of every segment, in one compiled pass (one exp a node, a log a
    segment), where numpy made a pass over the nodes for each operation.

    Where the sum is below ``exp(log_underflow)`` (where terms flushed to zero by
    :func:`exp_in_place` may matter) it is recomputed in log space,
    ``logsumexp_k(log w_k - softplus(v_k - log_lam))``, so it is right down to the smallest
    float64. NaN log-densities give NaN.

    Parameters
    ----------
    ends_a, ends_b : ndarray of shape (E,)
        ``log p`` at the segments' ends.
    inner : ndarray of shape (T - 2, E)
        ``log p`` at the interior nodes, node-major.
    log_lam : float
    w_end, w_inner : float
        The rule's weights of an end node and of an interior node.
    log_underflow : float
    out : ndarray of shape (E,)
        Output.
    """
    T2, E = inner.shape
    e_a, e_b, e_in = np.empty(E), np.empty(E), np.empty(T2 * E)
    for e in range(E):
        e_a[e] = ends_a[e] - log_lam
        e_b[e] = ends_b[e] - log_lam
    for k in range(T2):
        for e in range(E):
            e_in[k * E + e] = inner[k, e] - log_lam
    scratch, logs = np.empty(max(E, T2 * E)), np.empty(T2 + 2)
    exp_in_place(e_a, scratch)  # above EXP_MAX: +inf, r = 0 (exact below 1e-308 of the sum)
    exp_in_place(e_b, scratch)
    exp_in_place(e_in, scratch)
    for e in range(E):
        out[e] = w_end * (1.0 / (1.0 + e_a[e]) + 1.0 / (1.0 + e_b[e]))
    for k in range(T2):
        for e in range(E):
            out[e] += w_inner * (1.0 / (1.0 + e_in[k * E + e]))
    log_in_place(out, e_a, e_b)
    for e in range(E):
        if out[e] < log_underflow:  # every term tiny: logsumexp of the log-terms
            top = -np.inf
            for k in range(T2 + 2):
                v = ends_a[e] if k == 0 else (ends_b[e] if k == 1 else inner[k - 2, e])
                x = v - log_lam
                softplus = x + np.log1p(np.exp(-x)) if x > 0 else np.log1p(np.exp(x))
                term = np.log(w_end if k < 2 else w_inner) - softplus
                logs[k] = term
                top = term if term > top else top
            total = 0.0
            for k in range(T2 + 2):
                total += np.exp(logs[k] - top)
            out[e] = top + np.log(total) if top > -np.inf else -np.inf  # every factor 0


@compiled
def polyline_nodes(P, t, out):  # pragma: no cover - compiled
    """The interior quadrature nodes of every segment of a batch of polylines, node-major:
    ``out[k * E + b * (m - 1) + s] = P[b, s] + t[k] (P[b, s + 1] - P[b, s])``.

    Parameters
    ----------
    P : ndarray of shape (B, m, d)
    t : ndarray of shape (T - 2,)
    out : ndarray of shape ((T - 2) * B * (m - 1), d)
        Output.
    """
    B, m, d = P.shape
    E = B * (m - 1)
    for k in range(t.size):
        for b in range(B):
            for s in range(m - 1):
                row = k * E + b * (m - 1) + s
                for l in range(d):
                    start = P[b, s, l]
                    out[row, l] = start + t[k] * (P[b, s + 1, l] - start)


@compiled(inline="always")
def _polyline_node(b, s, k, B, m, E):  # pragma: no cover - compiled
    """Index in :func:`polyline_length_gradients`' ``log_p`` of node ``k`` of segment ``s``
    of polyline ``b``: its two ends (k = 0, 1), then its interior nodes."""
    if k < 2:
        return b * m + s + k
    return B * m + (k - 2) * E + b * (m - 1) + s


@compiled(error_model="numpy")
def polyline_length_gradients(P, log_p, score, t, w, log_lam, beta, log_h_max, safe, tiny,
                              log_length, grads):  # pragma: no cover - compiled
    """Log-lengths of a batch of polylines under the conformal metric and their gradients
    with respect to the points, from ``log p`` and its score at the points and at the
    segments' interior nodes (see ``ConformalMetric.log_polyline_lengths_and_gradients``),
    in one compiled pass over each polyline (numpy's passes over the (T, E) temporaries
    took as long as the mixture's score itself).

    Segment ``s`` of polyline ``b`` has the log-length ``log |delta| + log_h_max + log_sum``,
    ``log_sum = logsumexp_k(log w_k - beta softplus(log p_k - log_lam))`` over its T nodes;
    with ``pi_s`` its share of the polyline's length and ``q_k`` node k's share of its sum,
    node ``z = (1 - t) A + t B`` adds ``-beta pi_s q_k sigma(z) score(z)`` (``sigma = p / (p +
    lam)``) to the gradient of A and B in proportions ``1 - t`` and ``t``, and the segment's
    own length ``pi_s delta / |delta|^2``. Zero-length segments have no share.

    Parameters
    ----------
    P : ndarray of shape (B, m, d)
    log_p : ndarray of shape (B * m + (T - 2) * B * (m - 1),)
        ``log p`` at the points (row-major) and then at the interior nodes (node-major,
        :func:`polyline_nodes`); finite or -inf.
    score : ndarray of shape (len(log_p), d)
        Its gradient at the same points.
    t : ndarray of shape (T - 2,)
        Positions of the interior nodes.
    w : ndarray of shape (T,)
        Weights of the rule: both ends, then the interior nodes.
    log_lam, beta, log_h_max : float
        The metric's ``log lambda``, exponent and log of its largest factor.
    safe : float
        Squared lengths outside ``[safe, 1 / safe]`` are computed scaled (see ``row_norms``).
    tiny : float
        With ``beta = 1`` the rule is summed in linear space, and again in log space where
        the sum is below ``tiny`` (where terms may have underflowed).
    log_length : ndarray of shape (B,)
        Output.
    grads : ndarray of shape (B, m, d)
        Output.
    """
    B, m, d = P.shape
    S, T = m - 1, t.size + 2
    E = B * S
    coef, terms, log_sigma = np.empty((S, T)), np.empty(T), np.empty(T)
    log_sum, log_seg, norms = np.empty(S), np.empty(S), np.empty(S)
    for b in range(B):
        for s in range(S):
            squares = 0.0
            for l in range(d):
                v = P[b, s + 1, l] - P[b, s, l]
                squares += v * v
            if squares >= safe and squares <= 1.0 / safe:
                norms[s] = np.sqrt(squares)
            else:  # under- or overflowing squares (or 0, inf, NaN): scaled
                scale = 0.0
                for l in range(d):
                    scale = max(scale, abs(P[b, s + 1, l] - P[b, s, l]))
                total = 0.0
                if scale > 0.0 and scale < np.inf:
                    for l in range(d):
                        v = (P[b, s + 1, l] - P[b, s, l]) / scale
                        total += v * v
                norms[s] = scale * np.sqrt(total) if total > 0.0 else scale
            log_sum[s] = -np.inf
            if beta == 1.0:  # the default: the factors' ratios r = h / h_max in linear
                total = 0.0  # space, one exp a node (numpy's passes made four)
                for k in range(T):
                    ratio = np.exp(log_p[_polyline_node(b, s, k, B, m, E)] - log_lam)  # p/lam
                    r = 1.0 / (1.0 + ratio)
                    sigma = ratio * r if ratio < 1.0 else 1.0 - r
                    coef[s, k] = w[k] * r * sigma
                    total += w[k] * r
                if total > tiny:  # else terms may have underflowed: in log space below
                    log_sum[s] = np.log(total)
                    for k in range(T):
                        coef[s, k] /= total
            if log_sum[s] == -np.inf:
                top = -np.inf
                for k in range(T):
                    z = log_p[_polyline_node(b, s, k, B, m, E)] - log_lam
                    soft = z + np.log1p(np.exp(-z)) if z > 0.0 else np.log1p(np.exp(z))
                    term = np.log(w[k]) - beta * soft
                    terms[k] = term
                    log_sigma[k] = z - soft
                    top = term if term > top else top
                total = 0.0
                for k in range(T):
                    total += np.exp(terms[k] - top)
                log_sum[s] = top + np.log(total)
                for k in range(T):  # q sigma, q = exp(term - log_sum) a node's share
                    coef[s, k] = np.exp(terms[k] - log_sum[s] + log_sigma[k])
            log_seg[s] = np.log(norms[s]) + log_h_max + log_sum[s]
        top = -np.inf
        for s in range(S):
            top = log_seg[s] if log_seg[s] > top else top
        total = 0.0
        if top > -np.inf:
            for s in range(S):
                total += np.exp(log_seg[s] - top)
        log_length[b] = top + np.log(total) if top > -np.inf else -np.inf
        for j in range(m):
            for l in range(d):
                grads[b, j, l] = 0.0
        for s in range(S):
            share = np.exp(log_seg[s] - log_length[b])
            if not (share > 0.0 and share < np.inf):  # zero length: no share
                continue
            for k in range(T):
                weight = -beta * share * coef[s, k]
                if k == 0:
                    for l in range(d):
                        grads[b, s, l] += weight * score[b * m + s, l]
                elif k == 1:
                    for l in range(d):
                        grads[b, s + 1, l] += weight * score[b * m + s + 1, l]
                else:
                    row = _polyline_node(b, s, k, B, m, E)
                    tk = t[k - 2]
                    for l in range(d):
                        g = weight * score[row, l]
                        grads[b, s, l] += g - tk * g
                        grads[b, s + 1, l] += tk * g
            unit = share / norms[s]
            for l in range(d):
                v = unit * ((P[b, s + 1, l] - P[b, s, l]) / norms[s])
                grads[b, s, l] -= v
                grads[b, s + 1, l] += v


#: the widest diagonal or spherical mixture whose terms :func:`diagonal_mixture_terms`
#: computes in the direct form; beyond, the expanded form's product (inner dimension d + 2)
#: is faster (300 components, score included: direct over expanded 0.7-0.8 in 2-10-D, 0.9
#: in 50-D, 1.1 in 100-D, 1.8 in 784-D)
DIAGONAL_DIRECT_MAX_FEATURES = 50


@compiled(fastmath={"contract"})
def diagonal_mixture_terms(XT, means, half_precision, log_norm, terms, top):
    # pragma: no cover - compiled
    """``terms[k, i] = log_norm[k] - sum_l half_precision[k, l] (XT[l, i] - means[k, l])^2``
    and ``top[i] = max_k terms[k, i]``: the per-component log-densities of a diagonal or
    spherical mixture in the direct form, one pass per component over coordinate-major
    points (the expanded quadratic form's product has an inner dimension of only d + 2, and
    loses digits to cancellation where the variances are small). NaN terms leave ``top``.

    Parameters
    ----------
    XT : ndarray of shape (d, n)
        Points, centred as ``means``.
    means : ndarray of shape (K, d)
    half_precision : ndarray of shape (K, d)
        ``1 / (2 variance)``.
    log_norm : ndarray of shape (K,)
    terms : ndarray of shape (K, n)
        Output.
    top : ndarray of shape (n,)
        Output.
    """
    d, n = XT.shape
    for i in range(n):
        top[i] = -np.inf
    for k in range(means.shape[0]):
        for i in range(n):
            terms[k, i] = 0.0
        for l in range(d):
            centre, weight = means[k, l], half_precision[k, l]
            for i in range(n):
                v = XT[l, i] - centre
                terms[k, i] += weight * (v * v)
        for i in range(n):
            t = log_norm[k] - terms[k, i]
            terms[k, i] = t
            top[i] = t if t > top[i] else top[i]


@compiled(fastmath={"contract"})
def log_norm_minus_squares(prod, log_norm, out):  # pragma: no cover - compiled
    """``out[k, i] = log_norm[k] - sum_j prod[j, k, i]^2``: a Gaussian mixture's
    per-component log-densities from its whitened coordinates, in one pass over ``prod``.

    Parameters
    ----------
    prod : ndarray of shape (d, K, n)
    log_norm : ndarray of shape (K,)
    out : ndarray of shape (K, n)
    """
    d, K, n = prod.shape
    for k in range(K):  # the squares summed from zero, then subtracted once: in float32,
        for i in range(n):  # subtracting each from log_norm would round at its scale
            out[k, i] = 0.0
        for j in range(d):
            for i in range(n):
                v = prod[j, k, i]
                out[k, i] += v * v
        for i in range(n):
            out[k, i] = log_norm[k] - out[k, i]
    return out


@compiled(fastmath={"contract"})
def mixture_log_prob(prod, bias, log_norm, log_p, weighted):  # pragma: no cover - compiled
    """A Gaussian mixture's log-density from its whitened coordinates, one block in one pass.

    Row ``i`` of ``prod`` holds ``(x_i - c)^T P_k[:, j] / sqrt(2)`` at column ``j * K + k``
    (``P_k = L_k^{-T}``, without the mean's term, which is ``bias``); the squared norm of
    ``prod[i, j * K + k] + bias[j * K + k]`` over ``j`` is half the Mahalanobis term of
    component ``k``, so ``log_p[i] = logsumexp_k(log_norm[k] - that)``: the squares, the
    logsumexp and its exp (:func:`exp_in_place`) without numpy's passes over (K, n)
    temporaries. ``log_p`` is ``-inf`` where every term is, NaN where any is.

    Parameters
    ----------
    prod : ndarray of shape (n, d * K), float64
    bias : ndarray of shape (d * K,)
    log_norm : ndarray of shape (K,)
        ``log w_k - log((2 pi)^(d/2) |Sigma_k|^(1/2))``.
    log_p : ndarray of shape (n,)
        Output.
    weighted : bool
        Also overwrite ``prod[i, j * K + k]`` by ``(prod + bias) * g_k(x_i)``, with the
        responsibilities ``g_k = exp(term_k - log_p)`` (0 where ``log_p`` is not finite):
        ``-2 (prod @ coefficients.T)`` is then the score.
    """
    n, width = prod.shape
    K = log_norm.size
    d = width // K
    terms = np.empty((n, K))
    shift = np.empty(n)
    for i in range(n):
        for k in range(K):
            terms[i, k] = 0.0
        for j in range(d):
            for k in range(K):
                v = prod[i, j * K + k] + bias[j * K + k]
                terms[i, k] += v * v
        top = -np.inf
        for k in range(K):  # squares summed from zero, then subtracted once (see above)
            t = log_norm[k] - terms[i, k]
            terms[i, k] = t
            top = t if t > top else top  # NaN terms leave it: the sum below is NaN
        shift[i] = top if top > -np.inf else 0.0  # all -inf: exp gives 0, log -inf
        for k in range(K):
            terms[i, k] -= shift[i]
    exp_in_place(terms.reshape(n * K), np.empty(n * K))
    for i in range(n):
        total = 0.0
        for k in range(K):
            total += terms[i, k]
        log_p[i] = (np.log(total) if total > 0.0 else -np.inf) + shift[i]
        if total != total:  # NaN
            log_p[i] = total
        if weighted:
            finite = log_p[i] > -np.inf and log_p[i] < np.inf
            for k in range(K):
                terms[i, k] = terms[i, k] / total if finite else 0.0
            for j in range(d):
                for k in range(K):
                    prod[i, j * K + k] = (prod[i, j * K + k] + bias[j * K + k]) * terms[i, k]
    return log_p


@compiled(fastmath={"contract"}, error_model="numpy")  # vectorised division (log_in_place)
def mixture_logsumexp(terms, top, log_p, responsibilities):  # pragma: no cover - compiled
    """``log_p[i] = logsumexp_k terms[k, i]``, given ``top[i]``, the maximum over ``k``.

    ``log_p`` is ``-inf`` where every term is, NaN where any is. With ``responsibilities``,
    ``terms`` is overwritten by ``exp(terms - log_p)`` (0 where ``log_p`` is not finite);
    otherwise it is left as it is. ``top`` is overwritten.

    Parameters
    ----------
    terms : ndarray of shape (K, n), C-contiguous
    top : ndarray of shape (n,)
    log_p : ndarray of shape (n,)
        Output.
    responsibilities : bool
    """
    K, n = terms.shape
    for i in range(n):  # all -inf: exp gives 0, log -inf
        top[i] = top[i] if top[i] > -np.inf else 0.0
        log_p[i] = 0.0
    row, scratch = np.empty(n), np.empty(n)
    # one component at a time, through a row that stays in cache: one pass over the terms
    # (two with the responsibilities), where passes over all of them, their exp in place and
    # a scratch of their size took 3-4 times as long with 20 000 components (a kernel
    # density's), the same with 8-10
    for k in range(K):
        for i in range(n):
            row[i] = terms[k, i] - top[i]
        exp_in_place(row, scratch)
        for i in range(n):
            log_p[i] += row[i]
        if responsibilities:
            for i in range(n):
                terms[k, i] = row[i]
    if responsibilities:
        for k in range(K):
            for i in range(n):
                total = log_p[i]
                finite = total > 0.0 and total < np.inf
                terms[k, i] = terms[k, i] / total if finite else 0.0
    log_in_place(log_p, np.empty(n), np.empty(n))  # 0: -inf, NaN: NaN
    for i in range(n):
        log_p[i] += top[i]


#: a bound on the rounding of ``(1 - t) a + t b + t (1 - t) q`` relative to ``|a| + |b| + q``
#: (three products and two sums, each rounded once, and rounding in t (1 - t))
SEGMENT_ROUNDING = 8.0 * 2.0**-52
_EPSILON = 2.0**-52


@compiled(fastmath={"contract"}, error_model="numpy")  # vectorised division (log_in_place)
def mixture_log_prob_on_segments(term_a, term_b, half_square, t, log_norm, spread, offset,
                                 reach_a, reach_b, n_features, expanded, log_p, error):
    # pragma: no cover - compiled
    """A Gaussian mixture's ``log p`` at the points ``(1 - t_j) a_e + t_j b_e`` of segments,
    from the per-component log-terms at their ends: each term is a concave quadratic
    ``c_k - q_k(x) / 2`` in ``x``, so along a segment, exactly,
    ``term_k(node) = (1 - t) term_k(a) + t term_k(b) + t (1 - t) q_k(b - a) / 2``, with
    ``q_k`` the component's Mahalanobis form without its mean; the logsumexp over the
    components follows, one component at a time as in :func:`mixture_logsumexp`.

    ``error[e]`` bounds what segment ``e``'s nodes may be off by beyond direct evaluation:
    the largest bound of a component that may weigh somewhere on the segment (its largest
    term there, at most ``max(term(a), term(b)) + q / 8``, plus its bound within
    ``40 + log K`` nats of the smallest largest term of a node). A component's bound is
    :data:`SEGMENT_ROUNDING` times ``|term(a)| + |term(b)| + q / 2`` (the identity's
    cancellation) plus ``d`` roundings of ``q / 2`` and of the ends' terms: an end's
    whitened coordinates ``w`` (``|w|^2 = c_k - term``) come from the point relative to the
    centre ``c``, so they round by about ``r = s_k (|x - c| + |mu_k - c|)`` (``s_k`` the
    whitening's largest gain), and its term by ``2 |w| r`` (``r^2`` in the ``expanded``
    quadratic form), which the identity carries to every node where direct evaluation at a
    node near the mean would not. ``error`` is +inf for a segment with a non-finite input
    (points beyond float64's squares) or a node where ``log_p`` is not finite, so that
    callers evaluate those directly.

    Parameters
    ----------
    term_a, term_b : ndarray of shape (K, E)
        ``log w_k + log N(x; mu_k, Sigma_k)`` at the segments' ends.
    half_square : ndarray of shape (K, E)
        ``(b - a)^T Sigma_k^-1 (b - a) / 2``.
    t : ndarray of shape (T,)
        Positions along the segments.
    log_norm : ndarray of shape (K,)
        ``log w_k - log((2 pi)^(d/2) |Sigma_k|^(1/2))``, the terms' largest values.
    spread : ndarray of shape (K,)
        ``s_k``, the largest singular value of the whitening (in the terms' convention,
        ``|w|^2 = q / 2``).
    offset : ndarray of shape (K,)
        ``|mu_k - c|``.
    reach_a, reach_b : ndarray of shape (E,)
        ``|a - c|`` and ``|b - c|``.
    n_features : int
    expanded : bool
        Whether the ends' terms come from the expanded quadratic form.
    log_p : ndarray of shape (T, E)
        Output (may be a column block of a wider array).
    error : ndarray of shape (E,)
        Output.
    """
    K, E = term_a.shape
    T = t.size
    top = np.full((T, E), -np.inf)
    for k in range(K):  # the largest term at every node
        for j in range(T):
            u, v, w = 1.0 - t[j], t[j], t[j] * (1.0 - t[j])
            for e in range(E):
                x = u * term_a[k, e] + v * term_b[k, e] + w * half_square[k, e]
                top[j, e] = x if x > top[j, e] else top[j, e]
    low = np.full(E, np.inf)  # the smallest of a segment's largest terms, less the margin
    for j in range(T):
        for e in range(E):
            low[e] = min(low[e], top[j, e])
            top[j, e] = top[j, e] if top[j, e] > -np.inf else 0.0  # all -inf: log gives -inf
    cut = 40.0 + np.log(K)  # weaker components add less than exp(-40) of p together
    for e in range(E):
        low[e] -= cut
        error[e] = 0.0
    total = np.zeros((T, E))
    row, scratch = np.empty(E), np.empty(E)
    for k in range(K):  # one component at a time, as mixture_logsumexp
        for e in range(E):
            a, b, q = term_a[k, e], term_b[k, e], half_square[k, e]
            ra = spread[k] * (reach_a[e] + offset[k])
            rb = spread[k] * (reach_b[e] + offset[k])
            ends = 2.0 * (np.sqrt(max(log_norm[k] - a, 0.0)) * ra
                          + np.sqrt(max(log_norm[k] - b, 0.0)) * rb)
            ends = ends + (ra * ra + rb * rb if expanded else 0.0)
            bound = SEGMENT_ROUNDING * (abs(a) + abs(b) + q) + _EPSILON * n_features * (q + ends)
            highest = (a if a > b else b) + 0.25 * q + bound
            weighs = not highest <= low[e]  # NaN weighs
            error[e] = max(error[e], bound) if weighs and bound < np.inf else error[e]
            error[e] = np.inf if weighs and not bound < np.inf else error[e]
        for j in range(T):
            u, v, w = 1.0 - t[j], t[j], t[j] * (1.0 - t[j])
            for e in range(E):
                row[e] = u * term_a[k, e] + v * term_b[k, e] + w * half_square[k, e] - top[j, e]
            exp_in_place(row, scratch)
            for e in range(E):
                total[j, e] += row[e]
    for j in range(T):
        for e in range(E):
            error[e] = error[e] if total[j, e] > 0.0 and total[j, e] < np.inf else np.inf
    log_in_place(total.reshape(T * E), np.empty(T * E), np.empty(T * E))
    for j in range(T):
        for e in range(E):
            log_p[j, e] = total[j, e] + top[j, e]


@compiled
def centred_transpose(X, center, out):  # pragma: no cover - compiled
    """``out[l, i] = X[i, l] - center[l]``: points (n, d) centred and laid out coordinate-major
    (d, n) for :func:`mixture_kernels`, in one pass (numpy's subtraction and transposed copy:
    3.3x the time in 10-D)."""
    n, d = X.shape
    for i in range(n):
        for l in range(d):
            out[l, i] = X[i, l] - center[l]


@compiled(fastmath={"contract"})
def squared_distances(A, B, out):  # pragma: no cover - compiled
    """``out[e] = |B[e] - A[e]|^2`` for (E, d) arrays, without the (E, d) difference."""
    E, d = A.shape
    for e in range(E):
        s = 0.0
        for l in range(d):
            v = B[e, l] - A[e, l]
            s += v * v
        out[e] = s


@compiled(fastmath={"contract"})
def centred_segment_nodes(A, B, center, t, out):  # pragma: no cover - compiled
    """``out[l, j * E + e] = A[e, l] - center[l] + t[j] (B[e, l] - A[e, l])``: the nodes of
    segments, centred and laid out coordinate-major (d, T * E) for :func:`mixture_kernels`,
    node-major within (the nodes of one ``t`` together), without the (T * E, d) array of
    nodes and its transposed copy."""
    E, d = A.shape
    for j in range(t.size):
        for l in range(d):
            for e in range(E):
                a = A[e, l]
                out[l, j * E + e] = (a - center[l]) + t[j] * (B[e, l] - a)


@compiled(fastmath={"contract", "reassoc"})
def lbfgs_first_loop(q, S, Y, rho, head, count, rows, alpha):  # pragma: no cover - compiled
    """The first loop of L-BFGS's two-loop recursion, newest pair first, in place on ``q``.

    Row ``a`` of ``q`` (b, n) uses the curvature pairs of row ``rows[a]`` of the rings ``S``,
    ``Y`` (B, H, n) and ``rho`` (B, H): ``count[r]`` valid pairs, the newest in slot
    ``head[r]``, older ones in the slots before it (cyclically). Writes
    ``alpha[a, i] = rho s_i.q`` (i = 0 the newest) and ``q -= alpha[a, i] y_i``. Read in place
    from the rings: numpy's gathers of every active row's pairs cost more than the recursion.
    """
    H = S.shape[1]
    for a in range(q.shape[0]):
        r = rows[a]
        for i in range(count[r]):
            slot = (head[r] - i + H) % H
            dot = 0.0
            for j in range(q.shape[1]):
                dot += S[r, slot, j] * q[a, j]
            alpha[a, i] = rho[r, slot] * dot
            for j in range(q.shape[1]):
                q[a, j] -= alpha[a, i] * Y[r, slot, j]


@compiled(fastmath={"contract", "reassoc"})
def lbfgs_second_loop(z, S, Y, rho, head, count, rows, alpha):  # pragma: no cover - compiled
    """The second loop of the two-loop recursion (see :func:`lbfgs_first_loop`), oldest pair
    first, in place on ``z`` (the initial inverse Hessian times the first loop's ``q``):
    ``z += (alpha[a, i] - rho y_i.z) s_i``."""
    H = S.shape[1]
    for a in range(z.shape[0]):
        r = rows[a]
        for i in range(count[r] - 1, -1, -1):
            slot = (head[r] - i + H) % H
            dot = 0.0
            for j in range(z.shape[1]):
                dot += Y[r, slot, j] * z[a, j]
            step = alpha[a, i] - rho[r, slot] * dot
            for j in range(z.shape[1]):
                z[a, j] += step * S[r, slot, j]


@compiled(fastmath={"contract"})
def lbfgs_trial_points(x, d, t, rows, pending, out):  # pragma: no cover - compiled
    """``out[i] = x[rows[i]] + t[pending[i]] d[pending[i]]``: the trial points of a batched
    backtracking line search, without numpy's three gathers and two temporaries."""
    for i in range(rows.size):
        r, p = rows[i], pending[i]
        for j in range(x.shape[1]):
            out[i, j] = x[r, j] + t[p] * d[p, j]


@compiled(fastmath={"contract"})
def lbfgs_accept(x, f, g, xt, ft, gt, rows, pending, t, slope, S, Y, rho, head, count,
                 ftol, gtol, moved, ok):  # pragma: no cover - compiled
    """The bookkeeping of a batched backtracking (Armijo) line search, one pass a row.

    Trial ``i`` (point ``xt[i]``, value ``ft[i]``, gradient ``gt[i]``) belongs to function
    ``rows[i]`` and pending step ``pending[i]`` (step ``t``, slope ``slope``). Where it
    descends enough (``ok[i]``): the curvature pair ``s = xt - x``, ``y = gt - g`` enters the
    function's ring (``S``, ``Y``, ``rho``, ``head``, ``count``; see
    :func:`lbfgs_first_loop`) when ``s.y > 1e-10 |s| |y|``, the point becomes the
    function's, and ``moved[pending[i]]`` says whether it goes on (its relative decrease
    above ``ftol`` and a gradient entry above ``gtol``), as scipy's L-BFGS-B decides.
    """
    H = S.shape[1]
    n = x.shape[1]
    for i in range(rows.size):
        r, p = rows[i], pending[i]
        ok[i] = ft[i] <= f[r] + 1e-4 * t[p] * slope[p]
        if not ok[i]:
            continue
        sy, ss, yy = 0.0, 0.0, 0.0
        for j in range(n):
            s = xt[i, j] - x[r, j]
            y = gt[i, j] - g[r, j]
            sy += s * y
            ss += s * s
            yy += y * y
        if sy > 1e-10 * np.sqrt(ss) * np.sqrt(yy):
            slot = (head[r] + 1) % H
            head[r] = slot
            for j in range(n):
                S[r, slot, j] = xt[i, j] - x[r, j]
                Y[r, slot, j] = gt[i, j] - g[r, j]
            rho[r, slot] = 1.0 / sy
            count[r] = min(count[r] + 1, H)
        scale = max(max(abs(f[r]), abs(ft[i])), 1.0)
        small = f[r] - ft[i] <= ftol * scale
        steep = 0.0
        for j in range(n):
            x[r, j] = xt[i, j]
            g[r, j] = gt[i, j]
            steep = max(steep, abs(gt[i, j]))
        f[r] = ft[i]
        moved[p] = not (small or steep <= gtol)


#: the widest full or tied mixture (in features) whose kernels :func:`mixture_kernels`
#: compiles unrolled: compiling takes 1 s in 2-D, 5 s in 10-D, 8 s in 12-D, 15 s in 14-D;
#: wider mixtures take :func:`mixture_log_prob`, where BLAS is efficient
UNROLLED_MAX_FEATURES = 12
#: the most score coordinates one unrolled loop accumulates: LLVM vectorises a loop only
#: while it can check the overlap of every pair of arrays it reads and writes, which failed
#: from 8 rows written (and 16 read) on; wider scores are split among several loops, each
#: recomputing the whitened coordinates it needs (10-D score: 0.44 of the unsplit loop's time)
SCORE_ROWS_PER_LOOP = 6


def _mixture_source(d: int) -> str:
    """Source of :func:`mixture_kernels`' kernels for ``d`` features."""

    def coefficients(js) -> str:  # P_k[l, j] (l <= j) and b_k[j] for the columns js
        lines = [f"p{l}_{j} = P[{l}, {j} * K + k]" for j in js for l in range(j + 1)]
        return "".join(f"        {line}\n" for line in lines + [f"b{j} = bias[{j} * K + k]"
                                                                  for j in js])

    def whiten(j) -> str:
        return f"b{j} + " + " + ".join(f"p{l}_{j} * x{l}" for l in range(j + 1))

    x = "".join(f"            x{l} = XT[{l}, i]\n" for l in range(d))
    v = "".join(f"            v{j} = {whiten(j)}\n" for j in range(d))
    squares = " + ".join(f"v{j} * v{j}" for j in range(d))
    n_loops = -(-d // SCORE_ROWS_PER_LOOP)
    bounds = [round(d * c / n_loops) for c in range(n_loops + 1)]
    score_loops = ""
    for lo, hi in zip(bounds[:-1], bounds[1:]):  # score rows lo..hi-1 need w_j for j >= lo
        weighted = "".join(f"            v{j} = g * ({whiten(j)})\n" for j in range(lo, d))
        rows = "".join(
            f"            score[{l}, i] += "
            + " + ".join(f"p{l}_{j} * v{j}" for j in range(l, d))
            + "\n"
            for l in range(lo, hi)
        )
        score_loops += (f"    for k in range(K):  # score rows {lo} to {hi - 1}\n"
                        f"{coefficients(range(lo, d))}"
                        f"        for i in range(n):\n"
                        f"            g = gamma[k, i]\n{x}{weighted}{rows}")
    return f'''"""Generated by gendist._numba.mixture_kernels for {d} features; do not edit."""

import numpy as np

from gendist._numba import compiled


@compiled(fastmath={{"contract"}})
def mixture_terms(XT, P, bias, log_norm, terms, top):
    n = XT.shape[1]
    K = log_norm.size
    for i in range(n):
        top[i] = -np.inf
    for k in range(K):
{coefficients(range(d))}        c = log_norm[k]
        for i in range(n):
{x}{v}            t = c - ({squares})
            terms[k, i] = t
            top[i] = t if t > top[i] else top[i]


@compiled(fastmath={{"contract"}})
def mixture_score(XT, P, bias, gamma, score):
    n = XT.shape[1]
    K = gamma.shape[0]
{score_loops}'''


def _generated_dir() -> str:
    """Where generated kernel modules are written: ``NUMBA_CACHE_DIR`` if set, else the
    user's cache directory (``XDG_CACHE_HOME`` or ``~/.cache``), under ``gendist``."""
    root = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = root or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "gendist", "kernels")


def _read(path: str) -> str | None:
    """The text of a file, or None where it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


@functools.cache
def mixture_kernels(n_features: int):
    """The compiled ``(mixture_terms, mixture_score)`` kernels of a full or tied Gaussian
    mixture in ``n_features`` <= :data:`UNROLLED_MAX_FEATURES` dimensions.

    ``mixture_terms(XT, P, bias, log_norm, terms, top)`` writes the per-component log-terms
    ``terms[k, i] = log_norm[k] - |w_k(x_i)|^2`` (K, n) and their maximum over ``k``, ``top``
    (n,) (NaN terms leave it), for :func:`mixture_logsumexp`; the whitened coordinates
    ``w_k(x) = x^T P_k + b_k`` (the arguments of :func:`mixture_log_prob`: ``P[l, j * K + k]``,
    ``bias[j * K + k]``) are computed in the kernel from the centred points ``XT`` (d, n), from
    the upper triangle of ``P_k`` only (``l <= j``; the rest must be zero, as for
    ``P_k = L_k^{-T}``), one point per SIMD lane with every coordinate in a register.
    ``mixture_score(XT, P, bias, gamma, score)`` adds ``sum_k gamma[k, i] P_k w_k(x_i)`` to
    ``score`` (d, n): with the responsibilities as ``gamma``, ``-2`` times it is the score.

    Why generated: numba vectorises only innermost loops, so a loop over the d coordinates
    inside the loop over points runs scalar, and loops over points inside loops over
    coordinates go through memory at every step (both measured 2-3x slower in 10-D than a
    product by BLAS, whose inner dimension d is too short for it to be efficient either). With
    the coordinates unrolled, the log-density of 400 000 points of a 10-component mixture
    takes 0.6 of the time of a BLAS product and :func:`mixture_log_prob` in 2-D and in 10-D,
    its score 0.55 / 0.67.

    The source is written once to a module under :func:`_generated_dir` so that numba caches
    the machine code on disk (compiling takes 1 to 8 s, see :data:`UNROLLED_MAX_FEATURES`);
    where nothing can be written it is compiled in each process.
    """
    if not 1 <= n_features <= UNROLLED_MAX_FEATURES:
        raise ValueError(f"n_features must be in [1, {UNROLLED_MAX_FEATURES}], got {n_features}")
    source = _mixture_source(n_features)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"mixture_{n_features}_{digest}"
    path = os.path.join(_generated_dir(), name + ".py")
    try:
        if _read(path) != source:  # missing, or not what this version generates
            os.makedirs(os.path.dirname(path), exist_ok=True)
            partial = f"{path}.{os.getpid()}"
            with open(partial, "w") as f:
                f.write(source)
            os.replace(partial, path)  # atomic: concurrent writers leave one whole file
        spec = importlib.util.spec_from_file_location(f"_gendist_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # numba's disk cache imports it by name
        spec.loader.exec_module(module)
        kernels = vars(module)
    except OSError:  # nowhere to write: compiled in this process only
        kernels = {}
        exec(compile(source, f"<gendist mixture kernels, {n_features} features>", "exec"),
             kernels)
    return kernels["mixture_terms"], kernels["mixture_score"]
