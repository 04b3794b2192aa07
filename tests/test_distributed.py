"""Many-source shortest paths on a dask.distributed cluster through joblib's dask backend."""

import joblib
import numpy as np
from dask.distributed import Client, LocalCluster, get_task_stream
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance
from gendist.paths import shortest_paths


def test_dask_local_cluster_gives_the_serial_distances(rng):
    X = np.vstack([rng.normal(size=(300, 2)) - 1.5, rng.normal(size=(300, 2)) + 1.5])
    est = GenerativeDistance(GaussianMixture(4, random_state=0), n_neighbors=8, n_jobs=2).fit(X)
    serial = shortest_paths(est.graph_, np.arange(len(X)))  # one process, no joblib
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as tasks,
        joblib.parallel_config(backend="dask"),
    ):
        D = est.distances()
        D_data = est.transform(X[:50] + 0.01)
        cluster_workers = set(client.scheduler_info()["workers"])
    assert np.array_equal(D, serial)
    np.testing.assert_array_equal(D_data, est.transform(X[:50] + 0.01))
    # the source blocks ran as tasks on the cluster's workers
    assert len(tasks.data) >= 2
    assert {t["worker"] for t in tasks.data} <= cluster_workers
