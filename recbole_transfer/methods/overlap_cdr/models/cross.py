r"""Closed-form and neighbourhood models over both domains' items: :class:`CrossEASE` and :class:`CrossItemKNN`.

A user's **joint row** is her source row (every source item she interacted with, times ``source_weight``) next to
her target training row. Both models learn item-to-item weights from the joint rows of every user of the pair (the
users of both domains, and the users of one domain with an empty other half), and score a user's target items as
her joint row times the weights into the target items. A cold user (no target training row) is scored from her
source row alone; a user with no source row from her target row alone. ``source_weight: 0`` gives the target-only
model: :class:`CrossEASE` then equals RecBole's EASE on the target's training rows exactly (a test checks it).

- :class:`CrossEASE`: EASE (Steck, WWW'19) over the union of both domains' items. Only the weights into the target
  items are needed, so the source block is eliminated (a Schur complement): with the Gram matrix
  ``G = X^T X + lambda I`` in blocks S (source items) and T (target items),
  ``P_TT = (G_TT - G_TS G_SS^-1 G_ST)^-1`` and ``P_ST = -G_SS^-1 G_ST P_TT``; the weights into target item j are
  ``B_.j = -P_.j / P_jj`` (``B_jj = 0``). The item x item inverses are dense: memory grows with the square of the
  item count (``max_joint_items`` refuses larger pairs; :class:`CrossItemKNN` is the alternative).
- On ``task: rating`` (CrossEASE), an entry of a joint row is the rating's residual on the ``item_offset`` baseline
  (the item's shrunk mean plus the user's shrunk mean offset from it, in the target, or for a user without target
  ratings in the source), not 1; only users with target training ratings fit the weights (an empty entry of a rating
  row is unknown, not a residual of 0); the prediction is the baseline plus her joint row times the weights. A cold
  user's baseline is exactly the ``item_offset`` rating baseline's, and what her source residuals predict is added.
- :class:`CrossItemKNN`: RecBole's ItemKNN similarity (cosine with ``shrink``, the ``k`` nearest items of each
  item) computed over the joint rows; the weights into each target item come from its ``k`` nearest items of
  either domain. Memory grows with items x ``k``.

Faithfulness: EASE and ItemKNN are single-domain models; running them over both domains' items is this package's
cross-domain use of them (the issue that asked for it measured EASE over both domains beating the family's neural
models), not a method from a paper.
"""

import numpy as np
import scipy.sparse as sp
import torch
from recbole.model.general_recommender.itemknn import ComputeSimilarity
from recbole.utils import ModelType

from ....errors import TransferConfigError
from ....model.ease import ITEM_PAIR_BYTES, check_item_matrix
from ..stages import Stage
from .base import PairModel, shrunk_offsets


def joint_rows(dataset, links, weight, residuals=None):
    """(target rows, source rows of the target users, source rows of the users with no target id), csr float32:
    ``[target users x target items]``, ``[target users x source items]`` (times ``weight``; row 0 and the users
    without a source history empty) and ``[source-only users x source items]`` (times ``weight``). The entries are
    1 (an interaction), or with ``residuals`` = (target values, source values) per training row, those values."""
    users, items, _labels = links.source_rows
    if residuals is None:
        target = dataset.inter_matrix(form="csr").astype(np.float32)  # what RecBole's EASE and ItemKNN read
        values = np.ones(len(users), dtype=np.float32)
    else:
        feat = dataset.inter_feat
        target = sp.csr_matrix((residuals[0].numpy().astype(np.float32),
                                (feat[dataset.uid_field].numpy(), feat[dataset.iid_field].numpy())),
                               shape=(dataset.user_num, dataset.item_num))
        values = residuals[1].numpy().astype(np.float32)
    source = sp.csr_matrix((values, (users.numpy(), items.numpy())), shape=(links.n_source_users, links.n_source_items))
    if residuals is None:
        source.data[:] = 1.0  # a user-item pair counts once, as in the target's matrix
    source = source * np.float32(weight)
    on_target = source[links.target_to_source.numpy()]  # target user -> her source row (id 0: the empty padding row)
    alone = np.flatnonzero(links.source_to_target.numpy() == 0)[1:]  # source users with no target id (0 is padding)
    return target, on_target.tocsr(), source[alone].tocsr()


