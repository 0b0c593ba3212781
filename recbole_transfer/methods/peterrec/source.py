"""The pretrained source network a PeterRec model (and the bag-of-items baseline) builds on."""

import functools
import os

import numpy as np

from ...config import TransferConfig
from ...errors import TransferConfigError
from ...pipeline.two_stage import read_dataset
from ...trainer import load_checkpoint


class SourceData:
    """A source checkpoint's network config, its weights, its RecBole dataset and its users' time-ordered
    item ids (one read of the checkpoint serves the model build and a delta reload)."""

    def __init__(self, config, dataset, state_dict=None):
        self.config, self.dataset, self.state_dict = config, dataset, state_dict
        uid, iid, time_field = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]
        feat = dataset.inter_feat
        users, items = feat[uid].to_numpy(), feat[iid].to_numpy()
        order = np.lexsort((feat[time_field].to_numpy(), users)) if time_field in feat else np.argsort(users, kind="stable")
        users, items = users[order], items[order]
        bounds = np.flatnonzero(np.diff(users)) + 1
        self.by_user = {int(u[0]): s for u, s in zip(np.split(users, bounds), np.split(items, bounds)) if len(u)}
        self.token2id = dataset.field2token_id[uid]
        self.longest = max((len(s) for s in self.by_user.values()), default=1)

    def sequences_for(self, user_tokens, length):
        """([n, length + 1] right-padded item ids, [n] lengths) for target user tokens (row 0 = padding)."""
        seqs = np.zeros((len(user_tokens), length + 1), dtype=np.int64)
        lens = np.zeros(len(user_tokens), dtype=np.int64)
        for row, token in enumerate(user_tokens):
            source_id = self.token2id.get(token)
            if row == 0 or source_id is None or source_id not in self.by_user:
                continue
            items = self.by_user[source_id][-length:]
            seqs[row, : len(items)] = items
            lens[row] = len(items)
        return seqs, lens


def load_source(path):
    """The source a PeterRec model builds on, from ``source_checkpoint`` (cached per file version)."""
    if not path:
        raise TransferConfigError(
            "source_checkpoint: PeterRec builds on a pretrained network; give --source=<domain> (pretrains "
            "source_model on it first) or source_checkpoint=<file> written by a source stage"
        )
    path = os.path.abspath(str(path))
    return _load_source(path, os.path.getmtime(path) if os.path.exists(path) else 0.0)


@functools.lru_cache(maxsize=4)
def _load_source(path, _mtime):
    checkpoint = load_checkpoint(path)
    config = TransferConfig.from_checkpoint(checkpoint)
    return SourceData(config, read_dataset(config), checkpoint["state_dict"])
