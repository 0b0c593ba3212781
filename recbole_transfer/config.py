"""TransferConfig: RecBole's Config, aware of the plugin's models, YAML files and keys.

What it adds to :class:`recbole.config.Config`:

- model names resolve in the registered methods and the shared models first, then in RecBole (an unknown name
  is a :class:`TransferConfigError` with the closest names, not RecBole's bare ValueError);
- after RecBole's own defaults it layers ``properties/overall.yaml`` (the shared keys), then the keys of the
  model's method (``methods/<name>/keys.yaml``, see :mod:`recbole_transfer.registry`), then the model's own
  file (``methods/<name>/<Model>.yaml``, or ``properties/model/<Model>.yaml`` for a shared model);
- keys nobody knows are checked: a misspelling of one of our keys is an error with a suggestion,
  other unknown keys are logged as a warning (never silently ignored), and so is a key of another method
  (a key of one method's keys.yaml given to another method's model);
- ``sys.argv`` is NOT read (RecBole's Config does): the CLI parses ``--key=value`` itself and passes
  them as ``config_dict``, so tests and notebooks never pick up stray arguments;
- a derived domain (a folder with our ``spec.json``) gets RecBole's dataset defaults of its base dataset
  (``properties/dataset/ml-100k.yaml``: the timestamp and rating columns), as the base itself would;
- a sequential RecBole model gets the settings RecBole requires of it by default: ``eval_args.order: TO``
  and, with a CE loss, ``train_neg_sample_args: ~``;
- bad input is a :class:`TransferConfigError` with one line: a config file that is not a YAML mapping, a key
  of the wrong type or out of its range (``epochs: abc``, ``train_batch_size: 0``: :func:`recbole_transfer.keys.check`,
  from the YAML files' annotations), and RecBole's own configuration errors (with what to set), see
  :func:`recbole_errors`.
"""

import contextlib
import glob
import importlib
import json
import logging
import os

from recbole.config import Config
from recbole.utils import ModelType
from recbole.utils import get_model as recbole_get_model

from . import model as shared_models
from . import keys, registry
from .errors import TransferConfigError, TransferError, did_you_mean
from .utils import RECBOLE_DIR

logger = logging.getLogger(__name__)

_RECBOLE_MODEL_SUBMODULES = [
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
]

def plugin_model_classes():
    """Models shipped by recbole_transfer (the shared models and every registered method's), by name."""
    return {**{name: getattr(shared_models, name) for name in shared_models.__all__}, **registry.model_classes()}


def _recbole_model_stems():
    stems = []
    for sub in _RECBOLE_MODEL_SUBMODULES:
        for path in glob.glob(os.path.join(RECBOLE_DIR, "model", sub, "*.py")):
            stem = os.path.splitext(os.path.basename(path))[0]
            if not stem.startswith("_"):
                stems.append((sub, stem))
    return stems


def get_model(name):
    """Resolve a model name: plugin first, then RecBole. Raises TransferConfigError if unknown."""
    import torch

    anomaly = torch.is_anomaly_enabled()
    try:
        return _resolve_model(name)
    finally:
        if not anomaly:  # RecBole's sine.py switches anomaly detection on when imported, and importing any of its
            torch.autograd.set_detect_anomaly(False)  # sequential models imports it: every backward pass would be slower


def _resolve_model(name):
    plugin = plugin_model_classes()
    if name in plugin:
        return plugin[name]
    try:
        return recbole_get_model(name)
    except (ValueError, AttributeError, ImportError):
        pass
    # Case-insensitive fallback and a useful list of what exists.
    stems = _recbole_model_stems()
    names = list(plugin)
    for sub, stem in stems:
        if stem == str(name).lower():
            module = importlib.import_module(f"recbole.model.{sub}.{stem}")
            for attr in dir(module):
                if attr.lower() == stem:
                    return getattr(module, attr)
    names += [stem for _, stem in stems]
    raise TransferConfigError(
        f"model={name!r}: unknown model{did_you_mean(str(name).lower(), names)}. "
        f"recbole_transfer models: {', '.join(sorted(plugin))}; any RecBole model name also works "
        f"(e.g. NeuMF, DMF, BPR)."
    )


# RecBole's configuration errors, and what to set (matched on RecBole's message).
RECBOLE_HINTS = (
    ("should be None when the loss_type is CE", "set train_neg_sample_args: ~ (a CE loss scores every item) or loss_type: BPR"),
    ("ordering args for sequential recommendation", "set eval_args.order: TO"),
    ("is not exist in interaction", "load that field: add it to load_col, e.g. load_col: {inter: [user_id, item_id, timestamp]}"),
    ("interacted with all items", "set user_inter_num_interval or use a domain with more items"),
)


