r"""SML: the transfer component f_Θ(W_{t-1}, Ŵ_t) and the RecBole model that trains through it.

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

:class:`SML` holds the base recommender (``sml_base``, MF by default), one f_Θ per side, the tables
Ŵ (``user_hat`` / ``item_hat``, trainable in Step 1) and W_{t-1} (``user_prev`` / ``item_prev``, fixed).
Its loss is the base model's own ``calculate_loss`` evaluated with the tables f_Θ(W_{t-1}, Ŵ) (through
``torch.func.functional_call``), so any base whose parameters are exactly a user and an item embedding
table works (MF, RecBole's BPR; RecBole's LightGCN has that shape but its
adjacency code fails on the pinned scipy). The retraining procedure (Algorithms 1 and 2) is
:mod:`recbole_transfer.methods.sml.retraining`.

Ids not seen up to the period keep their W_{t-1} row (for a never-seen id: the initialiser) instead of
passing through f_Θ, so a user or item first seen in D_t starts from the initialiser as the paper says.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from ...config import get_model
from ...errors import TransferConfigError


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


TABLES = {"user": "user_embedding.weight", "item": "item_embedding.weight"}


def check_base(base, name):
    """The base must be PAIRWISE and have exactly a user and an item embedding table as parameters."""
    names = sorted(n for n, _ in base.named_parameters())
    if names != sorted(TABLES.values()):
        raise TransferConfigError(
            f"sml_base={name!r}: SML transfers embedding tables, so the base model's parameters must be exactly "
            f"{sorted(TABLES.values())}; {name} has {names[:6]}{' ...' if len(names) > 6 else ''} "
            f"(MF and BPR qualify)"
        )
    if base.input_type != InputType.PAIRWISE:
        raise TransferConfigError(f"sml_base={name!r}: needs a PAIRWISE model (a positive and a sampled negative per row)")


def build_base(config, dataset):
    """The ``sml_base`` model on ``dataset``, checked: a clear error when it cannot serve as SML's base."""
    name = config["sml_base"]
    try:
        base = get_model(name)(config, dataset)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # e.g. a missing key, or LightGCN on new scipy
        raise TransferConfigError(
            f"sml_base={name!r}: cannot be built with SML's config ({type(exc).__name__}: {str(exc)[:120]}); "
            f"the base must be a model whose parameters are exactly {sorted(TABLES.values())} (MF, BPR)"
        ) from None
    check_base(base, name)
    return base


class _BaseLoss(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, interaction):
        return self.base.calculate_loss(interaction)


