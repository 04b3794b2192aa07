import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal


def mixture_log_prob_reference(X, weights, means, covs):
    """Independent reference: scipy's multivariate normal, one component at a time."""
    comps = [
        np.log(w) + multivariate_normal(m, c).logpdf(X) for w, m, c in zip(weights, means, covs)
    ]
    return logsumexp(np.column_stack(comps), axis=1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def gap_mixture():
    """2-D two-component mixture with a low-density gap between the modes."""
    weights = np.array([0.5, 0.5])
    means = np.array([[-1.5, 0.0], [1.5, 0.0]])
    covs = np.array([np.diag([0.3, 0.6]), np.diag([0.3, 0.6])])
    return weights, means, covs


#: torch devices to check the torch paths on: the CPU always, CUDA where present
TORCH_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
