"""The pendulum and robot-arm experiments in their --quick settings: geodesics against
straight interpolation, checked against direct decoding and the arm's kinematics."""

import copy

import numpy as np
import pytest
import torch

from experiments import run_experiment
from gendist.datasets import ur5_forward_kinematics


def decoded_length(model, points, pieces=20, float64=True):
    """Length of the decoded image of a latent polyline: each segment cut into ``pieces``
    and decoded by a float64 copy of the model's decoder (or by the model itself)."""
    u = np.linspace(0, 1, pieces + 1)[:-1]
    Z = points[:-1, None] + u[None, :, None] * np.diff(points, axis=0)[:, None]
    Z = np.vstack([Z.reshape(-1, points.shape[1]), points[-1:]])
    if float64:
        with torch.no_grad():
            F = copy.deepcopy(model.decoder_).double()(torch.as_tensor(Z)).numpy()
    else:
        F = model.decode(Z)
    return np.linalg.norm(np.diff(F, axis=0), axis=1).sum()


def check_pairs(res):
    Z, model = res["codes"], res["model"]
    for p in res["pairs"]:
        # the curves join the pair's codes exactly
        np.testing.assert_array_equal(p["points"][[0, -1]], Z[[p["a"], p["b"]]])
        np.testing.assert_array_equal(p["line"][[0, -1]], Z[[p["a"], p["b"]]])
        # the lengths are those of the decoded curves: within the quadrature's error and the
        # rounding of the float32 decoder, which adds ~1e-7 to every short decoded step
        np.testing.assert_allclose(
            p["straight_length"], decoded_length(model, p["line"]), rtol=2e-2
        )
        np.testing.assert_allclose(
            p["geodesic_length"], decoded_length(model, p["points"]), rtol=2e-2
        )
        assert p["geodesic_length"] <= p["graph_length"]
    # no geodesic is longer than its straight line (the refinement starts from the line where
    # that is the shorter), up to the quadrature difference between the line's 64 points and
    # the refined curve's 16
    ratios = np.array([p["ratio"] for p in res["pairs"]])
    assert ratios.max() <= 1.005, ratios.max()
    (neural,) = [r for r in res["curves"] if "points" in r]
    np.testing.assert_allclose(
        neural["points"][[0, -1]], Z[[neural["a"], neural["b"]]], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        neural["length"], decoded_length(model, neural["points"], 7, float64=False), rtol=1e-6
    )
    assert all(path.stat().st_size > 0 for path in res["files"])


def test_pendulum_quick(tmp_path):
    torch.set_num_threads(1)
    res = run_experiment("pendulum", tmp_path, quick=True)
    check_pairs(res)
    for p in res["pairs"]:
        for kind in ("geodesic", "straight"):
            track = p[f"{kind}_track"]
            assert track[0] == 0.0 and np.isfinite(track).all()


def test_robot_arm_quick(tmp_path):
    torch.set_num_threads(1)
    res = run_experiment("robot_arm", tmp_path, quick=True)
    check_pairs(res)
    model = res["model"]
    for p in res["pairs"]:
        # the end-effector paths are the forward kinematics of the decoded joint angles (to
        # the float32 decoder's rounding, which depends on the batch)
        start = ur5_forward_kinematics(model.decode(p["points"][:1]))[0, :3, 3]
        np.testing.assert_allclose(p["geodesic_end_effector"][0], start, atol=1e-5)
        assert p["straight_circle_deviation"] >= 0 and p["geodesic_circle_deviation"] >= 0


@pytest.mark.parametrize("name", ["pendulum", "robot_arm"])
def test_curve_experiments_reject_unknown_parameters(name):
    from experiments import experiment_config

    with pytest.raises(ValueError, match="unknown"):
        experiment_config(name, overrides=["n_pair=3"])
