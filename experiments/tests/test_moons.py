"""The two-moons experiment (RealNVP flow) in its --quick settings."""

import numpy as np


def test_moons_quick(tmp_path):
    from experiments import run_experiment
    from experiments.moons import comparisons, paired

    res = run_experiment("moons", tmp_path, quick=True)
    for name in ("moons.csv", "summary.md", "moons.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = res["rows"]
    n_pairs = len(paired(rows, "min_log_p", "geodesic"))
    assert n_pairs == 20 and len(rows) == 4 * n_pairs
    for kind in ("geodesic", "refined", "latent"):
        assert (paired(rows, "relative_length", kind) >= 1 - 1e-9).all()
    # refinement never lengthens a geodesic under the metric
    refined, graph = (paired(rows, "generative_length", k) for k in ("refined", "geodesic"))
    assert (refined <= graph).all() and np.mean(refined < graph) > 0.9
    assert np.allclose(paired(rows, "relative_length", "straight"), 1, rtol=1e-12, atol=0)
    # what holds across seeds: the graph geodesics stay on the data (their log p never falls a
    # nat below the endpoints'), are shorter under the metric than the straight segments, and
    # keep a higher minimum log p than the straight segments in most pairs
    c = comparisons(rows)
    assert c["dip_geodesic"] <= 0.1
    geo_len, seg_len = (paired(rows, "generative_length", k) for k in ("geodesic", "straight"))
    assert np.mean(geo_len <= seg_len) >= 0.9
    geo_min, seg_min = (paired(rows, "min_log_p", k) for k in ("geodesic", "straight"))
    assert np.mean(geo_min > seg_min) >= 0.75
    assert "Verdict" in res["summary"]
