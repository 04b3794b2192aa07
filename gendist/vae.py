"""Small variational autoencoders (VAE, IWAE) whose decoders define latent pullback metrics.

Both are multilayer perceptrons (ReLU or tanh layers) with a diagonal-Gaussian encoder
``q(z | x)``, a standard normal prior and a Bernoulli decoder ``p(x | z)`` (pixel intensities in
[0, 1], the usual choice for MNIST) or a diagonal-Gaussian one (any real data: a mean and a
standard deviation ``softplus(.) + 1e-3`` per feature). The VAE maximises the evidence lower
bound (ELBO, with the KL term in closed form); the IWAE (Burda, Grosse and Salakhutdinov,
ICLR 2016) the importance-weighted bound

    L_K(x) = E[ log (1/K) sum_k p(x, z_k) / q(z_k | x) ],   z_1..z_K ~ q(z | x),

which is tighter than the ELBO (``L_1``) and tends to ``log p(x)`` as ``K`` grows. Their
``decoder_`` (latent codes -> decoded means) plugs into :class:`gendist.latent.LatentDistance`.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._compute import chunk_rows, to_numpy
from ._optional import import_optional
from ._validation import check_int, check_points, check_positive

__all__ = ["VAE", "IWAE"]


_ACTIVATIONS = ("relu", "tanh")
_LIKELIHOODS = ("bernoulli", "gaussian")


def _mlp(torch, sizes, final=None, activation: str = "relu"):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU() if activation == "relu" else torch.nn.Tanh())
    if final is not None:
        layers.append(final)
    return torch.nn.Sequential(*layers)


class VAE(BaseEstimator):
    """Variational autoencoder with a Gaussian encoder and a Bernoulli or Gaussian decoder.

    Parameters
    ----------
    latent_dim : int, default=2
        Dimension q of the latent space.
    hidden : sequence of int, default=(512, 256)
        Widths of the encoder's hidden layers (the decoder mirrors them).
    activation : {"relu", "tanh"}, default="relu"
        Nonlinearity of the hidden layers.
    likelihood : {"bernoulli", "gaussian"}, default="bernoulli"
        ``p(x | z)``: Bernoulli with mean ``sigmoid(.)`` (``X`` in [0, 1]), or a diagonal
        Gaussian with mean and standard deviation ``softplus(.) + 1e-3`` per feature (any real
        ``X``; the decoder has ``2 D`` outputs).
    n_importance_samples : int, default=1
        Importance samples K per point in the training objective: 1 trains on the ELBO (KL in
        closed form), K > 1 on the importance-weighted bound L_K (an IWAE).
    epochs : int, default=30
    batch_size : int, default=128
    lr : float, default=1e-3
        Adam learning rate.
    random_state : int, RandomState or None, default=None
        Seeds the initialisation, the batches and the latent samples.
    device : str or torch.device, default=None
        Where to train (default CPU).
    verbose : bool, default=False
        Show a progress bar with the training bound.

    Attributes
    ----------
    encoder_ : torch.nn.Module
        x -> (2 q) outputs: the posterior mean and log-variance.
    decoder_ : torch.nn.Module
        z -> the decoded mean (an image in [0, 1] for the Bernoulli decoder).
    history_ : list of float
        The training objective (mean bound per point, nats) after each epoch.
    n_features_in_ : int
    """

    def __init__(
        self,
        latent_dim=2,
        hidden=(512, 256),
        n_importance_samples=1,
        epochs=30,
        batch_size=128,
        lr=1e-3,
        random_state=None,
        device=None,
        verbose=False,
        activation="relu",
        likelihood="bernoulli",
    ):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.likelihood = likelihood
        self.n_importance_samples = n_importance_samples
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ model
    def _posterior(self, x):
        out = self.encoder_(x)
        q = self.latent_dim
        return out[:, :q], out[:, q:]

    def _log_likelihood(self, x, z):
        """log p(x | z) for samples z of shape (K, B, q): shape (K, B)."""
        torch = self._torch
        out = self._logits(z)  # (K, B, D), or (K, B, 2 D) for the Gaussian decoder
        if self.likelihood == "bernoulli":
            return -torch.nn.functional.binary_cross_entropy_with_logits(
                out, x.expand_as(out), reduction="none"
            ).sum(-1)
        mean, raw = out.chunk(2, dim=-1)
        std = torch.nn.functional.softplus(raw) + self._decoder.min_std
        return (-0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def _log_weights(self, x, z, mu, logvar):
        """log p(x | z) + log p(z) - log q(z | x) for samples z of shape (K, B, q)."""
        log_px = self._log_likelihood(x, z)
        log2pi = math.log(2 * math.pi)
        log_pz = -0.5 * (z * z + log2pi).sum(-1)
        log_qz = -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + log2pi).sum(-1)
        return log_px + log_pz - log_qz

    @staticmethod
    def _kl(mu, logvar):
        """KL(N(mu, diag exp(logvar)) || N(0, I)) in closed form, per row."""
        return 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(-1)

    def _logits(self, z):
        shape = z.shape
        return self._decoder_logits(z.reshape(-1, shape[-1])).reshape(*shape[:-1], -1)

    def _bound(self, x, K, generator=None, analytic_kl=False):
        """Per-point L_K (K = 1: the ELBO, with the KL in closed form if asked)."""
        torch = self._torch
        mu, logvar = self._posterior(x)
        eps = torch.randn((K, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps
        if K == 1 and analytic_kl:
            return self._log_likelihood(x, z)[0] - self._kl(mu, logvar)
        log_w = self._log_weights(x, z, mu, logvar)
        return torch.logsumexp(log_w, dim=0) - math.log(K)

    # ------------------------------------------------------------------ fitting
    def _check_params(self):
        q = check_int(self.latent_dim, "latent_dim")
        hidden = [check_int(h, "hidden[i]") for h in self.hidden]
        check_int(self.n_importance_samples, "n_importance_samples")
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_positive(self.lr, "lr")
        for name, value, allowed in (
            ("activation", self.activation, _ACTIVATIONS),
            ("likelihood", self.likelihood, _LIKELIHOODS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        return q, hidden

    def _check_X(self, X, n_features=None):
        X = check_points(X, "X", n_features=n_features)
        if self.likelihood == "bernoulli" and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                "X must hold intensities in [0, 1] (the decoder is Bernoulli); got values in "
                f"[{X.min():.3g}, {X.max():.3g}]. Scale images by 1/255, or use "
                "likelihood='gaussian'."
            )
        return X

    def fit(self, X, y=None):
        """Train on ``X`` (n, D), intensities in [0, 1].

        Returns
        -------
        self
        """
        q, hidden = self._check_params()
        X = self._check_X(X)
        torch = import_optional("torch")
        self._torch = torch
        rng = check_random_state(self.random_state)
        device = torch.device("cpu" if self.device is None else self.device)
        generator = torch.Generator(device=device).manual_seed(int(rng.randint(2**31 - 1)))
        n, D = X.shape
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(rng.randint(2**31 - 1)))
            self.encoder_ = _mlp(torch, [D, *hidden, 2 * q], activation=self.activation)
            self.encoder_ = self.encoder_.to(device)
            width = D if self.likelihood == "bernoulli" else 2 * D
            self._decoder_logits = _mlp(
                torch, [q, *hidden[::-1], width], activation=self.activation
            ).to(device)
        if self.likelihood == "bernoulli":
            self.decoder_ = torch.nn.Sequential(self._decoder_logits, torch.nn.Sigmoid())
        else:
            from ._torch_modules import GaussianDecoder

            self._decoder = GaussianDecoder(self._decoder_logits, with_std=True)
            self.decoder_ = GaussianDecoder(self._decoder_logits, with_std=False)
        params = list(self.encoder_.parameters()) + list(self._decoder_logits.parameters())
        optimizer = torch.optim.Adam(params, lr=self.lr)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        K = int(self.n_importance_samples)
        self.history_ = []
        bar = tqdm(range(self.epochs), desc=type(self).__name__, disable=not self.verbose)
        for _ in bar:
            perm = torch.as_tensor(rng.permutation(n), device=device)
            total = 0.0
            for s in range(0, n, self.batch_size):
                x = Xt[perm[s : s + self.batch_size]]
                bound = self._bound(x, K, generator, analytic_kl=True).mean()
                optimizer.zero_grad()
                (-bound).backward()
                optimizer.step()
                total += float(bound.detach()) * len(x)
            self.history_.append(total / n)
            bar.set_postfix(bound=f"{self.history_[-1]:.1f}")
        self.encoder_.eval()
        self.decoder_.eval()
        self.n_features_in_ = D
        return self

    # ------------------------------------------------------------------ use
    def _tensor(self, A):
        ref = next(self.encoder_.parameters())
        return self._torch.as_tensor(A, dtype=ref.dtype, device=ref.device)

    def encode(self, X) -> np.ndarray:
        """Posterior means E[z | x], shape (n, q)."""
        check_is_fitted(self, "encoder_")
        X = self._check_X(X, self.n_features_in_)
        with self._torch.no_grad():
            out = [
                self._posterior(self._tensor(X[s : s + 4096]))[0] for s in range(0, len(X), 4096)
            ]
        return to_numpy(self._torch.cat(out), np.float64)

    def decode(self, Z) -> np.ndarray:
        """Decoded means of latent codes, shape (m, D) (in [0, 1] for the Bernoulli decoder)."""
        check_is_fitted(self, "decoder_")
        Z = check_points(Z, "Z", n_features=self.latent_dim)
        with self._torch.no_grad():
            return to_numpy(self.decoder_(self._tensor(Z)), np.float64)

    def stochastic_decoder(self):
        """The decoder as a torch module ``z -> (mean, std)``: the Bernoulli standard deviation
        ``std = sqrt(mean (1 - mean))`` beside the mean image, or the Gaussian decoder's own
        standard deviation.

        Given to :class:`gendist.latent.LatentDistance`, curves are measured in the joint
        embedding ``z -> (mean(z), std(z))``, whose pullback ``J_mean^T J_mean + J_std^T
        J_std`` is the expected metric of the stochastic decoder (Arvanitidis et al., ICLR
        2018): it also grows where the decoder becomes uncertain, away from the data.
        """
        check_is_fitted(self, "decoder_")
        if self.likelihood == "gaussian":
            return self._decoder
        from ._torch_modules import MeanStd

        return MeanStd(self.decoder_)

    def bound(self, X, n_importance_samples: int = 1, random_state=None) -> np.ndarray:
        """Monte-Carlo estimate of the importance-weighted bound L_K on log p(x), per point.

        ``n_importance_samples=1`` is the ELBO (sampled, no closed-form KL); larger K is tighter.

        Returns
        -------
        bound : ndarray of shape (n,), nats
        """
        check_is_fitted(self, "encoder_")
        X = self._check_X(X, self.n_features_in_)
        K = check_int(n_importance_samples, "n_importance_samples")
        rng = check_random_state(random_state)
        ref = next(self.encoder_.parameters())
        generator = self._torch.Generator(device=ref.device).manual_seed(
            int(rng.randint(2**31 - 1))
        )
        # points whose K samples, decoded images and log-weights fit the working memory
        step = chunk_rows(K * (self.n_features_in_ + 2 * self.latent_dim) * 4 * 4)
        with self._torch.no_grad():
            out = [
                self._bound(self._tensor(X[s : s + step]), K, generator)
                for s in range(0, len(X), step)
            ]
        return to_numpy(self._torch.cat(out), np.float64)

    def score(self, X, y=None) -> float:
        """Mean ELBO per point (nats)."""
        return float(self.bound(X, 1, random_state=0).mean())

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_torch", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "encoder_" in state:
            self._torch = import_optional("torch")


class IWAE(VAE):
    """Importance-weighted autoencoder: a :class:`VAE` trained on the bound L_K, K = 5 by
    default (Burda et al. 2016). Same parameters and attributes as :class:`VAE`."""

    def __init__(
        self,
        latent_dim=2,
        hidden=(512, 256),
        n_importance_samples=5,
        epochs=30,
        batch_size=128,
        lr=1e-3,
        random_state=None,
        device=None,
        verbose=False,
        activation="relu",
        likelihood="bernoulli",
    ):
        super().__init__(
            latent_dim=latent_dim,
            hidden=hidden,
            n_importance_samples=n_importance_samples,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            random_state=random_state,
            device=device,
            verbose=verbose,
            activation=activation,
            likelihood=likelihood,
        )
