r"""MMT-Net: contextual invariants for one-to-many transfer (Krishnan et al. SIGIR 2020, seed 000).

RECONSTRUCTED ([R]): the paper's full equations were not available to us. This module implements the
reconstruction of ``specs/mmtnet.md``, which has every property the paper states; each module is a
separate, named piece so a correction replaces one class, not the model:

- ``user_embedding`` / ``item_embedding`` (domain-specific, never transferred): e_u, e_v in R^d;
- ``context`` (:class:`ContextModule`, shared): one embedding table per context field (token fields;
  token sequences mean-pooled; float fields scale a learned vector), c0 = W0 [x_1; ...; x_F] + b0, then
  N layers c_n = c_{n-1} + (U_n c_{n-1}) ⊙ (V_n c0) — layer n carries up to (n+1)-way products of context
  features, with multiplicative and residual effects — pooled by AFM-style attention
  a_n = softmax_n(h^T tanh(W_a c_n)), c* = Σ_n a_n c_n (``context_pooling: mean`` averages instead);
- ``user_cluster`` / ``item_cluster`` (:class:`ClusteringModule`, shared): the embedding re-oriented by the
  context through a bilinear map, h = ReLU(P[(Q e) ⊙ (R c*)] + b), ẽ = ReLU(W h + b');
- ``ranking`` (:class:`RankingModule`, shared): s = w^T ReLU(W_m [ũ ⊙ ṽ ; c*] + b_m) + b, P = σ(s).

Loss: binary cross-entropy on each positive and the sampled negatives of RecBole's point-wise sampler,
which copies the positive's row (its context) and swaps the item, joining the new item's features.

Id embeddings are kept apart from the context tables (RecBole's ContextRecommender puts user_id and
item_id in the same table as context fields), so the shared modules' state keys are the same in every
domain. Context tables are sized by each domain's vocabulary; moving them between domains aligns rows
by token (:mod:`recbole_transfer.data.context`).

Each shared module reads its input through an :class:`InputPoint` (``<module>.entry``): on the source it
keeps running estimates of the input's mean and variance (buffers, transferred with the module), and on a
target it can hold a zero-initialised residual adapter with the DRR penalty. The transfer strategies
(copy, annealed fine-tuning, DRR, frozen-random control) are in :mod:`recbole_transfer.methods.mmtnet.strategy`.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import FeatureType, InputType
from torch import nn

from ...errors import TransferConfigError, did_you_mean
from ...utils import listish

SHARED_MODULES = ("context", "user_cluster", "item_cluster", "ranking")
CONTEXT_TYPES = (FeatureType.TOKEN, FeatureType.TOKEN_SEQ, FeatureType.FLOAT)
VARIANCE_FLOOR = 1e-4


class InputPoint(nn.Module):
    """The input of a shared module: its source statistics and, under DRR, a residual adapter.

    While ``track`` is on and the model trains, ``mean`` / ``var`` follow the input per dimension: a
    cumulative average over the first 100 batches, then an exponential one (momentum 0.01), as BatchNorm
    keeps its running statistics. The strategies switch ``track`` off on a target, so the source's
    statistics stay. With an ``adapter`` (a :class:`~recbole_transfer.model.layers.Patch`, zero at
    start) the input becomes x~ = x + R(x), and each training forward sets ``penalty`` =
    beta * KL(N(batch mean, batch var of x~) || N(mean, var)) (mean over dimensions) + lam * mean ||R(x)||^2.
    """

    def __init__(self, size):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))
        self.track = True
        self.adapter = None
        self.beta = self.lam = 0.0
        self.penalty = None

    def forward(self, x):
        if self.adapter is None:
            if self.training and self.track:
                with torch.no_grad():
                    self.batches += 1
                    rate = max(1.0 / float(self.batches), 0.01)
                    self.mean.lerp_(x.mean(0), rate)
                    self.var.lerp_(x.var(0, unbiased=False), rate)
            return x
        residual = self.adapter.branch(x)
        out = x + residual
        if self.training:
            mu, var = out.mean(0), out.var(0, unbiased=False) + VARIANCE_FLOOR
            source_var = self.var + VARIANCE_FLOOR
            kl = 0.5 * (torch.log(source_var / var) + (var + (mu - self.mean) ** 2) / source_var - 1.0)
            self.penalty = self.beta * kl.mean() + self.lam * residual.pow(2).sum(-1).mean()
        return out


class ContextModule(nn.Module):
    """Context fields of a batch -> c* in R^D (see the module docstring)."""

    def __init__(self, fields, vocab, types, field_size, size, layers, pooling):
        super().__init__()
        self.fields, self.types, self.pooling = list(fields), dict(types), pooling
        self.tables = nn.ModuleDict({
            f: nn.Embedding(vocab[f], field_size, padding_idx=0) for f in self.fields if self.types[f] != FeatureType.FLOAT
        })
        self.scales = nn.ParameterDict({
            f: nn.Parameter(torch.randn(field_size) * 0.1) for f in self.fields if self.types[f] == FeatureType.FLOAT
        })
        self.entry = InputPoint(len(self.fields) * field_size)
        self.input = nn.Linear(len(self.fields) * field_size, size)  # W0, b0
        self.U = nn.ModuleList(nn.Linear(size, size, bias=False) for _ in range(layers))
        self.V = nn.ModuleList(nn.Linear(size, size, bias=False) for _ in range(layers))
        self.attention = nn.Linear(size, size)  # W_a
        self.attention_vector = nn.Linear(size, 1, bias=False)  # h

    def field_vectors(self, interaction):
        out = []
        for f in self.fields:
            value = interaction[f]
            if self.types[f] == FeatureType.FLOAT:
                out.append(value.float().view(-1, 1) * self.scales[f])
            elif self.types[f] == FeatureType.TOKEN_SEQ:  # mean over the sequence's tokens (0 is padding)
                mask = (value > 0).float().unsqueeze(-1)
                out.append((self.tables[f](value) * mask).sum(1) / mask.sum(1).clamp(min=1.0))
            else:
                out.append(self.tables[f](value))
        return torch.cat(out, dim=-1)

    def forward(self, interaction):
        c0 = self.input(self.entry(self.field_vectors(interaction)))
        layers, c = [], c0
        for U, V in zip(self.U, self.V):
            c = c + U(c) * V(c0)
            layers.append(c)
        stacked = torch.stack(layers or [c0], dim=1)  # [B, N, D]
        if self.pooling == "mean":
            return stacked.mean(1)
        weights = torch.softmax(self.attention_vector(torch.tanh(self.attention(stacked))), dim=1)
        return (weights * stacked).sum(1)


class ClusteringModule(nn.Module):
    """An embedding re-oriented by the context: ReLU(W ReLU(P[(Q e) ⊙ (R c*)] + b) + b')."""

    def __init__(self, embedding_size, context_size, hidden):
        super().__init__()
        self.entry = InputPoint(embedding_size)
        self.Q = nn.Linear(embedding_size, hidden, bias=False)
        self.R = nn.Linear(context_size, hidden, bias=False)
        self.P = nn.Linear(hidden, hidden)
        self.W = nn.Linear(hidden, embedding_size)

    def forward(self, embedding, context):
        return F.relu(self.W(F.relu(self.P(self.Q(self.entry(embedding)) * self.R(context)))))


class RankingModule(nn.Module):
    """s = w^T ReLU(W_m [ũ ⊙ ṽ ; c*] + b_m) + b (a logit)."""

    def __init__(self, embedding_size, context_size, hidden):
        super().__init__()
        self.entry = InputPoint(embedding_size + context_size)
        self.hidden = nn.Linear(embedding_size + context_size, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, user, item, context):
        return self.out(F.relu(self.hidden(self.entry(torch.cat([user * item, context], dim=-1))))).squeeze(-1)


class MMTNet(GeneralRecommender):
    """(user, context, item) -> P(interaction); see the module docstring."""

    input_type = InputType.POINTWISE
    shared_modules = SHARED_MODULES  # what the transfer strategies move (strategy.py)
    embedding_inputs = {"user_embedding": "user_cluster", "item_embedding": "item_cluster"}  # own table -> its reader

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.LABEL = config["LABEL_FIELD"]
        fields = listish(config["context_fields"]) or []  # a YAML list, or "[a,b]" from the command line
        known = sorted(f for f, t in dataset.field2type.items()
                       if t in CONTEXT_TYPES and f not in (self.USER_ID, self.ITEM_ID, self.LABEL, dataset.time_field,
                                                           config["RATING_FIELD"]))
        missing = [f for f in fields if f not in known]
        if not fields or missing:
            raise TransferConfigError(
                f"context_fields={fields!r}: {('unknown ' + str(missing) + did_you_mean(missing[0], known)) if missing else 'empty'}; "
                f"context fields loaded for {config['dataset']!r}: {known} (load them with load_col)"
            )
        d, size = config["embedding_size"], config["context_size"]
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        self.context = ContextModule(
            fields, {f: dataset.num(f) for f in fields}, {f: dataset.field2type[f] for f in fields},
            config["field_embedding_size"], size, config["context_layers"], config["context_pooling"],
        )
        self.user_cluster = ClusteringModule(d, size, config["cluster_hidden"])
        self.item_cluster = ClusteringModule(d, size, config["cluster_hidden"])
        self.ranking = RankingModule(d, size, config["ranking_hidden"])
        nn.init.normal_(self.user_embedding.weight, std=0.1)
        nn.init.normal_(self.item_embedding.weight, std=0.1)

    def forward(self, interaction):
        context = self.context(interaction)
        user = self.user_cluster(self.user_embedding(interaction[self.USER_ID]), context)
        item = self.item_cluster(self.item_embedding(interaction[self.ITEM_ID]), context)
        return self.ranking(user, item, context)

    def token_tables(self):
        """{state key of a context embedding table: its field}: rows indexed by the domain's token ids."""
        return {f"context.tables.{f}.weight": f for f in self.context.tables}

    def input_points(self):
        """{shared module name: its InputPoint}."""
        return {name: self.get_submodule(name).entry for name in SHARED_MODULES}

    def calculate_loss(self, interaction):
        loss = F.binary_cross_entropy_with_logits(self.forward(interaction), interaction[self.LABEL].float())
        for point in self.input_points().values():  # DRR: the adapters' penalties of this forward
            if point.adapter is not None and point.penalty is not None:
                loss = loss + point.penalty
        return loss

    def predict(self, interaction):
        return torch.sigmoid(self.forward(interaction))