class SML(GeneralRecommender):
    """The base recommender served with W_t = f_Θ(W_{t-1}, Ŵ_t); see the module docstring.

    ``set_step('hat')`` trains Ŵ (Step 1, with λ1 ||Ŵ||² on the batch's rows); ``set_step('theta')``
    trains Θ (Step 2; λ2 is the optimizer's weight decay). ``commit`` writes W_t into the base model,
    which is what ``predict`` / ``full_sort_predict`` score with; ``advance`` starts the next period
    (W_{t-1} <- W_t, Ŵ <- W_t).
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.base = build_base(config, dataset)
        self.base.requires_grad_(False)
        d = self.base.user_embedding.weight.shape[1]
        sizes = dict(n1=config["sml_n1"], n2=config["sml_n2"], hidden=config["sml_hidden"])
        self.user_transfer = TransferNetwork(d, **sizes)
        self.item_transfer = TransferNetwork(d, **sizes)
        for side in TABLES:
            init = self._served(side).detach().clone()
            self.register_parameter(f"{side}_hat", nn.Parameter(init.clone()))
            self.register_buffer(f"{side}_prev", init)
            self.register_buffer(f"{side}_seen", torch.zeros(init.shape[0], dtype=torch.bool))
        self.reg_weight = config["sml_reg_weight"]
        object.__setattr__(self, "_loss", _BaseLoss(self.base))  # not a submodule: the base is registered once
        self.set_step("hat")

    def _served(self, side):
        return getattr(self.base, f"{side}_embedding").weight

    def set_step(self, step):
        """'hat': Step 1; 'theta': Step 2; 'direct': Ŵ trained as the base model itself (W_0 on D_0)."""
        if step not in ("hat", "theta", "direct"):
            raise ValueError(f"step {step!r}: 'hat' (Step 1), 'theta' (Step 2) or 'direct'")
        self.step = step
        self.user_hat.requires_grad_(step != "theta")
        self.item_hat.requires_grad_(step != "theta")
        self.user_transfer.requires_grad_(step == "theta")
        self.item_transfer.requires_grad_(step == "theta")

    def mark_seen(self, users, items):
        """Boolean masks over ids: the rows that go through f_Θ (ids seen up to the pair's period)."""
        self.user_seen.copy_(torch.as_tensor(users, dtype=torch.bool))
        self.item_seen.copy_(torch.as_tensor(items, dtype=torch.bool))

    def transferred(self, side, ids=None):
        """W rows f_Θ(W_{t-1}, Ŵ) for ``ids`` (all rows if None); unseen ids keep their W_{t-1} row."""
        prev, hat, seen = (getattr(self, f"{side}_{k}") for k in ("prev", "hat", "seen"))
        if ids is not None:
            prev, hat, seen = prev[ids], hat[ids], seen[ids]
        out = hat if self.step == "direct" else getattr(self, f"{side}_transfer")(prev, hat)
        return torch.where(seen.unsqueeze(-1), out, prev)

    def calculate_loss(self, interaction):
        ids = {
            "user": torch.unique(interaction[self.USER_ID]),
            "item": torch.unique(torch.cat([interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]])),
        }
        tables = {  # the batch's rows through f_Θ, every other row at W_{t-1} (no gradient)
            f"base.{TABLES[side]}": getattr(self, f"{side}_prev").index_put((ids[side],), self.transferred(side, ids[side]))
            for side in TABLES
        }
        loss = torch.func.functional_call(self._loss, tables, (interaction,))
        if self.step != "theta" and self.reg_weight:
            batch = interaction[self.USER_ID].numel()
            loss = loss + self.reg_weight * sum(getattr(self, f"{s}_hat")[ids[s]].pow(2).sum() for s in TABLES) / batch
        return loss

    def init_transfer_identity(self, steps=300, lr=0.01, noise=0.1):
        """Fit Θ so that f_Θ(w_prev, ŵ) ≈ ŵ (``sml_theta_init: identity``; the paper draws Θ at random).

        Inputs: the current (W_{t-1}, Ŵ) rows of the seen ids, and (ŵ, ŵ + noise) pairs, the shape of
        every later pair (Ŵ_t starts at W_{t-1}). SML then starts as fine-tuning, and Step 2 learns
        what the next period needs from there. Full-batch Adam on the squared error.
        """
        step = self.step
        self.set_step("theta")
        for side in TABLES:
            net, seen = getattr(self, f"{side}_transfer"), getattr(self, f"{side}_seen")
            prev, hat = getattr(self, f"{side}_prev")[seen].detach(), getattr(self, f"{side}_hat")[seen].detach()
            scale = noise * hat.std()
            inputs = (torch.cat([prev, hat, hat]), torch.cat([hat, hat + scale * torch.randn_like(hat), hat]))
            optimizer = torch.optim.Adam(net.parameters(), lr=lr)
            for _ in range(steps):
                optimizer.zero_grad()
                loss = (net(*inputs) - inputs[1]).pow(2).sum(-1).mean()
                loss.backward()
                optimizer.step()
        self.set_step(step)
        return float(loss.detach())

    @torch.no_grad()
    def commit(self):
        """W_t <- f_Θ(W_{t-1}, Ŵ_t) for every seen row, written into the served base model."""
        for side in TABLES:
            self._served(side).copy_(self.transferred(side))

    @torch.no_grad()
    def advance(self, users_seen, items_seen):
        """Start the next period: W_{t-1} <- W_t, Ŵ <- W_t, and the ids seen up to the new period."""
        for side in TABLES:
            getattr(self, f"{side}_prev").copy_(self._served(side))
            getattr(self, f"{side}_hat").copy_(self._served(side))
        self.mark_seen(users_seen, items_seen)

    def predict(self, interaction):
        return self.base.predict(interaction)

    def full_sort_predict(self, interaction):
        return self.base.full_sort_predict(interaction)
