"""
t-SNE of generative distances
=============================

:func:`gendist.tsne_embedding` runs t-SNE on a precomputed distance matrix (pairs in
different graph components, at distance ``inf``, are placed far apart). The graph's radius
is left to its default, ``"auto"``: the smallest one that keeps the graph connected. On two
concentric circles the generative distances separate the rings, which the Euclidean embedding
mixes.
"""

import matplotlib.pyplot as plt
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance, tsne_embedding
from gendist.datasets import make_circles

X, y = make_circles(300, random_state=0)
D_geo = GenerativeDistance(GaussianMixture(16, random_state=0)).fit_transform(X)

fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
axes[0].scatter(X[:, 0], X[:, 1], c=y, s=6, cmap="viridis")
axes[0].set_title("data")
for ax, (name, D) in zip(axes[1:], [("generative", D_geo), ("Euclidean", euclidean_distances(X))]):
    E = tsne_embedding(D, perplexity=30, random_state=0)
    ax.scatter(E[:, 0], E[:, 1], c=y, s=6, cmap="viridis")
    ax.set_title(f"t-SNE, {name} distances")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()
