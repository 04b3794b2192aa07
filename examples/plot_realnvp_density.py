"""
Geodesics under a RealNVP flow
==============================

:class:`gendist.RealNVPDensity` is a small RealNVP normalizing flow (built on zuko). Here it
is trained for a few epochs only, enough for a density with the shape of the two moons; the
generative metric then uses the flow's log-likelihood like any other density.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons

from gendist import GenerativeDistance, RealNVPDensity
from gendist.plotting import plot_geodesics

X, y = make_moons(400, noise=0.08, random_state=0)
flow = RealNVPDensity(
    n_transforms=4, hidden_features=(32, 32), epochs=60, batch_size=128, random_state=0
).fit(X)
print(f"mean log-likelihood of the training points: {flow.log_prob(X).mean():.3f}")

est = GenerativeDistance(flow, n_neighbors=15).fit(X)
upper = np.flatnonzero(y == 0)
a, b = upper[np.argmin(X[upper, 0])], upper[np.argmax(X[upper, 0])]
g = est.geodesic(int(a), int(b))

fig, ax = plt.subplots(figsize=(6, 4))
plot_geodesics(flow, X, [g], ax=ax, labels=y, grid_size=120, title="RealNVP log-density")
plt.show()
