r"""PTUPCDR (Zhu et al., WSDM'22): personalised bridges from a meta network.

MF per domain, then a characteristic encoder (attention over the source item vectors of the user's source history)
and a meta network giving a personal bridge ``W_u`` (k x k); the transferred vector ``W_u u_s`` is trained on the
TARGET loss of the overlapping users' target interactions (task-oriented); only the encoder and the meta network
train. Faithfulness: the history is the user's source training interactions, at most ``history_len`` of them (the
paper pads a fixed-length history too).
"""

import torch
from torch import nn

from ..stages import Stage
from .emcdr import EMCDR


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
        score = score + self.user_bias_of(users)  # rating: b_u, frozen in this stage
        return self.point_loss(score, interaction[self.LABEL])


class _Fixed:
    """An embedding table read without gradient (the meta stage trains only the bridge)."""

    def __init__(self, table):
        self.table = table

    def __call__(self, ids):
        return self.table(ids).detach()
