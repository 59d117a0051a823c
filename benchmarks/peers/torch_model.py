"""The PyTorch side of the peers' MLP: the network initialised like fastmlp's, and PyTorch's threads.

It imports nothing but torch (``torch_train.py``'s memory and start-up are a plain PyTorch script's).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def build_model(sizes: list[int], dropout_input: float = 0.0, dropout: float = 0.0) -> nn.Sequential:
    """Linear/ReLU layers initialised like fastmlp's (``W ~ N(0, 1/sqrt(n_in))``, ``b = 0``), with
    optional dropout on the input and after every hidden ReLU."""
    layers: list[nn.Module] = [nn.Dropout(dropout_input)] if dropout_input else []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(n_in, n_out)
        with torch.no_grad():
            lin.weight.normal_(0.0, 1.0 / math.sqrt(n_in))
            lin.bias.zero_()
        layers.append(lin)
        if i < len(sizes) - 2:
            layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers)


def torch_threads(threads: int) -> None:
    """PyTorch's intra-op threads at ``threads``, and its inter-op threads too while it has not used
    them yet (PyTorch fixes those at their first use)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or already in use: it keeps its count
        pass
