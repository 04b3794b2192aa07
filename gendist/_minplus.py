"""The min-plus closure of a dense matrix: a blocked Floyd-Warshall, compiled with numba.

Why our own kernel: scipy's ``floyd_warshall`` (the library routine for it) streams the
whole matrix once per intermediate vertex, on one thread: about 1e9 relaxations per
second, so 10 s at n = 2 000 and about 10 minutes at n = 8 000 on a 2-core machine, where
the rest of an all-pairs job takes seconds to a minute. No maintained CPU library offers
a cache-blocked min-plus closure (cuGraph's all-pairs routine is GPU-only). The blocked
form (Venkataraman et al., 2003) relaxes cache-sized tiles against copied panels, on all
cores: 5.5-10e9 relaxations per second in float64 on those 2 cores, 9.9-12.6 times scipy,
and about twice that in float32 (``benchmarks/bench_closure.py``).

Each round takes a block of ``block`` intermediate vertices: it closes the diagonal block,
passes the block's rows and columns through it (the panels ``R`` and ``C``: paths from
and to a block vertex through the block), then relaxes every other entry through the
panels,

    D[i, j] = min(D[i, j], min_k C[i, k] + R[k, j]),   k in the block.

This is Floyd-Warshall with the intermediate vertices taken a block at a time, so it gives
the same closure (up to the order of float additions). Entries are lengths: non-negative,
0 on the diagonal, inf for "no link"; 0 off the diagonal is a link of length zero.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from ._compute import progress_bar
from ._numba import compiled

#: Intermediate vertices per round (rows of the row panel).
CLOSURE_BLOCK = 128

#: Columns a thread relaxes at a time: the row panel's tile (CLOSURE_BLOCK x this) stays in
#: the core's cache.
CLOSURE_TILE = 256


@compiled
def _close_diagonal(D, k0, k1):  # pragma: no cover - compiled
    """Floyd-Warshall on the diagonal block ``D[k0:k1, k0:k1]``, in place."""
    for k in range(k0, k1):
        for i in range(k0, k1):
            a = D[i, k]
            for j in range(k0, k1):
                s = a + D[k, j]
                if s < D[i, j]:
                    D[i, j] = s


@compiled
def _relax(D, i0, i1, j0, A, a0, B, b0, width):  # pragma: no cover - compiled
    """``D[i, j0 + j] = min(D[i, j0 + j], min_k A[i - a0, k] + B[k, b0 + j])`` for ``i`` in
    ``[i0, i1)``, ``j < width``, in place. ``A`` and ``B`` must not overlap ``D``.

    Each pass over a row takes four intermediate vertices and stores one unconditional
    minimum of five terms (the minimum is exact, so the grouping changes nothing): a
    conditional ``if s < d[j]: d[j] = s`` compiles to a masked store, several times slower,
    and one vertex per pass spends most of its time loading and storing the row. The loops
    run over one-dimensional row slices: two-dimensional indexing with offsets, and
    register-blocked scalar kernels (numba leaves superword vectorisation off), stayed
    unvectorised. Alone on one core, on 128 x 256 tiles, the kernel ran 6-7e9 relaxations
    per second in float64 and 9-14e9 in float32, 1.4-1.9 times the one-vertex pass."""
    q = A.shape[1]
    for i in range(i0, i1):
        r = i - a0
        d = D[i, j0 : j0 + width]
        k = 0
        while k + 4 <= q:
            x0 = A[r, k]
            x1 = A[r, k + 1]
            x2 = A[r, k + 2]
            x3 = A[r, k + 3]
            e0 = B[k, b0 : b0 + width]
            e1 = B[k + 1, b0 : b0 + width]
            e2 = B[k + 2, b0 : b0 + width]
            e3 = B[k + 3, b0 : b0 + width]
            for j in range(width):
                d[j] = min(
                    min(min(d[j], x0 + e0[j]), min(x1 + e1[j], x2 + e2[j])), x3 + e3[j]
                )
            k += 4
        while k < q:
            x0 = A[r, k]
            e0 = B[k, b0 : b0 + width]
            for j in range(width):
                d[j] = min(d[j], x0 + e0[j])
            k += 1


@compiled
def _relax_tiles(D, i0, i1, A, a0, B, tile, k0, k1):  # pragma: no cover - compiled
    """:func:`_relax` on the rows ``[i0, i1)`` and every column but the block's own
    ``[k0, k1)``, ``tile`` columns at a time (the tile of ``B`` stays in cache while every
    row passes through it)."""
    n = D.shape[1]
    for j0 in range(0, k0, tile):
        _relax(D, i0, i1, j0, A, a0, B, j0, min(k0, j0 + tile) - j0)
    for j0 in range(k1, n, tile):
        _relax(D, i0, i1, j0, A, a0, B, j0, min(n, j0 + tile) - j0)


def min_plus_closure(D: np.ndarray, threads: int = 1, progress: bool | None = False) -> None:
    """Close ``D`` under min-plus composition, in place: ``D[i, j]`` becomes the shortest
    chain ``D[i, v1] + D[v1, v2] + ... + D[vm, j]``.

    Parameters
    ----------
    D : ndarray of shape (n, n), float32 or float64, C-contiguous, writable
        Non-negative lengths, 0 on the diagonal, inf where there is no link. Sums are
        taken in ``D``'s dtype.
    threads : int
        Threads that relax row blocks side by side (the compiled kernels release the GIL).
    progress : bool or None
        A progress bar over the rounds (:func:`gendist._compute.progress_bar`).
    """
    n = D.shape[0]
    block, tile = CLOSURE_BLOCK, CLOSURE_TILE
    starts = range(0, n, block)

    def column_panel(k0, C, K, i0):
        _relax(D, i0, min(n, i0 + block), k0, C, 0, K, 0, K.shape[1])

    def through_panels(k0, k1, C, R, i0):
        _relax_tiles(D, i0, min(n, i0 + block), C, 0, R, tile, k0, k1)

    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        for k0 in progress_bar(starts, desc="triangle closure", progress=progress):
            k1 = min(n, k0 + block)
            _close_diagonal(D, k0, k1)
            K = D[k0:k1, k0:k1].copy()
            R = D[k0:k1].copy()
            # the block's rows and then its columns through the block, the closed diagonal
            # block left alone, and no entry of the block's rows or columns relaxed again:
            # then entry (i, j) adds the same two numbers as entry (j, i), and a symmetric
            # matrix stays exactly symmetric
            _relax_tiles(D, k0, k1, K, k0, R, tile, k0, k1)
            C = np.ascontiguousarray(D[:, k0:k1])
            others = [i for i in starts if i != k0]
            list(pool.map(partial(column_panel, k0, C, K), others))
            C = np.ascontiguousarray(D[:, k0:k1])
            R = D[k0:k1].copy()
            list(pool.map(partial(through_panels, k0, k1, C, R), others))
