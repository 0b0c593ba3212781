"""Layers shared by several methods."""

import torch.nn.functional as F
from torch import nn


class Patch(nn.Module):
    """``h + W_up GELU(W_down h)`` over channel dimension ``dim``; ``W_up`` starts at zero."""

    def __init__(self, channels, width, dim=-1):
        super().__init__()
        self.dim = dim
        self.down = nn.Linear(channels, width)
        self.up = nn.Linear(width, channels)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def branch(self, h):
        x = h.movedim(self.dim, -1)
        return self.up(F.gelu(self.down(x))).movedim(-1, self.dim)

    def forward(self, h):
        return h + self.branch(h)
