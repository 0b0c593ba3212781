"""Trainers of recbole_transfer."""

from .trainer import CHECKPOINT_FORMAT, TransferTrainer, load_checkpoint

__all__ = ["CHECKPOINT_FORMAT", "TransferTrainer", "load_checkpoint"]
