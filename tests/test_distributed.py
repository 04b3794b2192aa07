"""Edge weights and many-source shortest paths on a dask.distributed cluster through joblib's
dask backend, and edge weights over loky processes."""

import contextlib

import joblib
import numpy as np
from dask.distributed import Client, LocalCluster, get_task_stream
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance, metric
from gendist.paths import shortest_paths


@contextlib.contextmanager
def dask_cluster():
    """A 2-process LocalCluster as joblib's backend; yields (task stream, worker addresses)."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as tasks,
        joblib.parallel_config(backend="dask"),
    ):
        yield tasks, set(client.scheduler_info()["workers"])


def test_dask_local_cluster_gives_the_serial_distances(rng):
    X = np.vstack([rng.normal(size=(300, 2)) - 1.5, rng.normal(size=(300, 2)) + 1.5])
    est = GenerativeDistance(
        GaussianMixture(4, random_state=0), n_neighbors=8, n_jobs=2, refine=False
    ).fit(X)
    serial = shortest_paths(est.graph_, np.arange(len(X)))  # one process, no joblib
    with dask_cluster() as (tasks, cluster_workers):
        D = est.distances()
        D_data = est.transform(X[:50] + 0.01)
    assert np.array_equal(D, serial)
    np.testing.assert_array_equal(D_data, est.transform(X[:50] + 0.01))
    # the source blocks ran as tasks on the cluster's workers
    assert len(tasks.data) >= 2
    assert {t["worker"] for t in tasks.data} <= cluster_workers


def test_edge_weights_over_processes_and_a_dask_cluster_equal_the_serial_ones(rng, monkeypatch):
    X = np.vstack([rng.normal(size=(400, 2)) - 1.5, rng.normal(size=(400, 2)) + 1.5])
    gm = GaussianMixture(4, random_state=0).fit(X)
    serial = GenerativeDistance(gm, n_neighbors=10).fit(X)
    monkeypatch.setattr(metric, "_MIN_PARALLEL_CHUNK", 500)  # several chunks on a small graph
    n_edges = serial.graph_.nnz // 2
    assert n_edges > 4 * 500
    loky = GenerativeDistance(gm, n_neighbors=10, n_jobs=2).fit(X)
    with dask_cluster() as (tasks, cluster_workers):
        on_cluster = GenerativeDistance(gm, n_neighbors=10, n_jobs=2).fit(X)
    for est in (loky, on_cluster):
        np.testing.assert_array_equal(est.graph_.indices, serial.graph_.indices)
        np.testing.assert_allclose(est.graph_.data, serial.graph_.data, rtol=1e-13, atol=0)
    # the chunks ran as tasks on the cluster's workers (at least 4 per worker)
    assert len(tasks.data) >= 8
    assert {t["worker"] for t in tasks.data} <= cluster_workers
