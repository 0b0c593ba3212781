r"""The transfer component f_Θ(W_{t-1}, Ŵ_t) of SML (issue 5; the retraining loop is not built yet).

Reference:
    Yang Zhang, Fuli Feng, Chenxu Wang, Xiangnan He, Meng Wang, Yan Li and Yongdong Zhang. "How to Retrain
    Recommender System? A Sequential Meta-Learning Method" (SIGIR 2020), Section "Transfer Design".

Applied to each embedding row (one network for users, another for items), with d the embedding size:

- stack layer: H0 = [w_{t-1}; ŵ_t; w_dot] in R^{3 x d}, w_dot = (w_{t-1} ⊙ ŵ_t) / (||w_{t-1}|| + ε);
- convolution 1: n1 filters F1 in R^{n1 x 3}, each applied to every column of H0, then GELU: H1 in R^{n1 x d};
- convolution 2: n2 filters F2 in R^{n2 x n1} over the columns of H1, then GELU: H2 in R^{n2 x d};
- fully connected: z = GELU(W_f^T flatten(H2) + b1), output w_t = W_o^T z + b2 in R^d.

Θ = {F1, F2, W_f, b1, W_o, b2}: the filters have no bias, as in the paper's formulas. A column-wise
filter is a 1x1 convolution over the three (then n1) stacked rows.
"""

import torch
import torch.nn.functional as F
from torch import nn


class TransferNetwork(nn.Module):
    """f_Θ for one side (users or items). ``forward(w_prev, w_hat)``: [N, d] x [N, d] -> [N, d]."""

    def __init__(self, embedding_size, n1=10, n2=5, hidden=512, eps=1e-8):
        super().__init__()
        self.eps = eps
        self.conv1 = nn.Conv1d(3, n1, kernel_size=1, bias=False)   # F1
        self.conv2 = nn.Conv1d(n1, n2, kernel_size=1, bias=False)  # F2
        self.fc = nn.Linear(n2 * embedding_size, hidden)           # W_f, b1
        self.out = nn.Linear(hidden, embedding_size)               # W_o, b2

    def stack(self, w_prev, w_hat):
        """H0 rows for every embedding row: [N, 3, d]."""
        w_dot = w_prev * w_hat / (w_prev.norm(dim=-1, keepdim=True) + self.eps)
        return torch.stack([w_prev, w_hat, w_dot], dim=1)

    def forward(self, w_prev, w_hat):
        h1 = F.gelu(self.conv1(self.stack(w_prev, w_hat)))
        h2 = F.gelu(self.conv2(h1))
        return self.out(F.gelu(self.fc(h2.flatten(1))))
