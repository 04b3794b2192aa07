"""The pendulum and robot-arm data sets of Chen et al. (2018).

References: a pixel-by-pixel rendering of the documented pendulum image, its mirror and
quarter-turn symmetries; the UR5's flange position at closed-form poses, and the circle that
the noise-free joint angles must reach.
"""

import math

import numpy as np
import pytest
from scipy import stats

from gendist.datasets import (
    UR5_DH,
    make_pendulum,
    make_robot_arm,
    render_pendulum,
    ur5_forward_kinematics,
)

# ------------------------------------------------------------------ pendulum


def direct_pendulum(angle, size=16, length=0.7, rod_width=0.08, bob_width=0.15):
    """The documented image, one pixel at a time: the intensity at each pixel centre is the
    larger Gaussian profile of the distance to the rod segment and of that to the bob."""
    image = np.zeros((size, size))
    tip = np.array([length * math.sin(angle), -length * math.cos(angle)])
    for i in range(size):
        for j in range(size):
            p = np.array([-1 + (j + 0.5) * 2 / size, 1 - (i + 0.5) * 2 / size])
            # nearest point of the segment from the pivot (origin) to the tip
            s = min(1.0, max(0.0, float(p @ tip) / float(tip @ tip)))
            r = np.linalg.norm(p - s * tip)
            b = np.linalg.norm(p - tip)
            image[i, j] = max(
                math.exp(-(r**2) / (2 * rod_width**2)), math.exp(-(b**2) / (2 * bob_width**2))
            )
    return image


@pytest.mark.parametrize("angle", [0.0, 0.3, math.pi / 2, 2.0, math.pi, 4.4, 6.0])
def test_pendulum_images_equal_a_direct_rendering(angle):
    image = render_pendulum([angle])[0].reshape(16, 16)
    np.testing.assert_allclose(image, direct_pendulum(angle), rtol=1e-12, atol=1e-15)
    # the pixel nearest to the bob is within half a pixel diagonal of its centre
    tip = 0.7 * np.array([math.sin(angle), -math.cos(angle)])
    u = (2 * np.arange(16) + 1) / 16 - 1
    dist2 = (u[None, :] - tip[0]) ** 2 + (-u[:, None] - tip[1]) ** 2
    half_diagonal2 = 2 * (1 / 16) ** 2
    assert image.ravel()[np.argmin(dist2)] >= math.exp(-half_diagonal2 / (2 * 0.15**2))


def test_pendulum_symmetries(rng):
    """Mirror: angle -a is the image of a flipped left-right. Quarter turn: a + pi/2 is the
    image of a turned counterclockwise by 90 degrees (the grid is symmetric)."""
    a = rng.uniform(0, 2 * np.pi, 6)
    img = render_pendulum(a).reshape(-1, 16, 16)
    np.testing.assert_allclose(render_pendulum(-a).reshape(-1, 16, 16), img[:, :, ::-1], atol=1e-14)
    turned = render_pendulum(a + np.pi / 2).reshape(-1, 16, 16)
    np.testing.assert_allclose(turned, np.rot90(img, 1, axes=(1, 2)), atol=1e-12)
    # other sizes and widths follow the same formula
    np.testing.assert_allclose(
        render_pendulum([1.0], size=9, length=0.5, rod_width=0.1, bob_width=0.2)[0],
        direct_pendulum(1.0, 9, 0.5, 0.1, 0.2).ravel(),
        rtol=1e-12,
    )


def test_make_pendulum_angles_and_noise():
    X, angles = make_pendulum(random_state=0)
    assert X.shape == (15000, 256) and angles.shape == (15000,)
    assert angles.min() >= 0 and angles.max() < 2 * np.pi
    assert stats.kstest(angles / (2 * np.pi), "uniform").pvalue > 0.01
    residual = X - render_pendulum(angles)
    # 3.84e6 pixel draws: the standard error of the std is 0.05 / sqrt(2 * 3.84e6) ~ 1.8e-5
    assert abs(residual.std() - 0.05) < 2e-4 and abs(residual.mean()) < 2e-4
    X2, angles2 = make_pendulum(500, noise=0.0, random_state=3)
    np.testing.assert_array_equal(X2, render_pendulum(angles2))
    np.testing.assert_array_equal(
        make_pendulum(50, random_state=1)[0], make_pendulum(50, random_state=1)[0]
    )
    with pytest.raises(ValueError, match="finite"):
        render_pendulum([np.nan])