@contextlib.contextmanager
def recbole_errors(config=None, key="dataset"):
    """RecBole's own errors while it configures or loads (ValueError, NotImplementedError) as one line."""
    try:
        yield
    except TransferError:
        raise
    except (ValueError, NotImplementedError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = next((f"; {h}" for pattern, h in RECBOLE_HINTS if pattern in message), "")
        where = f"model {config['model']} on {key} {config['dataset']!r}" if config is not None else key
        raise TransferConfigError(f"RecBole refused {where}: {message}{hint}") from None


class TransferConfig(Config):
    """RecBole Config for recbole_transfer models and keys (see module docstring)."""

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        given = {}
        for path in config_file_list or []:
            given.update(keys.read_yaml(path))  # exists, and holds a YAML mapping: one line, not RecBole's traceback
        given.update(config_dict or {})
        named = model if isinstance(model, str) else getattr(model, "__name__", None) or given.get("model")
        read_as_lists = {k: v for k, v in keys.normalize(given, named).items() if v is not given[k]}
        given.update(read_as_lists)  # a list key written as "a,b" (a file's or the caller's): a list, as RecBole gets it
        keys.check(given, named)  # before RecBole reads them
        with recbole_errors(None, f"model={model!r}, dataset={dataset!r}"):
            super().__init__(model, dataset, config_file_list, {**dict(config_dict or {}), **read_as_lists})
        self._check_user_keys()
        keys.check_valid_metric(self)

    # ----- RecBole hooks -------------------------------------------------------------------
    def _load_cmd_line(self):
        return dict()

    def _merge_external_config_dict(self):
        """The user's keys, as RecBole merges them (config files, then ``config_dict``), except that a key of
        ``config_dict`` holding a mapping changes only the entries it names (:func:`keys.layered`). A checkpoint keeps
        this dict, so a reload sees the mapping the run saw."""
        self.external_config_dict = keys.layered(self.file_config_dict, {**self.variable_config_dict, **self.cmd_config_dict})

    def _get_final_config_dict(self):
        """RecBole's layering (its defaults and our files, then the config files, then ``config_dict``), except that a
        key of ``config_dict`` (the command line, an arm, a trial) holding a mapping changes only the entries it names
        of the value below it (:func:`keys.layered`): ``--eval_args="{'mode': 'full'}"`` keeps the scenario's split."""
        return keys.layered({**self.internal_config_dict, **self.file_config_dict},
                            {**self.variable_config_dict, **self.cmd_config_dict})

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise TransferConfigError("model: no model given (use --model=<name> or a 'model:' key)")
        if isinstance(model, str):
            model = get_model(model)
        if dataset is None and "dataset" not in self.external_config_dict:
            raise TransferConfigError("dataset: no dataset given")
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        base = self._derived_from(dataset)
        if base:  # a derived domain reads as its base dataset does (RecBole's dataset defaults)
            self._update_internal_config_dict(os.path.join(RECBOLE_DIR, "properties", "dataset", f"{base}.yaml"))
        for path in keys.layers(model):
            self._update_internal_config_dict(path)
        if getattr(model_class, "type", None) == ModelType.SEQUENTIAL:  # what RecBole requires of these models
            internal = self.internal_config_dict
            internal["eval_args"] = {**(internal.get("eval_args") or {}), "order": "TO"}
            if self.external_config_dict.get("loss_type", internal.get("loss_type")) == "CE":
                internal["train_neg_sample_args"] = None

    def _derived_from(self, dataset):
        """The base dataset of a derived domain that RecBole ships defaults for, else None."""
        data_path = self.external_config_dict.get("data_path")
        spec_file = os.path.join(str(data_path), str(dataset), "spec.json") if data_path else None
        if not spec_file or not os.path.isfile(spec_file):
            return None
        with open(spec_file, encoding="utf-8") as f:
            base = (json.load(f).get("spec") or {}).get("base")
        exists = base and os.path.isfile(os.path.join(RECBOLE_DIR, "properties", "dataset", f"{base}.yaml"))
        return base if exists else None

    # ----- checks ----------------------------------------------------------------------------
    def _check_user_keys(self):
        ours = keys.plugin_keys()
        known = ours | keys.recbole_keys() | set(self.internal_config_dict)
        for key in self.external_config_dict:
            if key in known:
                continue
            hint = did_you_mean(key, sorted(ours))
            if hint:
                raise TransferConfigError(f"{key}={self.external_config_dict[key]!r}: unknown key{hint}")
            logger.warning(
                "config key %r is not used by RecBole or recbole_transfer%s", key, did_you_mean(key, sorted(known))
            )
        own = registry.method_of(self.model)
        for key in self.external_config_dict:
            if key in self.internal_config_dict or key in keys.recbole_keys():
                continue
            owners = [m.name for m in registry.methods() if m is not own and key in keys.method_keys(m)]
            if owners:
                logger.warning("config key %r belongs to method %s; model %s (method %s) does not read it",
                               key, " / ".join(owners), self.model, own.name)

    @classmethod
    def from_checkpoint(cls, checkpoint, overrides=None):
        """The config a recbole_transfer checkpoint was written with (its ``reload_dict``), plus ``overrides``."""
        saved = dict(checkpoint["config"])
        model, dataset = saved.pop("model"), saved.pop("dataset")
        return cls(model, dataset, None, keys.layered(saved, overrides or {}))

    def reload_dict(self):
        """What rebuilds this config, as plain data: the user's keys, the model, the dataset and its
        parent data path. Stored in checkpoints (which must load with ``weights_only=True``)."""
        plain = dict(self.external_config_dict)
        plain["model"] = self.model
        plain["dataset"] = self.dataset
        plain["data_path"] = os.path.dirname(os.path.normpath(self.final_config_dict["data_path"]))
        # the data is part of what a checkpoint was trained and scored on: a reload under another training
        # seed keeps it (data_seed defaults to seed)
        plain["data_seed"] = keys.data_seed_of(self.final_config_dict)
        return _to_plain(plain)


def _to_plain(value):
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return str(value)
