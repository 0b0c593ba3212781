"""The strategy contract shared by every method (:mod:`.base`); each method's strategy lives in its folder."""

from .base import NO_TRANSFER, SourceModel, TransferReport, TransferStrategy, parameter_counts, trainable_summary

__all__ = ["NO_TRANSFER", "SourceModel", "TransferReport", "TransferStrategy", "parameter_counts", "trainable_summary"]
