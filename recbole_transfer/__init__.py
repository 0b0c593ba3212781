"""recbole_transfer: transfer learning for recommender systems, as a RecBole 1.2.1 plugin."""

__version__ = "0.1.0"

from .config import TransferConfig, get_model  # noqa: E402
from .errors import TransferError  # noqa: E402
from .pipeline import load_transfer_model, pretrain_source, run_transfer  # noqa: E402
from .registry import Method, method_of, register  # noqa: E402

__all__ = ["Method", "TransferConfig", "TransferError", "get_model", "load_transfer_model", "method_of", "pretrain_source",
           "register", "run_transfer"]
