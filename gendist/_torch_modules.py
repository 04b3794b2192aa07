"""Small torch modules, importable by name so that they pickle (imports torch)."""

from __future__ import annotations

import torch


class MeanStd(torch.nn.Module):
    """``z -> (mean, sqrt(mean (1 - mean) + floor))`` around a Bernoulli mean decoder; the
    floor keeps the square root differentiable at saturated pixels."""

    def __init__(self, decoder: torch.nn.Module, floor: float = 1e-6):
        super().__init__()
        self.decoder = decoder
        self.floor = floor

    def forward(self, z):
        mean = self.decoder(z)
        return mean, torch.sqrt(mean * (1 - mean) + self.floor)


class GaussianDecoder(torch.nn.Module):
    """A Gaussian decoder's mean (and std) from a network with ``2 D`` outputs: the first
    ``D`` are the mean, ``softplus`` of the last ``D`` plus ``min_std`` the standard
    deviation.

    Parameters
    ----------
    network : torch.nn.Module
        z (m, q) -> (m, 2 D).
    with_std : bool
        Return ``(mean, std)``, each (m, D), rather than the mean alone.
    min_std : float
        Floor of the standard deviation.
    """

    def __init__(self, network: torch.nn.Module, with_std: bool, min_std: float = 1e-3):
        super().__init__()
        self.network = network
        self.with_std = with_std
        self.min_std = min_std

    def forward(self, z):
        mean, raw = self.network(z).chunk(2, dim=-1)
        if not self.with_std:
            return mean
        return mean, torch.nn.functional.softplus(raw) + self.min_std
