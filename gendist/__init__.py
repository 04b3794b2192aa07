"""gendist: distances and geodesics between data points according to a generative model."""

from .affinity import GeodesicAffinity, distance_affinity
from .cluster import IsingClustering
from .densities import (
    CallableDensity,
    Density,
    GaussianMixtureDensity,
    RealNVPDensity,
    SklearnDensity,
    TorchDensity,
    as_density,
)
from .embed import tsne_embedding
from .estimator import GenerativeDistance, generative_distances
from .graph import GraphTooLargeError
from .latent import LatentDistance, PullbackMetric, magnification_factor
from .metric import ConformalMetric
from .paths import Geodesic
from .vae import IWAE, VAE

__version__ = "0.1.0"

__all__ = [
    "GenerativeDistance",
    "generative_distances",
    "Geodesic",
    "ConformalMetric",
    "LatentDistance",
    "PullbackMetric",
    "magnification_factor",
    "VAE",
    "IWAE",
    "Density",
    "CallableDensity",
    "SklearnDensity",
    "TorchDensity",
    "GaussianMixtureDensity",
    "RealNVPDensity",
    "as_density",
    "GraphTooLargeError",
    "GeodesicAffinity",
    "distance_affinity",
    "IsingClustering",
    "tsne_embedding",
    "__version__",
]
