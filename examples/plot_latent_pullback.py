"""
Latent pullback geodesics of a small VAE
========================================

A VAE with a 2-D latent space is trained on synthetic 8 × 8 images (a bright bar at a random
angle, no download). :class:`gendist.LatentDistance` measures latent codes with the pullback
metric of the decoder: a latent segment costs the length of its decoded image. The
magnification factor ``sqrt(det J(z)^T J(z))`` shows where the decoder stretches the latent
space; geodesics avoid those regions.
"""

import matplotlib.pyplot as plt
import numpy as np

from gendist import VAE, LatentDistance, magnification_factor

rng = np.random.default_rng(0)
n, side = 400, 8
angles = rng.uniform(0, np.pi, n)
u = np.linspace(-1, 1, side)
gx, gy = np.meshgrid(u, u)
# A bar through the centre at each angle, blurred, in [0, 1].
dist_to_line = np.abs(np.sin(angles)[:, None, None] * gx - np.cos(angles)[:, None, None] * gy)
images = np.exp(-((dist_to_line / 0.25) ** 2)).reshape(n, -1)

vae = VAE(latent_dim=2, hidden=(64, 32), epochs=40, batch_size=64, random_state=0).fit(images)
Z = vae.encode(images)

lat = LatentDistance(vae.decoder_, n_neighbors=10).fit(Z)
a, b = int(np.argmin(angles)), int(np.argmin(np.abs(angles - np.pi / 2)))
g = lat.geodesic(a, b)
print(f"latent pullback length {g.length:.3f}, latent Euclidean {np.linalg.norm(Z[a] - Z[b]):.3f}")

lo, hi = Z.min(0) - 0.3, Z.max(0) + 0.3
zx, zy = np.meshgrid(np.linspace(lo[0], hi[0], 40), np.linspace(lo[1], hi[1], 40))
grid = np.column_stack([zx.ravel(), zy.ravel()])
mf = magnification_factor(vae.decoder_, grid).reshape(zx.shape)

fig, ax = plt.subplots(figsize=(5.5, 4.5))
im = ax.pcolormesh(zx, zy, np.log(mf), shading="auto", cmap="magma")
fig.colorbar(im, ax=ax, label="log magnification factor")
ax.scatter(Z[:, 0], Z[:, 1], c=angles, s=6, cmap="twilight")
ax.plot(*g.points.T, "c-", lw=2, label="pullback geodesic")
ax.plot(*Z[[a, b]].T, "w--", lw=1, label="straight line")
ax.legend(loc="upper right", fontsize=8)
ax.set_title("Latent space of a small VAE")
plt.show()
