"""Trainers of recbole_transfer."""

from .trainer import CHECKPOINT_FORMAT, TransferTrainer, is_traditional, load_checkpoint, load_model_state

__all__ = ["CHECKPOINT_FORMAT", "TransferTrainer", "is_traditional", "load_checkpoint", "load_model_state"]