class JointItemModel(PairModel):
    """What the two models share: built once from the joint rows (RecBole's traditional models: one validated pass,
    no gradient step), ranking only, scores from the joint row times the weights into the target items."""

    type = ModelType.TRADITIONAL
    tasks = ("ranking", "rating")
    stages = {"target": Stage("target", "target", (), "built from both domains' rows (one pass)")}

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset, links)
        self._config, self.weight = config, float(config["source_weight"])
        self.dummy_param = torch.nn.Parameter(torch.zeros(1))  # RecBole's trainer needs a parameter; never moves
        residuals = self.rating_residuals(dataset, float(config["mean_shrinkage"]), float(config["offset_shrinkage"])) \
            if self.task == "rating" else None
        self.target_rows, self.source_rows_of_users, alone = joint_rows(dataset, links, self.weight, residuals)
        if residuals is None:
            self.to_target, self.from_source = self.build(self.target_rows, self.source_rows_of_users, alone)
        else:  # a rating row's empty entries are unknown, not residual 0: only users with target ratings fit the weights
            fit = np.flatnonzero(links.target_trained.numpy())
            self.to_target, self.from_source = self.build(self.target_rows[fit], self.source_rows_of_users[fit], alone[:0])
        self.other_parameter_name = ["target_rows", "source_rows_of_users", "to_target", "from_source"]

    def rating_residuals(self, dataset, beta, lam):
        """The rating task: every training rating minus its baseline, (target values, source values) per training row;
        sets the target baseline ``item_means`` + ``user_levels``. The baseline is the item's mean (shrunk by
        ``beta``) plus the user's mean offset from those means (shrunk by ``lam``) in the target, or, for a user
        without target training ratings, in the source: for a cold user it is the ``item_offset`` rating baseline
        exactly, and the model adds what her source residuals predict through the learned weights."""
        t_means, s_means = self.shrunk_item_means(dataset, beta)
        feat = dataset.inter_feat
        t_users, t_items = torch.as_tensor(feat[self.USER_ID]), torch.as_tensor(feat[self.ITEM_ID])
        t_res = torch.as_tensor(feat[self.LABEL]).float() - t_means[t_items]
        t_levels = shrunk_offsets(t_users, t_res, self.n_users, lam)
        s_users, s_items, s_ratings = self.links.source_rows
        s_res = s_ratings.float() - s_means[s_items]
        s_levels = shrunk_offsets(s_users, s_res, self.n_source_users, lam)
        levels = torch.where(self.links.target_trained, t_levels, s_levels[self.links.target_to_source])
        self.register_buffer("item_means", t_means, persistent=False)
        self.register_buffer("user_levels", levels, persistent=False)
        return t_res - t_levels[t_users], s_res - s_levels[s_users]

    def build(self, target, on_target, alone):
        """(weights target -> target items, weights source -> target items, or None when the source weighs 0)."""
        raise NotImplementedError

    def calculate_loss(self, interaction):
        return torch.nn.Parameter(torch.zeros(1))

    def scores(self, users):
        users = users.cpu().numpy()
        value = self.target_rows[users, :] @ self.to_target
        if self.from_source is not None:
            value = value + self.source_rows_of_users[users, :] @ self.from_source
        return value.toarray() if sp.issparse(value) else np.asarray(value)

    def full_sort_predict(self, interaction):
        if self.task == "rating":
            raise TransferConfigError(f"{type(self).__name__} on task rating predicts ratings; it cannot rank")
        return torch.from_numpy(self.scores(interaction[self.USER_ID]).flatten())

    def predict(self, interaction):
        users = interaction[self.USER_ID]
        scores = self.scores(users)
        items = interaction[self.ITEM_ID].cpu().numpy()
        value = torch.from_numpy(scores[np.arange(len(items)), items].astype(np.float32)).to(self.device)  # as RecBole's EASE
        if self.task == "rating":  # the residual on the baseline
            value = value + self.item_means[interaction[self.ITEM_ID]] + self.user_levels[users]
        return value


class CrossEASE(JointItemModel):
    """EASE over both domains' items (``reg_weight``: lambda; ``source_weight``); see the module docstring."""

    def build(self, target, on_target, alone):
        limit, items = int(self._config["max_joint_items"]), on_target.shape[1] + target.shape[1]
        if items > limit:
            raise TransferConfigError(
                f"CrossEASE: {on_target.shape[1] - 1} source + {target.shape[1] - 1} target items exceed "
                f"max_joint_items={limit} (its item x item matrices grow with the square of the item count: about "
                f"{ITEM_PAIR_BYTES * items ** 2 / 2 ** 30:.1f} GiB here); use CrossItemKNN (memory: items x k), or raise "
                "max_joint_items if the memory is there")
        check_item_matrix("CrossEASE", items, "CrossItemKNN")  # and what this machine has
        reg = np.float32(self._config["reg_weight"])
        gram = target.T @ target  # RecBole's EASE, step by step: the target block is its Gram matrix exactly
        gram += reg * sp.identity(gram.shape[0]).astype(np.float32)
        gram = gram.todense()
        if self.weight == 0.0:  # the source block is lambda I and the cross block 0: EASE on the target
            p_tt, p_st = np.linalg.inv(gram), None
        else:
            source = sp.vstack([on_target, alone]).tocsr()
            g_ss = (source.T @ source).toarray() + reg * np.eye(source.shape[1], dtype=np.float32)
            g_st = (on_target.T @ target).toarray()
            solved = np.linalg.solve(g_ss, g_st)  # G_SS^-1 G_ST
            p_tt = np.linalg.inv(gram - g_st.T @ solved)
            p_st = -solved @ p_tt
        scale = -np.diag(p_tt)
        to_target = p_tt / scale
        np.fill_diagonal(to_target, 0.0)
        return to_target, (None if p_st is None else np.asarray(p_st / scale, dtype=np.float32))


class CrossItemKNN(JointItemModel):
    """RecBole's ItemKNN similarity over both domains' items (``k``, ``shrink``, ``source_weight``); see the module
    docstring. Ranking only: its scores are unnormalised sums over a user's items, no rating."""

    tasks = ("ranking",)

    def build(self, target, on_target, alone):
        n_source = on_target.shape[1]
        rows = sp.vstack([sp.hstack([on_target, target]), sp.hstack([alone, sp.csr_matrix((alone.shape[0], target.shape[1]),
                                                                                             dtype=np.float32)])]).tocsr()
        _neighbours, weights = ComputeSimilarity(rows, topk=int(self._config["k"]), shrink=float(self._config["shrink"]),
                                                 method="item").compute_similarity()
        weights = weights.tocsc()[:, n_source:].tocsr()  # the weights INTO the target items
        from_source = weights[:n_source] if self.weight != 0.0 else None
        return weights[n_source:], from_source
