r"""TransferMLP: the MLP recommender of the layer-transfer study.

Reference:
    Nguyen, T. et al. "Transferability of neural networks for top-N recommendation" (2020), Section 3:
    the MLP part of the NeuMF framework used as the base network for network-based transfer.

Network: user embedding p_u and item embedding q_i (32-d each), concatenated (64-d), then the
interaction function FC-1..FC-4 of sizes 64, 32, 16, 8 with ReLU, then a scoring layer 8 -> 1 with a
sigmoid, trained with binary cross-entropy on sampled negatives.

Transfer: ``transfer_containers`` names the module holding the interaction function. Its Linear
layers are the layer groups ``fc1..fc4`` that the paper's seven configurations refer to (see
:mod:`recbole_transfer.methods.layer_transfer.strategy`). Embeddings are domain-specific and the scoring layer is
re-initialised in the target, as in the paper.

Faithfulness: the paper trains with batch 256 for 100 epochs; our defaults (properties/model/
TransferMLP.yaml) use larger batches and early stopping for CPU speed. The network itself is the paper's.
"""

import torch
from torch import nn
from torch.nn.init import normal_, xavier_normal_

from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.layers import MLPLayers
from recbole.utils import InputType


class TransferMLP(GeneralRecommender):
    """Embeddings -> concatenation -> MLP interaction function -> sigmoid score."""

    input_type = InputType.POINTWISE
    transfer_containers = ("mlp_layers",)
    # full ranking runs the MLP on every (user, item) pair: about 770 bytes per pair at its peak at the default sizes
    # (measured on CPU); full-ranking batches are sized for this many (recbole_transfer/data/candidates.py)
    eval_bytes_per_pair = 1024

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters info
        self.LABEL = config["LABEL_FIELD"]
        self.embedding_size = config["embedding_size"]
        self.mlp_hidden_size = list(config["mlp_hidden_size"])
        self.dropout_prob = config["dropout_prob"]

        # define layers and loss
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.mlp_layers = MLPLayers(
            [2 * self.embedding_size] + self.mlp_hidden_size, self.dropout_prob, activation="relu"
        )
        self.predict_layer = nn.Linear(self.mlp_hidden_size[-1], 1)
        self.loss = nn.BCEWithLogitsLoss()

        # parameters initialization
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Embedding):
            normal_(module.weight.data, mean=0.0, std=0.01)
        elif isinstance(module, nn.Linear):
            xavier_normal_(module.weight.data)
            if module.bias is not None:
                module.bias.data.fill_(0.0)

    def forward(self, user, item):
        hidden = torch.cat((self.user_embedding(user), self.item_embedding(item)), dim=-1)
        return self.predict_layer(self.mlp_layers(hidden)).squeeze(-1)

    def calculate_loss(self, interaction):
        logits = self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])
        return self.loss(logits, interaction[self.LABEL])

    def predict(self, interaction):
        return torch.sigmoid(self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID]))

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        n_users = user.shape[0]
        users = user.repeat_interleave(self.n_items)
        items = torch.arange(self.n_items, device=user.device).repeat(n_users)
        return torch.sigmoid(self.forward(users, items)).view(-1)
