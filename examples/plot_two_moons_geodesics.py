"""
Geodesics on two moons
======================

Fit a Gaussian mixture to two moons, build the generative metric on a 10-nearest-neighbour
graph, and draw geodesics between points of the same moon and of different moons. Within a
moon the geodesic follows the ridge of high density; between moons it crosses the gap where
the gap is narrowest.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance
from gendist.plotting import plot_geodesics

X, y = make_moons(300, noise=0.07, random_state=0)
est = GenerativeDistance(GaussianMixture(12, random_state=0), n_neighbors=10)
est.fit(X)

# The two ends of the upper moon, and a point of the lower moon.
left, right = int(np.argmin(X[:, 0] + 5 * (y == 1))), int(np.argmax(X[:, 0] - 5 * (y == 1)))
lower = int(np.argmax(X[:, 1] * (y == 1) - 5 * (y == 0)))
geodesics = [est.geodesic(left, right), est.geodesic(left, lower)]
for g in geodesics:
    chord = np.linalg.norm(g.points[-1] - g.points[0])
    print(f"generative length {g.length:.3f}, Euclidean chord {chord:.3f}")

fig, ax = plt.subplots(figsize=(6, 4))
plot_geodesics(est.density_, X, geodesics, ax=ax, labels=y, title="Geodesics on two moons")
plt.show()
