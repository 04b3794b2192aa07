"""Density adapters: one protocol, the log-density of an (n, d) batch, for every kind of model.

Everything downstream calls :func:`evaluate_log_density`, which batches the points and checks
what the model returned. :func:`as_density` turns what a user passes into an adapter:

* a :class:`Density` (such as :class:`GaussianMixtureDensity`) is used as it is;
* a scikit-learn estimator with ``score_samples`` (GaussianMixture, KernelDensity,
  BayesianGaussianMixture, ...) becomes a :class:`SklearnDensity`; an unfitted one is cloned
  and fitted on the training points during ``fit``;
* a torch module or ``torch.distributions.Distribution`` with ``log_prob`` becomes a
  :class:`TorchDensity` (batched, no grad, on the model's own device); so does an
  unconditional zuko flow module (``zuko.flows.MAF(2)``: called, it returns the distribution);
* :class:`RealNVPDensity` trains a RealNVP flow (zuko) on the training points;
* any other callable mapping an (n, d) array to n log-densities becomes a
  :class:`CallableDensity`.
"""

from ._adapters import CallableDensity, SklearnDensity, TorchDensity, as_density
from ._base import Density, evaluate_log_density
from ._flow import RealNVPDensity
from ._mixture import GaussianMixtureDensity

__all__ = [
    "Density",
    "CallableDensity",
    "SklearnDensity",
    "TorchDensity",
    "GaussianMixtureDensity",
    "RealNVPDensity",
    "as_density",
    "evaluate_log_density",
]
