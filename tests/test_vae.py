"""VAE and IWAE: their bounds against a scipy recomputation, training, errors."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from gendist import VAE


def test_importance_weights_equal_a_scipy_recomputation(rng):
    X = rng.uniform(size=(7, 12))
    model = VAE(latent_dim=3, hidden=(16,), epochs=1, random_state=0).fit(X)
    x = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad():
        mu, logvar = model._posterior(x)
        z = mu + torch.randn(4, *mu.shape) * (0.5 * logvar).exp()
        log_w = model._log_weights(x, z, mu, logvar).double().numpy()
        p = torch.sigmoid(model._logits(z)).double().numpy()
    mu, sd, z = mu.double().numpy(), (0.5 * logvar).exp().double().numpy(), z.double().numpy()
    log_px = (X * np.log(p) + (1 - X) * np.log1p(-p)).sum(-1)
    log_pz = norm.logpdf(z).sum(-1)
    log_qz = norm.logpdf(z, mu, sd).sum(-1)
    np.testing.assert_allclose(log_w, log_px + log_pz - log_qz, rtol=1e-4, atol=1e-3)


def test_closed_form_kl_equals_torch_distributions(rng):
    mu = torch.as_tensor(rng.normal(size=(6, 3)))
    logvar = torch.as_tensor(rng.normal(size=(6, 3)))
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    np.testing.assert_allclose(VAE._kl(mu, logvar).numpy(), expected.numpy(), rtol=1e-12)


def test_vae_errors(rng):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAE(epochs=1).fit(rng.normal(size=(20, 5)))
    model = VAE(hidden=(8,), epochs=1).fit(rng.uniform(size=(20, 5)))
    with pytest.raises(ValueError, match="features"):
        model.encode(rng.uniform(size=(3, 4)))
    with pytest.raises(ValueError, match="features"):
        model.decode(rng.normal(size=(3, 3)))
    with pytest.raises(ValueError):
        VAE(latent_dim=0).fit(rng.uniform(size=(20, 5)))


def test_stochastic_decoder_gives_the_bernoulli_std(rng):
    model = VAE(hidden=(8,), epochs=1, random_state=0).fit(rng.uniform(size=(30, 6)))
    Z = rng.normal(size=(9, 2))
    with torch.no_grad():
        mean, std = model.stochastic_decoder()(torch.as_tensor(Z, dtype=torch.float32))
    expected = model.decode(Z)
    np.testing.assert_allclose(mean.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(std.numpy(), np.sqrt(expected * (1 - expected) + 1e-6), rtol=1e-5)


def test_gaussian_decoder_weights_equal_a_scipy_recomputation(rng):
    X = rng.normal(size=(7, 5))  # real data, outside [0, 1]
    model = VAE(
        latent_dim=2,
        hidden=(16,),
        epochs=1,
        random_state=0,
        activation="tanh",
        likelihood="gaussian",
    ).fit(X)
    x = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad():
        mu, logvar = model._posterior(x)
        z = mu + torch.randn(3, *mu.shape) * (0.5 * logvar).exp()
        log_w = model._log_weights(x, z, mu, logvar).double().numpy()
        mean, std = model.stochastic_decoder()(z.reshape(-1, 2))
        raw = model._decoder_logits(z.reshape(-1, 2))[:, 5:]
    mean, std = mean.double().numpy().reshape(3, 7, 5), std.double().numpy().reshape(3, 7, 5)
    # the std is softplus of the second half of the outputs, plus 1e-3
    np.testing.assert_allclose(
        std.reshape(-1, 5), np.log1p(np.exp(raw.double().numpy())) + 1e-3, rtol=1e-5
    )
    np.testing.assert_allclose(
        model.decode(z.reshape(-1, 2).numpy()), mean.reshape(-1, 5), rtol=1e-6
    )
    mu, sd, z = mu.double().numpy(), (0.5 * logvar).exp().double().numpy(), z.double().numpy()
    expected = (
        norm.logpdf(X, mean, std).sum(-1) + norm.logpdf(z).sum(-1) - norm.logpdf(z, mu, sd).sum(-1)
    )
    np.testing.assert_allclose(log_w, expected, rtol=1e-4, atol=1e-3)
    assert isinstance(model.encoder_[1], torch.nn.Tanh)
    with pytest.raises(ValueError, match="likelihood"):
        VAE(likelihood="poisson").fit(X)
    with pytest.raises(ValueError, match="activation"):
        VAE(activation="gelu").fit(X)
