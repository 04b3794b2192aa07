"""Datasets: the 2-D clustering sets of the paper, and the pendulum and robot-arm sets of
Chen et al. (2018).

The clustering generators (:data:`DATASETS`) return ``(X, y)``: points of shape
(n_samples, 2) and integer labels 0/1, half of the points in each class, reproducible from
``random_state``. :func:`make_pendulum` (16 x 16 images of a pendulum at uniform random
angles) and :func:`make_robot_arm` (the joint angles of a UR5 arm whose end effector traces
a circle) return the data and the variable that generated them, for the latent experiments
of Chen et al., "Metrics for Deep Generative Models", AISTATS 2018.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn import datasets as _sk
from sklearn.utils import check_random_state

from ._validation import check_int, check_positive

__all__ = [
    "make_narrow_mog",
    "make_circles",
    "make_spirals",
    "make_moons",
    "make_dataset",
    "DATASETS",
    "render_pendulum",
    "make_pendulum",
    "UR5_DH",
    "ur5_forward_kinematics",
    "make_robot_arm",
]


def _class_sizes(n_samples):
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    return n_samples // 2, n_samples - n_samples // 2


def make_narrow_mog(
    n_samples: int = 500,
    *,
    separation: float = 0.5,
    long_std: float = 1.0,
    narrow_std: float = 0.05,
    random_state=None,
):
    """Two narrow, parallel, axis-aligned Gaussians ("Narrow MoG").

    Class a has mean ``(0, (a - 1/2) * separation)`` and covariance
    ``diag(long_std**2, narrow_std**2)``: two long thin clouds side by side, whose length
    exceeds the gap between them, so Euclidean neighbourhoods reach across the gap.

    Parameters
    ----------
    n_samples : int, default=500
    separation : float, default=0.5
        Distance between the two means (along y).
    long_std, narrow_std : float
        Standard deviations along x and y.
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    sizes = _class_sizes(n_samples)
    rng = check_random_state(random_state)
    std = np.array([check_positive(long_std, "long_std"), check_positive(narrow_std, "narrow_std")])
    half = check_positive(separation, "separation") / 2
    X = np.vstack(
        [rng.normal(size=(m, 2)) * std + [0.0, sign * half] for m, sign in zip(sizes, (-1, 1))]
    )
    y = np.repeat([0, 1], sizes)
    return X, y


def make_circles(
    n_samples: int = 500, *, noise: float = 0.05, factor: float = 0.5, random_state=None
):
    """Two concentric circles (scikit-learn's ``make_circles``): outer class 0, inner class 1.

    Parameters
    ----------
    n_samples : int, default=500
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to each point.
    factor : float, default=0.5
        Radius of the inner circle relative to the outer one (radius 1).
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    _class_sizes(n_samples)
    return _sk.make_circles(n_samples, noise=noise, factor=factor, random_state=random_state)


def make_spirals(
    n_samples: int = 500, *, noise: float = 0.04, turns: float = 1.0, random_state=None
):
    """Two interleaved Archimedean spirals, the second the first turned by 180 degrees.

    Points lie at angle ``theta = 2 pi * turns * sqrt(u)`` (u uniform on [0.02, 1], which
    spaces them evenly along the curve) and radius ``theta / (2 pi turns)`` (so the outer end
    is at radius 1),
    plus isotropic Gaussian noise.

    Parameters
    ----------
    n_samples : int, default=500
    noise : float, default=0.04
        Standard deviation of the noise.
    turns : float, default=1.0
        Number of turns of each spiral.
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    sizes = _class_sizes(n_samples)
    rng = check_random_state(random_state)
    turns = check_positive(turns, "turns")
    parts = []
    for m, phase in zip(sizes, (0.0, np.pi)):
        theta = 2 * np.pi * turns * np.sqrt(rng.uniform(0.02, 1.0, m))
        r = theta / (2 * np.pi * turns)
        parts.append(np.column_stack([r * np.cos(theta + phase), r * np.sin(theta + phase)]))
    X = np.vstack(parts) + check_positive(noise, "noise", allow_zero=True) * rng.normal(
        size=(sum(sizes), 2)
    )
    return X, np.repeat([0, 1], sizes)


def make_moons(n_samples: int = 500, *, noise: float = 0.08, random_state=None):
    """Two interleaving half circles (scikit-learn's ``make_moons``).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,)
    """
    _class_sizes(n_samples)
    return _sk.make_moons(n_samples, noise=noise, random_state=random_state)


#: The 2-D clustering datasets by name.
DATASETS = {
    "narrow_mog": make_narrow_mog,
    "circles": make_circles,
    "spirals": make_spirals,
    "moons": make_moons,
}


