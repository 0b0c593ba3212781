"""TransferConfig: RecBole's Config, aware of the plugin's models, YAML files and keys.

What it adds to :class:`recbole.config.Config`:

- model names resolve in recbole_transfer first, then in RecBole (an unknown name is a
  :class:`TransferConfigError` with the closest names, not RecBole's bare ValueError);
- after RecBole's own defaults it layers ``properties/overall.yaml`` and
  ``properties/model/<Model>.yaml`` of this package (found after ``pip install`` from any directory);
- keys nobody knows are checked: a misspelling of one of our keys is an error with a suggestion,
  other unknown keys are logged as a warning (never silently ignored);
- ``sys.argv`` is NOT read (RecBole's Config does): the CLI parses ``--key=value`` itself and passes
  them as ``config_dict``, so tests and notebooks never pick up stray arguments.
"""

import functools
import glob
import importlib
import logging
import os

import yaml
from recbole.config import Config
from recbole.utils import get_model as recbole_get_model
from recbole.utils import argument_list

from .errors import TransferConfigError, did_you_mean
from .utils import property_file, PROPERTIES_DIR

logger = logging.getLogger(__name__)

_RECBOLE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(argument_list.__file__)))
_RECBOLE_MODEL_SUBMODULES = [
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
]

# Keys RecBole reads that are not in any of its property files.
_RECBOLE_RUNTIME_KEYS = {
    "model", "dataset", "data_path", "config_files", "local_rank", "nproc", "world_size", "ip", "port",
    "offset", "single_spec", "device", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "shuffle",
    "gpu_id", "benchmark_filename", "valid_neg_sample_args", "test_neg_sample_args", "neg_sampling",
    "additional_feat_suffix", "numerical_features", "discretization", "preload_weight", "alias_of_user_id",
    "alias_of_item_id", "alias_of_entity_id", "alias_of_relation_id", "normalize_field", "normalize_all",
    "threshold", "unload_col", "unused_col", "load_col", "rm_dup_inter", "val_interval",
    "filter_inter_by_user_or_item", "user_inter_num_interval", "item_inter_num_interval",
    "transform", "enable_amp", "enable_scaler", "wandb_project", "log_wandb", "state", "show_progress",
    "save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path", "log_tensorboard",
    "worker", "checkpoint_dir", "seed", "reproducibility", "use_gpu",
}


def plugin_model_classes():
    """Models shipped by recbole_transfer, by name."""
    from . import model as plugin_models

    return {name: getattr(plugin_models, name) for name in plugin_models.__all__}


def _recbole_model_stems():
    stems = []
    for sub in _RECBOLE_MODEL_SUBMODULES:
        for path in glob.glob(os.path.join(_RECBOLE_DIR, "model", sub, "*.py")):
            stem = os.path.splitext(os.path.basename(path))[0]
            if not stem.startswith("_"):
                stems.append((sub, stem))
    return stems


def get_model(name):
    """Resolve a model name: plugin first, then RecBole. Raises TransferConfigError if unknown."""
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


def _yaml_keys(path):
    with open(path, "r", encoding="utf-8") as f:
        data = yaml.load(f.read(), Loader=yaml.FullLoader)
    return set(data) if isinstance(data, dict) else set()


@functools.lru_cache(maxsize=None)
def plugin_keys():
    """Every key declared by this package's property files (our 'transfer keys')."""
    keys = set()
    for path in glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True):
        if os.path.basename(os.path.dirname(path)) != "tune":  # search spaces are not config files
            keys |= _yaml_keys(path)
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def recbole_keys():
    """Every key RecBole knows: its property files, its argument lists and runtime keys."""
    keys = set(_RECBOLE_RUNTIME_KEYS)
    for path in glob.glob(os.path.join(_RECBOLE_DIR, "properties", "**", "*.yaml"), recursive=True):
        keys |= _yaml_keys(path)
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys |= set(getattr(argument_list, name))
    return frozenset(keys)


class TransferConfig(Config):
    """RecBole Config for recbole_transfer models and keys (see module docstring)."""

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        for path in config_file_list or []:
            if not os.path.isfile(path):
                raise TransferConfigError(f"config_files: file {path!r} does not exist")
        super().__init__(model, dataset, config_file_list, dict(config_dict or {}))
        self._check_user_keys()

    # ----- RecBole hooks -------------------------------------------------------------------
    def _load_cmd_line(self):
        return dict()

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
        for path in (property_file("overall.yaml"), property_file("model", f"{model}.yaml")):
            if os.path.isfile(path):
                self._update_internal_config_dict(path)

    # ----- checks ----------------------------------------------------------------------------
    def _check_user_keys(self):
        ours = plugin_keys()
        known = ours | recbole_keys() | set(self.internal_config_dict)
        for key in self.external_config_dict:
            if key in known:
                continue
            hint = did_you_mean(key, sorted(ours))
            if hint:
                raise TransferConfigError(f"{key}={self.external_config_dict[key]!r}: unknown key{hint}")
            logger.warning(
                "config key %r is not used by RecBole or recbole_transfer%s", key, did_you_mean(key, sorted(known))
            )
        mode = self.final_config_dict.get("transfer_mode")
        if mode not in ("freeze", "finetune"):
            raise TransferConfigError(f"transfer_mode={mode!r}: allowed values are 'freeze' and 'finetune'")
        threads = self.final_config_dict.get("num_threads")
        if not isinstance(threads, int) or threads < 1:
            raise TransferConfigError(f"num_threads={threads!r}: must be an integer >= 1")

    @classmethod
    def from_checkpoint(cls, checkpoint, overrides=None):
        """The config a recbole_transfer checkpoint was written with (its ``reload_dict``), plus ``overrides``."""
        saved = dict(checkpoint["config"])
        model, dataset = saved.pop("model"), saved.pop("dataset")
        return cls(model, dataset, None, {**saved, **(overrides or {})})

    def reload_dict(self):
        """What rebuilds this config, as plain data: the user's keys, the model, the dataset and its
        parent data path. Stored in checkpoints (which must load with ``weights_only=True``)."""
        plain = dict(self.external_config_dict)
        plain["model"] = self.model
        plain["dataset"] = self.dataset
        plain["data_path"] = os.path.dirname(os.path.normpath(self.final_config_dict["data_path"]))
        return _to_plain(plain)


def _to_plain(value):
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return str(value)
