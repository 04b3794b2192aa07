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