def make_dataset(name: str, n_samples: int = 500, random_state=None, **params):
    """One of :data:`DATASETS` by name; ``params`` go to its generator."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}.")
    return DATASETS[name](n_samples, random_state=random_state, **params)


# ------------------------------------------------------------------ pendulum (Chen et al.)


def _pixel_centres(size: int):
    """x (right) and y (up) of the pixel centres in [-1, 1]: rows from the top."""
    u = (2 * np.arange(size) + 1) / size - 1
    return u[None, :], -u[:, None]


def render_pendulum(
    angles,
    *,
    size: int = 16,
    length: float = 0.7,
    rod_width: float = 0.08,
    bob_width: float = 0.15,
) -> np.ndarray:
    """Noise-free images of a pendulum at given joint angles.

    The image is the square [-1, 1]^2 (x to the right, y up) on ``size x size`` pixels,
    sampled at the pixel centres; the pivot is at the centre and the bob at
    ``length * (sin a, -cos a)``: angle 0 hangs straight down, angles grow counterclockwise.
    A pixel at distance ``r`` from the rod (the segment from the pivot to the bob) and ``b``
    from the bob has intensity ``max(exp(-r**2 / (2 rod_width**2)), exp(-b**2 / (2
    bob_width**2)))``: Gaussian profiles, so the image varies smoothly with the angle.

    Parameters
    ----------
    angles : array-like of shape (n,)
        Joint angles in radians.
    size : int, default=16
        Pixels per side.
    length : float, default=0.7
        Rod length, in units of the half-width of the image.
    rod_width, bob_width : float
        Standard deviations of the Gaussian profiles of the rod and the bob (same units).

    Returns
    -------
    images : ndarray of shape (n, size * size)
        Intensities in [0, 1], rows of the image from the top, flattened row by row.
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 1 or not np.all(np.isfinite(angles)):
        raise ValueError("angles must be a finite 1-D array (radians).")
    size = check_int(size, "size", minimum=2)
    length = check_positive(length, "length")
    rod_width = check_positive(rod_width, "rod_width")
    bob_width = check_positive(bob_width, "bob_width")
    x, y = _pixel_centres(size)
    tip_x = length * np.sin(angles)[:, None, None]
    tip_y = -length * np.cos(angles)[:, None, None]
    # projection of each pixel on the rod, clamped to the segment
    t = np.clip((x * tip_x + y * tip_y) / length**2, 0.0, 1.0)
    rod2 = (x - t * tip_x) ** 2 + (y - t * tip_y) ** 2
    bob2 = (x - tip_x) ** 2 + (y - tip_y) ** 2
    image = np.maximum(np.exp(-rod2 / (2 * rod_width**2)), np.exp(-bob2 / (2 * bob_width**2)))
    return image.reshape(len(angles), size * size)


def make_pendulum(
    n_samples: int = 15000, *, size: int = 16, noise: float = 0.05, random_state=None
):
    """Images of a pendulum at uniform random joint angles, with Gaussian pixel noise.

    The pendulum data set of Chen et al. (2018): angles uniform in [0, 2 pi) (0 to 360
    degrees), each image rendered by :func:`render_pendulum` plus independent Gaussian noise
    of standard deviation ``noise`` on every pixel. The noise is not clipped, so pixels leave
    [0, 1]; clip them (``np.clip(X, 0, 1)``) for a Bernoulli decoder.

    Parameters
    ----------
    n_samples : int, default=15000
    size : int, default=16
        Pixels per side.
    noise : float, default=0.05
        Standard deviation of the pixel noise (intensities are in [0, 1]).
    random_state : int, RandomState instance or None
        Draws the angles first, then the noise.

    Returns
    -------
    X : ndarray of shape (n_samples, size * size)
    angles : ndarray of shape (n_samples,)
        The joint angles in radians, in [0, 2 pi).
    """
    n_samples = check_int(n_samples, "n_samples")
    noise = check_positive(noise, "noise", allow_zero=True)
    rng = check_random_state(random_state)
    angles = rng.uniform(0.0, 2 * np.pi, n_samples)
    X = render_pendulum(angles, size=size)
    return X + noise * rng.normal(size=X.shape), angles


# ------------------------------------------------------------------ robot arm (Chen et al.)

#: Standard Denavit-Hartenberg parameters of the Universal Robots UR5 (CB3, "UR5 serie 3"):
#: link lengths ``a`` and offsets ``d`` in metres, twists ``alpha`` in radians, joint angles
#: ``theta`` the variables. Source: Universal Robots, CB3 user manual, appendix "Robot DH
#: Parameter", table "Denavit-Hartenberg parameters for the UR5 serie 3"; the same values
#: are on Universal Robots' support page "DH parameters for calculations of kinematics and
#: dynamics" (universal-robots.com/articles/ur/application-installation/).
UR5_DH = {
    "a": (0.0, -0.425, -0.39225, 0.0, 0.0, 0.0),
    "d": (0.089159, 0.0, 0.0, 0.10915, 0.09465, 0.0823),
    "alpha": (math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0),
}


