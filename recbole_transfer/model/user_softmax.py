"""A RecBole general recommender that scores every target item from the user alone, with a softmax."""

from torch import nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType


class UserSoftmax(GeneralRecommender):
    """Base of the target-task models (a model of a target task that scores items from the user alone): ``_logits(user) -> [batch, n_items]``.

    Training is softmax cross-entropy over the target's items (profile labels or target-domain items),
    so ``train_neg_sample_args: ~``; evaluation is RecBole's full ranking of ``full_sort_predict``.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.loss_fct = nn.CrossEntropyLoss()

    def _logits(self, user):
        raise NotImplementedError

    def calculate_loss(self, interaction):
        return self.loss_fct(self._logits(interaction[self.USER_ID]), interaction[self.ITEM_ID])

    def predict(self, interaction):
        logits = self._logits(interaction[self.USER_ID])
        return logits.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)

    def full_sort_predict(self, interaction):
        return self._logits(interaction[self.USER_ID])
