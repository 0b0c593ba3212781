"""The strategy contract: what every transfer method's strategy is, and what it returns.

A :class:`TransferStrategy` changes a RecBole model it did not write, using a source model's weights:

- ``check(model, source, target) -> None`` validates everything (layer names, shapes, id spaces) and raises a
  :class:`~recbole_transfer.errors.TransferError` that lists what exists; it mutates nothing and keeps nothing;
- ``apply(model, source, target) -> TransferReport`` checks again, then mutates the model (copy, freeze, graft)
  and returns the report: one row per parameter, the ``trainable params`` line and the counts. Nothing carries
  from ``check`` to ``apply``: ``apply`` derives what it needs (alignments, blocks) from its own arguments;
- the hooks the trainer calls: ``before_fit(trainer)`` once, after the optimizer exists and before the first
  epoch (e.g. which state entries a checkpoint saves); ``before_epoch(trainer, epoch)`` before every training
  epoch (e.g. unfreeze after a warm-up, with a new parameter group); and ``prepare_reload(model, checkpoint)``,
  called when a checkpoint this strategy wrote is loaded into a freshly built model.

``source`` is a :class:`SourceModel` (the source's state dict and id tokens) or None (before the source
exists: only what the target model alone can tell is checked); ``target`` is the target domain (anything with
an ``id_tokens()`` method: :class:`~recbole_transfer.pipeline.two_stage.DomainData`) or None.

The trainer builds its optimizer after ``apply``, over trainable parameters only.
"""

import abc
from dataclasses import dataclass, field

from ..errors import TransferLayerError

NO_TRANSFER = "none"


@dataclass
class SourceModel:
    """A model trained on the source domain: what a strategy reads, and what a source stage leaves behind."""

    state_dict: dict
    id_tokens: dict = field(default_factory=dict)  # {token field: tokens}: id spaces, context alignment
    user_counts: object = None
    model_file: str = None
    dataset: str = None
    valid_result: dict = field(default_factory=dict)
    test_result: dict = field(default_factory=dict)


@dataclass
class TransferReport:
    """What a strategy did: a row per parameter (name, shape, action), the trainable line and the counts
    (``trainable`` and ``all`` parameters, plus a method's own, e.g. ``trainable_no_head``)."""

    title: str
    rows: list
    summary: str
    counts: dict

    def __str__(self):
        width = max([len(r[0]) for r in self.rows] + [9])
        lines = [self.title, f"{'parameter':<{width}}  {'shape':<14}  action"]
        lines += [f"{name:<{width}}  {str(shape):<14}  {action}" for name, shape, action in self.rows]
        return "\n".join(lines + [self.summary])


def parameter_counts(model):
    """{'trainable': N, 'all': M} parameters of a model."""
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "all": sum(p.numel() for p in model.parameters())}


def trainable_summary(model):
    """``trainable params: N || all params: M || trainable%: x`` for a model."""
    counts = parameter_counts(model)
    pct = 100.0 * counts["trainable"] / counts["all"] if counts["all"] else 0.0
    return f"trainable params: {counts['trainable']:,} || all params: {counts['all']:,} || trainable%: {pct:.4f}"


class TransferStrategy(abc.ABC):
    """Base class of every transfer strategy (see the module docstring).

    Subclasses set ``label`` (the arm's name in tables), optionally ``variant`` and ``loads_source`` (whether ``apply`` reads the source's
    weights), and implement ``from_config``, ``check`` and ``apply``.
    """

    label = NO_TRANSFER
    loads_source = False
    variant = None  # a setting of the arm shown beside its label in a run's output and a scenario's rows (or None)

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config):
        """The strategy a config asks for; a TransferConfigError (with what is allowed) for a bad value."""

    @property
    def is_identity(self):
        """True when the strategy changes nothing (the scratch arm): the runner does not apply it."""
        return self.label == NO_TRANSFER

    @abc.abstractmethod
    def check(self, model, source=None, target=None):
        """Raise when the transfer cannot apply to ``model`` (with ``source`` and ``target`` when given). Returns None."""

    @abc.abstractmethod
    def apply(self, model, source=None, target=None):
        """Check, then change ``model``. Returns a :class:`TransferReport`."""

    def require_source(self, source):
        if self.loads_source and source is None:
            raise TransferLayerError(f"transfer={self.label!r} needs a source model, but none was given")

    # ----- hooks ---------------------------------------------------------------------------------
    def before_fit(self, trainer):
        """Called once by the trainer before the first training epoch."""

    def before_epoch(self, trainer, epoch):
        """Called by the trainer before each training epoch (``epoch`` counts from 0)."""

    def prepare_reload(self, model, checkpoint):
        """Make a freshly built model able to load a checkpoint this strategy wrote (e.g. graft its modules)."""

    # ----- arms and trials -----------------------------------------------------------------------
    @classmethod
    def arm_config(cls, arm):
        """Config keys of a scenario arm (default: ``{'transfer': arm}``)."""
        return {"transfer": arm}

    @classmethod
    def arm_label(cls, arm):
        """Validate an arm and return its name in tables (default: the arm as given)."""
        return str(arm)

    @classmethod
    def label_of(cls, params):
        """The arm name of a configuration (config keys), as :meth:`arm_label` names arms."""
        return cls.arm_label(params.get("transfer", NO_TRANSFER))

    described_keys = ("transfer",)  # keys that :meth:`label_words` shows; every other key is shown as key=value

    @classmethod
    def label_words(cls, params):
        """The words that name a configuration's arm (default: its label)."""
        return [cls.label_of(params)]

    @classmethod
    def describe(cls, params):
        """Short text of a trial configuration: its arm, then its other keys (``key=value``)."""
        parts = cls.label_words(params)
        for key, value in params.items():
            if key not in cls.described_keys:
                parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
        return " ".join(parts)