def ur5_forward_kinematics(Q) -> np.ndarray:
    """Poses of the UR5's flange for joint angles ``Q`` (standard DH, :data:`UR5_DH`).

    Each joint contributes ``Rz(theta_i) Tz(d_i) Tx(a_i) Rx(alpha_i)``; the product runs from
    the base frame (z up along joint 1) to the tool flange.

    Parameters
    ----------
    Q : array-like of shape (n, 6) or (6,)
        Joint angles in radians.

    Returns
    -------
    T : ndarray of shape (n, 4, 4) or (4, 4)
        Homogeneous transforms: rotation ``T[..., :3, :3]``, position ``T[..., :3, 3]`` in
        metres.
    """
    Q = np.asarray(Q, dtype=np.float64)
    single = Q.ndim == 1
    Q = np.atleast_2d(Q)
    if Q.ndim != 2 or Q.shape[1] != 6:
        raise ValueError(f"Q must have shape (n, 6), got {Q.shape}.")
    T = np.broadcast_to(np.eye(4), (len(Q), 4, 4)).copy()
    for i in range(6):
        ct, st = np.cos(Q[:, i]), np.sin(Q[:, i])
        ca, sa = np.cos(UR5_DH["alpha"][i]), np.sin(UR5_DH["alpha"][i])
        a, d = UR5_DH["a"][i], UR5_DH["d"][i]
        link = np.zeros((len(Q), 4, 4))
        link[:, 0] = np.stack([ct, -st * ca, st * sa, a * ct], axis=1)
        link[:, 1] = np.stack([st, ct * ca, -ct * sa, a * st], axis=1)
        link[:, 2, 1:] = (sa, ca, d)
        link[:, 3, 3] = 1.0
        T = T @ link
    return T[0] if single else T


_UR5_COS_ALPHA = tuple(round(math.cos(a), 15) for a in UR5_DH["alpha"])  # exact 0 for pi/2
_UR5_SIN_ALPHA = tuple(math.sin(a) for a in UR5_DH["alpha"])


def _ur5_error_and_jacobian(q, target, R_target):
    """Pose error (position in m; orientation ``1/2 sum_k r_k x r*_k``) and the geometric
    Jacobian (6, 6) of the flange at ``q``: the DH chain in scalar arithmetic (this runs
    once per IK iteration, where numpy's per-call overhead dominates)."""
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
    px = py = pz = 0.0
    axes, origins = [], []
    for i in range(6):
        axes.append((r02, r12, r22))
        origins.append((px, py, pz))
        ct, st = math.cos(q[i]), math.sin(q[i])
        ca, sa = _UR5_COS_ALPHA[i], _UR5_SIN_ALPHA[i]
        a, d = UR5_DH["a"][i], UR5_DH["d"][i]
        px, py, pz = (
            px + a * (r00 * ct + r01 * st) + r02 * d,
            py + a * (r10 * ct + r11 * st) + r12 * d,
            pz + a * (r20 * ct + r21 * st) + r22 * d,
        )
        r00, r01, r02 = r00 * ct + r01 * st, (r01 * ct - r00 * st) * ca + r02 * sa, (
            r00 * st - r01 * ct
        ) * sa + r02 * ca
        r10, r11, r12 = r10 * ct + r11 * st, (r11 * ct - r10 * st) * ca + r12 * sa, (
            r10 * st - r11 * ct
        ) * sa + r12 * ca
        r20, r21, r22 = r20 * ct + r21 * st, (r21 * ct - r20 * st) * ca + r22 * sa, (
            r20 * st - r21 * ct
        ) * sa + r22 * ca
    ex = ey = ez = 0.0
    for k, (c0, c1, c2) in enumerate(((r00, r10, r20), (r01, r11, r21), (r02, r12, r22))):
        d0, d1, d2 = R_target[0][k], R_target[1][k], R_target[2][k]
        ex += c1 * d2 - c2 * d1
        ey += c2 * d0 - c0 * d2
        ez += c0 * d1 - c1 * d0
    error = [target[0] - px, target[1] - py, target[2] - pz, 0.5 * ex, 0.5 * ey, 0.5 * ez]
    columns = []
    for (z0, z1, z2), (o0, o1, o2) in zip(axes, origins):
        d0, d1, d2 = px - o0, py - o1, pz - o2
        columns.append((z1 * d2 - z2 * d1, z2 * d0 - z0 * d2, z0 * d1 - z1 * d0, z0, z1, z2))
    return np.array(error), np.array(columns).T


