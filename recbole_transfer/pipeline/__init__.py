"""Runners: how a method's runs go. The two-stage runner (source -> strategy -> target) is shared by every
method that transfers weights between two domains; a method may bring its own (e.g. periodic retraining)."""

from ..request import Request
from .base import Runner, SearchTarget
from .runner import TwoStageRunner, evaluate_checkpoint
from .scenario import run_scenario
from ..request import domain_config
from .two_stage import (DomainData, load_transfer_model, prepare_domain, pretrain, pretrain_source, run_transfer,
                        transfer)

__all__ = ["DomainData", "Request", "Runner", "SearchTarget", "TwoStageRunner", "domain_config", "evaluate_checkpoint",
           "load_transfer_model", "prepare_domain", "pretrain", "pretrain_source", "run_scenario", "run_transfer", "transfer"]