# ------------------------------------------------------------------ robot arm


def test_ur5_forward_kinematics_closed_forms(rng):
    a, d = UR5_DH["a"], UR5_DH["d"]
    # zero pose: the arm stretched along -x, offset along -y by the wrist offsets
    T = ur5_forward_kinematics(np.zeros(6))
    np.testing.assert_allclose(T[:3, 3], [a[1] + a[2], -(d[3] + d[5]), d[0] - d[4]], atol=1e-15)
    np.testing.assert_allclose(T[:3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-15)
    # shoulder lift of -pi/2: the upper arm and forearm point straight up
    T = ur5_forward_kinematics([0, -np.pi / 2, 0, 0, 0, 0])
    np.testing.assert_allclose(T[:3, 3], [-d[4], -(d[3] + d[5]), d[0] - a[1] - a[2]], atol=1e-15)
    # joint 1 turns everything about the base z axis
    Q = rng.uniform(-np.pi, np.pi, size=(20, 6))
    turn = rng.uniform(-np.pi, np.pi, 20)
    Rz = np.zeros((20, 4, 4))
    Rz[:, 0, 0] = Rz[:, 1, 1] = np.cos(turn)
    Rz[:, 1, 0], Rz[:, 0, 1] = np.sin(turn), -np.sin(turn)
    Rz[:, 2, 2] = Rz[:, 3, 3] = 1
    Q2 = Q.copy()
    Q2[:, 0] += turn
    np.testing.assert_allclose(
        ur5_forward_kinematics(Q2), Rz @ ur5_forward_kinematics(Q), atol=1e-14
    )
    # rotations stay orthonormal
    R = ur5_forward_kinematics(Q)[:, :3, :3]
    np.testing.assert_allclose(
        R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-14
    )


@pytest.fixture(scope="module")
def arm():
    clean, phase = make_robot_arm(noise=0.0)
    noisy, phase2 = make_robot_arm(random_state=0)
    return clean, noisy, phase, phase2


def test_robot_arm_reaches_the_circle(arm):
    clean, _, phase, _ = arm
    assert clean.shape == (6284, 6) and phase.shape == (6284,)
    np.testing.assert_allclose(phase, 2 * np.pi * np.arange(6284) / 6284)
    T = ur5_forward_kinematics(clean)
    circle = np.array([0.0, 0.4, 0.4]) + 0.4 * np.column_stack(
        [np.cos(phase), np.zeros_like(phase), np.sin(phase)]
    )
    assert np.abs(T[:, :3, 3] - circle).max() < 1e-10  # metres
    orientation = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    assert np.abs(T[:, :3, :3] - orientation).max() < 1e-10
    # each step continues from the last: the angles move by about a milliradian per step,
    # and the last step is one step away from the first (the circle closes in joint space)
    steps = np.abs(np.diff(clean, axis=0)).max(1)
    assert steps.max() < 5e-3
    assert np.abs(clean[-1] - clean[0]).max() < 5e-3
    assert np.all(np.abs(clean[0]) <= np.pi)


def test_robot_arm_noise_and_other_circles(arm):
    clean, noisy, phase, phase2 = arm
    np.testing.assert_array_equal(phase, phase2)
    noise = noisy - clean
    # 37 704 draws: standard error of the std ~ 1.1e-4
    assert abs(noise.std() - 0.03) < 6e-4 and abs(noise.mean()) < 6e-4
    np.testing.assert_allclose(noise.std(0), 0.03, rtol=0.05)
    Q, phase = make_robot_arm(300, radius=0.2, centre=(0.1, 0.45, 0.3), noise=0.0)
    circle = np.array([0.1, 0.45, 0.3]) + 0.2 * np.column_stack(
        [np.cos(phase), np.zeros_like(phase), np.sin(phase)]
    )
    assert np.abs(ur5_forward_kinematics(Q)[:, :3, 3] - circle).max() < 1e-10
    with pytest.raises(RuntimeError, match="workspace"):
        make_robot_arm(50, radius=0.4, centre=(0.0, 1.5, 0.4), noise=0.0)
    with pytest.raises(ValueError, match="centre"):
        make_robot_arm(50, centre=(0.0, 0.4))
