"""VAE and IWAE trained on MNIST digits."""

import pytest

from gendist import IWAE, VAE


@pytest.fixture(scope="module")
def digits(request):
    from experiments._data import default_data_dir, load_mnist

    X, y = load_mnist(default_data_dir(), dataset="mnist", split="test")
    return X[:600], y[:600]


def test_training_raises_the_bound_and_iwae_is_tighter(digits):
    X, _ = digits
    train, held = X[:500], X[500:]
    untrained = VAE(hidden=(64,), epochs=1, lr=1e-12, random_state=0).fit(train)
    vae = VAE(hidden=(64,), epochs=5, random_state=0).fit(train)
    assert vae.score(held) > untrained.score(held) + 100  # nats per image
    iwae = IWAE(hidden=(64,), epochs=5, n_importance_samples=5, random_state=0).fit(train)
    for model in (vae, iwae):
        elbo = model.bound(held, 1, random_state=1).mean()
        tight = model.bound(held, 200, random_state=1).mean()
        assert tight > elbo  # L_200 >= L_1 in expectation; the gap is nats, not noise
    codes = iwae.encode(held)
    assert codes.shape == (100, 2)
    decoded = iwae.decode(codes)
    assert decoded.shape == (100, 784) and decoded.min() >= 0 and decoded.max() <= 1
