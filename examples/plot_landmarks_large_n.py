"""
Large n with landmarks
======================

With many points the n × n distance matrix does not fit, but the distances from a few
landmarks do. :func:`gendist.landmarks.choose_landmarks` picks them by farthest-point
sampling and returns their distances to every vertex;
:func:`gendist.landmarks.landmark_bounds` bounds any pair by the triangle inequality, and
:func:`gendist.landmarks.landmark_mds` embeds every vertex from the landmark distances alone.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance
from gendist.datasets import make_spirals
from gendist.landmarks import choose_landmarks, landmark_bounds, landmark_mds

X, y = make_spirals(3000, noise=0.1, random_state=0)
est = GenerativeDistance(GaussianMixture(30, random_state=0), n_neighbors=10).fit(X)
landmarks, D_land = choose_landmarks(est.graph_, 40, random_state=0)
print(f"{X.shape[0]} vertices, landmark distances of shape {D_land.shape}")

# Bounds on a few pairs against their exact distances.
rows, cols = np.arange(5), np.arange(5, 10)
lower, upper = landmark_bounds(D_land, rows, cols)
exact = np.array([est.distance(int(i), int(j)) for i, j in zip(rows, cols)])
for lo, d, hi in zip(lower, exact, upper):
    print(f"{lo:.3f} <= {d:.3f} <= {hi:.3f}")

E = landmark_mds(D_land, landmarks, n_components=2)
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
axes[0].scatter(X[:, 0], X[:, 1], c=y, s=2, cmap="coolwarm")
axes[0].scatter(*X[landmarks].T, c="k", marker="x", s=25, label="landmarks")
axes[0].legend(loc="lower right", fontsize=8)
axes[0].set_title("two spirals, 3000 points")
axes[1].scatter(E[:, 0], E[:, 1], c=y, s=2, cmap="coolwarm")
axes[1].set_title("landmark MDS of the generative distances")
fig.tight_layout()
plt.show()