def _damped_least_squares(q, target, R_target, damping, tol, max_iter):
    """Iterate ``q += J^T (J J^T + damping^2 I)^-1 e`` until ``|e| < tol``."""
    eye = damping**2 * np.eye(6)
    for _ in range(max_iter):
        error, J = _ur5_error_and_jacobian(q, target, R_target)
        if math.sqrt(error @ error) < tol:
            return q
        q = q + J.T @ np.linalg.solve(J @ J.T + eye, error)
    raise RuntimeError(
        f"inverse kinematics did not converge to {tol:g} in {max_iter} iterations at target "
        f"{np.round(target, 4).tolist()} m; the circle may leave the arm's workspace."
    )


#: flange orientation along the circle: tool z axis (the flange normal) along +y, towards
#: the plane of the circle; tool x along +x
_ROBOT_ORIENTATION = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))
#: the joint angles the first inverse-kinematics solve starts from (radians)
_ROBOT_START = (math.pi / 2, -math.pi / 2, math.pi / 2, 0.0, math.pi / 2, 0.0)


def make_robot_arm(
    n_steps: int = 6284,
    *,
    radius: float = 0.4,
    centre=(0.0, 0.4, 0.4),
    noise: float = 0.03,
    damping: float = 0.01,
    tol: float = 1e-11,
    random_state=None,
):
    """Joint angles of a UR5 arm whose end effector traces a circle, with noise.

    The robot-arm data set of Chen et al. (2018), on the UR5's published DH parameters
    (:data:`UR5_DH`). At step ``t = 0 .. n_steps - 1`` the flange must reach
    ``centre + radius (cos phi_t, 0, sin phi_t)`` with ``phi_t = 2 pi t / n_steps`` (a vertical
    circle in the plane y = centre[1], once round) at a fixed orientation (flange normal
    along +y, towards that plane). The joint angles come from inverse kinematics by damped
    least squares, ``q += J^T (J J^T + damping^2 I)^-1 e`` on the 6-D pose error ``e``
    until ``|e| < tol``, each step starting from the previous step's solution (the first from
    a fixed elbow pose, its result wrapped to (-pi, pi]); so the angles change continuously
    along the circle. At this orientation the flange's own rotation, joint 6, stays at 0 (to
    1e-11 rad) all the way round: its column is noise only. Gaussian noise of standard
    deviation ``noise`` is then added to every joint angle.

    Parameters
    ----------
    n_steps : int, default=6284
        Time steps (6284 ~ 2 pi 1000: about 1 mrad of the circle per step).
    radius : float, default=0.4
        Circle radius in metres.
    centre : sequence of 3 floats, default=(0.0, 0.4, 0.4)
        Circle centre in metres, in the base frame (z up along joint 1).
    noise : float, default=0.03
        Standard deviation of the joint-angle noise, radians.
    damping : float, default=0.01
        Damping of the least-squares steps.
    tol : float, default=1e-11
        Pose error at which a step's iterations stop (metres and radians).
    random_state : int, RandomState instance or None
        Draws the noise (the noise-free angles are deterministic).

    Returns
    -------
    Q : ndarray of shape (n_steps, 6)
        Noisy joint angles in radians.
    phase : ndarray of shape (n_steps,)
        The angle ``phi_t`` of each step on the circle, radians.
    """
    n_steps = check_int(n_steps, "n_steps")
    radius = check_positive(radius, "radius")
    noise = check_positive(noise, "noise", allow_zero=True)
    damping = check_positive(damping, "damping")
    tol = check_positive(tol, "tol")
    centre = np.asarray(centre, dtype=np.float64)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ValueError(f"centre must be 3 finite coordinates, got {centre!r}.")
    rng = check_random_state(random_state)
    phase = 2 * np.pi * np.arange(n_steps) / n_steps
    targets = centre + radius * np.column_stack(
        [np.cos(phase), np.zeros(n_steps), np.sin(phase)]
    )
    q = _damped_least_squares(
        np.array(_ROBOT_START), targets[0], _ROBOT_ORIENTATION, 0.1, tol, 10_000
    )
    q = np.pi - np.mod(np.pi - q, 2 * np.pi)  # to (-pi, pi]
    Q = np.empty((n_steps, 6))
    for t, target in enumerate(targets.tolist()):
        q = _damped_least_squares(q, target, _ROBOT_ORIENTATION, damping, tol, 500)
        Q[t] = q
    return Q + noise * rng.normal(size=Q.shape), phase
