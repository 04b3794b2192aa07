"""The experiments end to end in their --quick settings, through the command line."""

import csv

import numpy as np
import pytest

from experiments import EXPERIMENTS, convergence, run_experiment
from experiments.__main__ import main


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_clustering_quick(tmp_path):
    assert main(["clustering", "--quick", "--out", str(tmp_path)]) == 0
    for name in ("clustering.csv", "summary.md", "nmi_vs_tau.png", "labels.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = _read(tmp_path / "clustering.csv")
    assert {r["dataset"] for r in rows} == {"narrow_mog", "circles", "spirals", "moons"}
    assert {r["method"] for r in rows} == {"spectral", "ising"}
    nmi = np.array([float(r["nmi"]) for r in rows])
    assert ((nmi >= 0) & (nmi <= 1 + 1e-12)).all()

    def score(metric, tau):
        (r,) = [
            r
            for r in rows
            if (r["dataset"], r["method"], r["metric"], float(r["relative_tau"]))
            == ("circles", "spectral", metric, tau)
        ]
        return float(r["nmi"]), int(r["graph_components"])

    # two circles on a connected graph: some tau where geodesic affinity separates them and
    # Euclidean affinity with the same relative bandwidth does not
    wins = []
    for tau in {float(r["relative_tau"]) for r in rows}:
        (geo, components), (euc, _) = score("geodesic", tau), score("euclidean", tau)
        assert components == 1
        wins.append(geo >= 0.95 and euc < 0.95)
    assert any(wins)


def test_embedding_quick(tmp_path):
    res = run_experiment("embedding", tmp_path, quick=True, overrides=["datasets=[circles, moons]"])
    assert all(p.stat().st_size > 0 for p in res["files"])
    acc = {(r["dataset"], r["metric"]): float(r["linear_accuracy"]) for r in res["rows"]}
    assert all(0 <= a <= 1 for a in acc.values())
    assert acc["circles", "geodesic"] >= 0.95 > acc["circles", "euclidean"]


def test_convergence_quick(tmp_path):
    res = run_experiment("convergence", tmp_path, quick=True)
    for name in ("convergence.csv", "n_quad.csv", "summary.md", "convergence.png"):
        assert (tmp_path / name).stat().st_size > 0
    reference = res["reference"]
    distances = np.array([r["distance"] for r in res["rows"] + res["quad_rows"]])
    finite = distances[np.isfinite(distances)]
    assert finite.size > 0
    # a graph path is a curve, so no graph distance is below the true geodesic distance
    # (up to quadrature and fast-marching error)
    assert (finite >= 0.99 * reference).all()
    uniform = {
        n: np.mean(
            [r["relative_error"] for r in res["rows"] if (r["sampling"], r["n"]) == ("uniform", n)]
        )
        for n in (250, 1000)
    }
    assert uniform[1000] < uniform[250]


def test_convergence_reference_against_straight_line_bound():
    """The fast-marching distance lies between two closed-form bounds."""
    density = convergence.gap_mixture()
    lam = convergence.DEFAULTS["lam"]
    t = np.linspace(0, 1, 20001)[:, None]
    P = convergence.A + t * (convergence.B - convergence.A)
    h = lam / (np.exp(density.log_prob(P)) + lam)
    straight = np.trapezoid(h, dx=np.linalg.norm(convergence.B - convergence.A) / 20000)
    reference = convergence.fast_marching(
        lambda X: lam / (np.exp(density.log_prob(X)) + lam),
        convergence.A,
        convergence.B,
        n_grid=801,
    )
    assert reference < straight
    # every path from A to B is at least |B - A| long, and h >= lam / (max p + lam) with
    # max p <= 1 / (2 pi sqrt(det C)) for a mixture of Gaussians with covariance C
    max_p = 1.0 / (2 * np.pi * np.sqrt(0.3 * 0.6))
    assert reference > np.linalg.norm(convergence.B - convergence.A) * lam / (max_p + lam)


@pytest.mark.parametrize("setting", ["n_sample=10", "datasets=moons", "seeds=0"])
def test_experiment_rejects_bad_parameters(tmp_path, capsys, setting):
    """Unknown keys, and a scalar where the parameter is a list, are usage errors."""
    with pytest.raises(SystemExit):
        main(["embedding", "--out", str(tmp_path), "--set", setting])
    assert setting.split("=")[0] in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_config_files_hold_the_defaults(name):
    """configs/NAME.yaml documents exactly the parameters the experiment runs with."""
    from pathlib import Path

    import yaml

    from experiments import experiment_module

    path = Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"
    assert yaml.safe_load(path.read_text()) == experiment_module(name).DEFAULTS


def test_refinement_quick(tmp_path):
    res = run_experiment("refinement", tmp_path, quick=True)
    for name in ("refinement.csv", "summary.md", "refinement.png"):
        assert (tmp_path / name).stat().st_size > 0
    for r in res["rows"]:
        # against fast marching: refined paths are closer in length and in course
        assert abs(r["refined_error"]) < abs(r["graph_error"])
        assert abs(r["refined_error_dense"]) < abs(r["graph_error"])
        assert r["refined_hausdorff"] < r["graph_hausdorff"]


def test_latent_quick(tmp_path):
    """The latent experiment's quick run: its tables against recomputations."""
    import torch
    from scipy.spatial.distance import cdist

    from experiments import latent

    res = run_experiment("latent", tmp_path, quick=True)
    for name in (
        "latent.csv",
        "measures.csv",
        "geodesics.csv",
        "summary.md",
        "latent_VAE.png",
        "latent_IWAE.png",
        "strips_VAE.png",
        "class_distances.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    labels, D = res["labels"], res["distances"]
    assert np.bincount(labels).tolist() == [20] * 10  # balanced codes
    np.testing.assert_allclose(
        D["latent Euclidean"], cdist(res["codes"]["VAE"], res["codes"]["VAE"])
    )
    # class means by brute force over the pairs
    for name in latent.DISTANCES:
        M = res["class_means"][name]
        i, j = 3, 7
        block = [
            D[name][a, b]
            for a in np.flatnonzero(labels == i)
            for b in np.flatnonzero(labels == j)
            if np.isfinite(D[name][a, b])
        ]
        np.testing.assert_allclose(M[i, j], np.mean(block))
    # a latent curve's decoded image is at least as long as the chord between its decoded ends
    for name, model in res["models"].items():
        F = model.decode(res["codes"][name])
        finite = np.isfinite(D[f"pullback {name}"])
        assert np.all(D[f"pullback {name}"][finite] >= cdist(F, F)[finite] * (1 - 1e-6) - 1e-9)
    Z = res["codes"]["IWAE"]
    with torch.no_grad():
        mean, std = res["models"]["IWAE"].stochastic_decoder()(torch.as_tensor(Z).float())
    F = np.hstack([mean.double().numpy(), std.double().numpy()])
    D_std = D["pullback IWAE + std"]
    assert np.all(D_std[np.isfinite(D_std)] >= cdist(F, F)[np.isfinite(D_std)] * (1 - 1e-5))
    assert np.all(D_std >= D["pullback IWAE"] * (1 - 1e-6))  # the std only adds length
    for g in res["geodesics"]:
        assert g["refined_length"] <= g["graph_length"]
    # k-NN accuracy recomputed with scikit-learn on the precomputed distances
    from sklearn.neighbors import KNeighborsClassifier

    for m in res["measures"]:
        Dm = D[m["distance"]].copy()
        Dm[~np.isfinite(Dm)] = 1e300
        np.fill_diagonal(Dm, 0.0)
        hits = 0
        for a in range(len(labels)):
            keep = np.arange(len(labels)) != a
            clf = KNeighborsClassifier(5, metric="precomputed").fit(
                Dm[np.ix_(keep, keep)], labels[keep]
            )
            hits += clf.predict(Dm[a, keep][None])[0] == labels[a]
        # both break vote ties by the smallest label; equal up to ties in distance
        assert abs(hits / len(labels) - m["knn_accuracy"]) <= 2 / len(labels)
