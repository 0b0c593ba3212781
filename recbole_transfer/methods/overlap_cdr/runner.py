"""The overlap family's runner: build the domain pair, run a model's stage schedule, evaluate in both domains.

One run (``--model=CMF``): the pair and its protocol (:mod:`.pair`), the model on the target's training data, then
its stages in the order of ``stages: [name:epochs, ...]`` (:mod:`.stages`). Each stage trains only its modules with a fresh
optimizer (a :class:`~recbole_transfer.trainer.TransferTrainer`: RecBole's loop, early stopping on the stage's
validation, the stage's best epoch reloaded before the next stage). Then the target's test split is evaluated
by RecBole's evaluator (and the source's test split with ``eval_domains: [source, target]``).

A scenario (``--scenario``) runs every arm (a model, or a baseline variant) x protocol setting (``warm`` and
``cold_start`` at each of ``scenario_etas``) x seed. Within a (seed, setting) every arm is scored on the same rows
and candidates: the protocol depends on the data and the data seed only, which the pair's fingerprint records
and the paired tables check.
"""

import logging
import os
import time
from dataclasses import replace

import numpy as np

from ...config import TransferConfig, get_model
from ...errors import TransferConfigError
from ...keys import data_seed_of, layered
from ...pipeline.base import Runner, SearchTarget
from ...pipeline.parallel import shared
from ...pipeline.two_stage import instantiate
from ...request import Request
from ...stats import user_means
from ...trainer import TransferTrainer, is_traditional, load_checkpoint, load_model_state
from ...trainer.trainer import evaluated_users
from ...utils import listish
from .models import PairModel
from .pair import build_pair, check_protocol
from .stages import parse_stages, train_stages
from .tables import BASELINE_ARMS, TASK_ARMS, result_text, results_tables, setting_label, table_metrics

logger = logging.getLogger(__name__)

# arm -> (model, keys): the scenario's arms; the first of each task's list (tables.TASK_ARMS) is the baseline
ARMS = {
    "TargetMF": ("TargetMF", {}), "pop": ("TargetPop", {}), "CMF": ("CMF", {}), "EMCDR": ("EMCDR", {}),
    "PTUPCDR": ("PTUPCDR", {}),
    "global_mean": ("RatingMean", {"rating_mean": "global"}), "item_mean": ("RatingMean", {"rating_mean": "item"}),
    "item_mean_offset": ("RatingMean", {"rating_mean": "item_offset"}), "CATN": ("CATN", {}),
    "ItemKNN": ("TargetItemKNN", {}), "EASE": ("TargetEASE", {}), "SLIM": ("TargetSLIM", {}),
    "CrossEASE": ("CrossEASE", {}), "CrossItemKNN": ("CrossItemKNN", {}),
}
FOLDER = os.path.dirname(os.path.abspath(__file__))  # the method's YAML files


def task_files(config_files, task):
    """The request's config files with the task's RecBole keys after the scenario file (``rating.yaml``: labels,
    value metrics), so that the user's files still override them."""
    extra = os.path.join(FOLDER, f"{task}.yaml")
    files = list(config_files)
    return tuple(files[:1] + [extra] + files[1:])


def pair_request(request, model=None, **extra):
    """The request of ``model`` (default: the request's) with ``extra`` keys (an arm's, a seed) on the request's pair:
    its ``model_keys`` under the user's keys, the task's file after the scenario file, the documents' field loaded with
    the interactions. The source is kept in the target's keys (a checkpoint names its pair)."""
    request = request.with_keys(model=model or request.model, **extra)
    own = model_keys(request.keys, request.model)
    if own:  # the files' keys for this model alone, under the command line's and the arm's
        request = replace(request, config_dict=layered(own, request.config_dict), keys=None)
    request = replace(request, config_files=task_files(request.config_files, request.keys["task"]), keys=None)
    field = request.keys["doc_field"]
    columns = list((request.keys.get("load_col") or {}).get("inter") or [])
    if field and columns and field not in columns:  # the documents' field is loaded with the interactions
        request = request.with_keys(load_col={**request.keys["load_col"], "inter": columns + [field]})
    if request.source:
        request = request.with_keys(source=request.source)
    return request


def pair_configs(request):
    """(source config, target config) of a :func:`pair_request`."""
    target = request.require_targets()[0]
    return request.config(request.require_source(), key="source"), request.config(target, key="target")


def model_keys(keys, model):
    """``model_keys[model]``: keys a scenario sets for one model only (e.g. CATN's batch size beside the matrix
    factorisation arms'); {} when it sets none. They apply over every config file (a file that sets ``model_keys``
    replaces the whole table); the command line's keys and a scenario arm's own keys win over them."""
    table = keys["model_keys"]
    if table is None:
        return {}
    if not all(v is None or isinstance(v, dict) for v in table.values()):
        raise TransferConfigError(f"model_keys={table!r}: must be a mapping {{model: {{key: value}}}}")
    unknown = [name for name in table if name not in {m for m, _keys in ARMS.values()} | {model}]
    if unknown:
        raise TransferConfigError(f"model_keys: unknown model {', '.join(map(repr, unknown))}")
    return dict(table.get(model) or {})


def check_eval_domains(config):
    """The evaluated domains; the target is always one (its keys declare the allowed names)."""
    domains = listish(config["eval_domains"]) or []
    if "target" not in domains:
        raise TransferConfigError(f"eval_domains={config['eval_domains']!r}: must hold target (the models are selected and "
                                  "tested on the target): [target] or [source, target]")
    if "source" in domains and config["source_rows"] == "all":
        raise TransferConfigError(f"eval_domains={config['eval_domains']!r}: source_rows is all, so every source interaction "
                                  "trains and none is left to test; add --source_rows=train for a source table")
    return domains


PAIR_KEYS = ("task", "protocol", "eta", "cold_share", "cold_valid_share", "overlap_link", "source_rows", "history_len",
             "LABEL_FIELD")  # what the pair is built from (the documents' keys may differ: a pair builds them per model)


def check_same_pair(pair, configs):
    """Every arm of a scenario setting trains on the one pair built for it: an arm whose own keys (``model_keys``) would
    build another pair is refused, not silently run on this one."""
    reference = pair.target.config
    for arm, config in configs.items():
        differ = [k for k in PAIR_KEYS if config[k] != reference[k]]
        if differ:
            raise TransferConfigError(
                f"arm {arm}: its {', '.join(f'{k}={config[k]!r}' for k in differ)} would build another pair than the "
                f"setting's ({', '.join(f'{k}={reference[k]!r}' for k in differ)}); the arms of a scenario are compared on "
                "one pair: set these keys for the whole scenario, not in model_keys")


def check_run(model, config):
    """Every key of a run that can be checked before data is read."""
    check_protocol(config)
    check_eval_domains(config)
    cls = get_model(model)
    if config["task"] not in cls.tasks:
        raise TransferConfigError(f"task={config['task']!r}: {model} supports {', '.join(cls.tasks)}")
    parse_stages(cls, config["stages"], config["epochs"])
    if getattr(cls, "needs_target_history", False) and config["protocol"] == "cold_start":
        raise TransferConfigError(f"{model}: ranks a user by her target training rows, and under protocol cold_start the "
                                  "evaluated (cold) users have none; use pop, or a model that reads the source history")
    return cls


def pair_rows(pair):
    return sum(domain.dataset.inter_num for domain in (pair.source, pair.target))


def build(model, config, pair):
    cls = get_model(model)
    from recbole.utils import init_seed

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    dataset = pair.target.train_data._dataset
    if config["doc_field"] and getattr(cls, "reads_documents", False):  # the pair builds them once, from its training rows
        pair.documents(config["doc_field"], config["max_doc_len"], config["code_faithful_aux"])
    return instantiate(cls, model, config, dataset, pair.links)


def rating_per_user(trainer, eval_data):
    """(users, per-user mean squared error, the mean squared error) of the trainer's last evaluation (a rating
    task)."""
    struct = trainer.evaluator.last_struct
    scores = struct.get("rec.score").float().view(-1).numpy()
    labels = struct.get("data.label").float().view(-1).numpy()
    users = np.asarray(evaluated_users(eval_data), dtype=np.int64)
    squared = (scores - labels) ** 2
    per_user = np.round(user_means([(users, squared)]), 6).tolist()
    return np.unique(users).tolist(), per_user, float(squared.mean())


def evaluate(model, config, data, domain):
    """RecBole's evaluation of ``data`` (a test loader) with the model scoring ``domain``; (result, per user, users)."""
    if isinstance(model, PairModel):
        model.domain = domain
    trainer = TransferTrainer(config, model, stage="test")
    result = {k.lower(): float(v) for k, v in trainer.evaluate(data, load_best_model=False).items()}
    trainer.tensorboard.close()
    if config["task"] == "rating":
        users, mse, result["mse"] = rating_per_user(trainer, data)
        return result, {"mse": mse}, users
    return result, trainer.last_per_user, trainer.last_users


def run_one(model, pair, config, verbose=False, on_epoch=None, evaluate_test=True):
    """Train ``model`` on ``pair`` and evaluate it; returns a row dict."""
    domains = check_eval_domains(config)
    start = time.time()
    pair.reset(config["seed"], config["train_batch_size"])
    instance = build(model, config, pair)
    report = train_stages(instance, config, pair, verbose=verbose, on_epoch=on_epoch)
    seconds = time.time() - start
    row = {"model": model, "task": config["task"], "protocol": pair.protocol,
           "eta": float(config["eta"]) if pair.protocol == "cold_start" else 1.0, "seed": config["seed"],
           "data_seed": data_seed_of(config),
           "fingerprint": pair.fingerprint(), "metric": str(config["valid_metric"]).lower(), "stages": report,
           "epochs": sum(r["epochs"] for r in report), "seconds": seconds,
           "seconds_per_epoch": _per_epoch(report), "parameters": sum(p.numel() for p in instance.parameters())}
    trained = [r for r in report if not r.get("skipped")]
    row["model_file"] = trained[-1]["model_file"] if trained else None
    if trained:  # the validation of the last stage that ran: what selected the model's final epoch
        row.update({f"valid_{k.lower()}": float(v) for k, v in trained[-1]["best_valid"].items()})
        row["valid_curve"] = trained[-1]["valid_curve"]
    elif not report:  # a model that learns nothing (the rating means): its validation, for picks on validation
        result, _per_user, _users = evaluate(instance, config, pair.target.valid_data, "target")
        row.update({f"valid_{k}": v for k, v in result.items()})
    if not evaluate_test:
        return row, instance
    result, per_user, users = evaluate(instance, config, pair.target.test_data, "target")
    row.update({f"test_{k}": v for k, v in result.items()})
    row.update(test_per_user=per_user, test_users=users)
    if "source" in domains and pair.source_rows == "all":
        raise TransferConfigError("eval_domains: every source interaction of this pair trains (source_rows: all), so none "
                                  "is left to test; build the pair with source_rows: train for a source table")
    if "source" in domains:
        if getattr(instance, "scores_source", False):
            source_result, _, _ = evaluate(instance, config, pair.source.test_data, "source")
            row.update({f"source_test_{k}": v for k, v in source_result.items()})
        else:
            logger.info("eval_domains: %s has no source vectors; no source table", model)
        instance.domain = "target" if isinstance(instance, PairModel) else None
    return row, instance


def _per_epoch(report):
    seconds = [s for r in report for s in r["train_seconds"]]
    return float(np.mean(seconds)) if seconds else 0.0


class PairRunner(Runner):
    """See the module docstring."""

    time_attr = "epoch"
    scenario_without_target = False  # --model=CMF alone: one run on the scenario's pair

    def scenario_files(self, method, model):
        """A model's own default scenario (``scenario.<Model>.yaml``: a model of the family with data of its own, e.g.
        CATN's documents), else the family's."""
        own = os.path.join(FOLDER, f"scenario.{model}.yaml")
        return [own] if os.path.isfile(own) else super().scenario_files(method, model)

    def run(self, method, request, progress):
        request = pair_request(request)
        source_config, target_config = pair_configs(request)
        check_run(request.model, target_config)
        pair = build_pair(source_config, target_config)
        row, instance = run_one(request.model, pair, target_config, verbose=True)
        row.update(arm=request.model, target=setting_label(row))
        text = result_text(row, pair, check_eval_domains(target_config))
        if hasattr(instance, "report") and row["model_file"]:  # e.g. CATN's aspects and its correlation heatmap
            text += "\n\n" + instance.report(os.path.splitext(row["model_file"])[0] + "-G.png")
        return row, text

    def arms(self, method, request, arms=None):
        task = pair_request(request).keys["task"]
        if not arms:  # the task's arms, and the requested model's own when none of them trains it (e.g. CATN)
            arms = TASK_ARMS[task] + ([request.model] if request.model in ARMS and request.model not in
                                      {ARMS[a][0] for a in TASK_ARMS[task]} else [])
        arms = list(arms)
        unknown = [a for a in arms if a not in ARMS]
        if unknown:
            raise TransferConfigError(f"arms: unknown {', '.join(map(repr, unknown))}; the family's arms are "
                                      f"{', '.join(ARMS)}")
        return arms

    parallel_units = True  # every (seed, arm, setting) unit builds its setting's pair from the cached protocol (kept per worker)

    def scenario_arms(self, method, request, arms=None):
        return self.arms(method, request, arms)

    part_name = "setting"

    def scenario_parts(self, method, request):
        return list(self.settings(request))

    @staticmethod
    def settings(request):
        """The scenario's settings, label -> (protocol, eta): warm once, cold_start at each of ``scenario_etas``."""
        keys = pair_request(request).keys
        settings = {}
        for protocol in listish(keys["scenario_protocols"]) or []:
            for eta in listish(keys["scenario_etas"]) if protocol == "cold_start" else [1.0]:
                label = setting_label({"protocol": protocol, "eta": float(eta)})
                if label in settings:
                    raise TransferConfigError(f"scenario_protocols / scenario_etas: a setting is given twice ({label!r})")
                settings[label] = (protocol, float(eta))
        if not settings:
            raise TransferConfigError("scenario_protocols: no protocol given, e.g. [warm, cold_start]")
        return settings

    def scenario(self, method, request, arms=None, seeds=None, progress=None, verbose=False, chosen=None, on_run=None,
                 part=None):
        """Every arm x setting x seed (see the module docstring); ``on_run(row, instance, pair)`` sees each trained
        model before the next one trains (e.g. a benchmark's extra measurements). A default arm that cannot run in a
        setting (EASE under cold_start: cold users have no target rows) is left out of that setting with a progress
        line; an arm given in ``arms`` is refused there with its reason. ``part``: only the setting of that label
        (a ``--workers`` unit)."""
        chosen = bool(arms) if chosen is None else chosen
        arms = self.arms(method, request, arms)
        settings = self.settings(request)
        if part is not None and part not in settings:
            raise TransferConfigError(f"scenario part {part!r}: not a setting of this scenario ({', '.join(settings)})")
        settings = list(settings.values()) if part is None else [settings[part]]
        runs = {}
        for protocol, eta in settings:  # every key of every run, checked before anything trains
            for arm in list(arms):
                model, arm_keys = ARMS[arm]
                runs[(protocol, eta, arm)] = run = pair_request(request, model, **arm_keys, protocol=protocol, eta=eta)
                try:
                    check_run(model, run.keys)
                except TransferConfigError as exc:  # a default arm that cannot run here is left out, and said so
                    if chosen or not getattr(get_model(model), "needs_target_history", False):
                        raise
                    runs.pop((protocol, eta, arm))
                    if progress:
                        progress(f"{arm} is not run under {protocol}: {exc}")
        seeds = seeds or [request.seed]
        rows, total, start = [], len(seeds) * len(runs), time.time()
        for seed in seeds:
            for protocol, eta in settings:
                built = {arm: pair_configs(runs[(protocol, eta, arm)].with_keys(seed=seed)) for arm in arms
                         if (protocol, eta, arm) in runs}
                if not built:  # every arm asked for was left out of this setting (a unit of one default arm)
                    continue
                # one pair per (seed, setting): every arm trains and is scored on it; built with the config of an arm
                # that reads documents, if one does (their field is then loaded too; the rows are the same)
                configs = next((c for c in built.values() if c[1]["doc_field"]), next(iter(built.values())))
                pair = shared((protocol, eta, bool(configs[1]["doc_field"])), lambda: build_pair(*configs), pair_rows)
                check_same_pair(pair, {arm: configs[1] for arm, configs in built.items()})
                for arm in [a for a in arms if (protocol, eta, a) in runs]:
                    model, target_config = ARMS[arm][0], built[arm][1]
                    row, instance = run_one(model, pair, target_config, verbose=verbose)
                    row.update(arm=arm, target=setting_label(row), model=request.model, trained=model,
                               kind="baseline" if arm in BASELINE_ARMS else "transfer")
                    if on_run:
                        on_run(row, instance, pair)
                    rows.append(row)
                    if progress:
                        shown = ", ".join(f"{m[5:]} {row[m]:.4f}" for m in table_metrics(row["task"])[:2] if m in row)
                        progress(f"[{len(rows)}/{total}] seed {seed}, {row['target']}, {arm}: {shown} "
                                 f"({row['epochs']} epochs, {row['seconds']:.0f}s; {time.time() - start:.0f}s so far)")
        return rows

    def tables(self, method, rows):
        return results_tables(rows), None

    def plot(self, method, rows, path, plotted=None):
        """No plot: the tables carry the paired intervals."""

    def evaluate_checkpoint(self, model_file, config_dict=None):
        """``--evaluate``: rebuild the checkpoint's pair from its keys, refuse it unless its fingerprint is the one the
        checkpoint was trained on (overrides that change the data, e.g. another data_seed, are errors), load the
        weights (a stage checkpoint holds the whole model) and test the target."""
        checkpoint = load_checkpoint(model_file)
        target_config = TransferConfig.from_checkpoint(checkpoint, config_dict)
        model = target_config["model"]
        keys = {k: v for k, v in {**checkpoint["config"], **dict(config_dict or {})}.items() if k not in ("model", "dataset")}
        source = target_config["source"]
        if not source:
            raise TransferConfigError(f"checkpoint {model_file!r}: its config names no source domain")
        source_config = Request(model, source, [target_config["dataset"]], (), keys).config(source, key="source")
        check_run(model, target_config)
        pair = build_pair(source_config, target_config)
        stored = checkpoint.get("fingerprint")
        if stored and stored != pair.fingerprint():
            raise TransferConfigError(
                f"--evaluate: {model_file!r} was trained and validated on pair data {stored}, but these keys give "
                f"{pair.fingerprint()} (another data_seed, protocol, eta or split): its test users may be users it "
                "trained on. Evaluate it with its own keys (drop the overrides that change the data)"
            )
        instance = build(model, target_config, pair)
        load_model_state(instance, checkpoint)
        if hasattr(instance, "enter_stage"):
            instance.enter_stage(None, "target")
            for param in instance.parameters():  # the evaluation trainer builds an optimizer it never uses
                param.requires_grad_(True)
        result, _, _ = evaluate(instance, target_config, pair.target.test_data, "target")
        return target_config, result

    # ----- Ray Tune -------------------------------------------------------------------------------
    def check_search(self, method, request, trials):
        request = pair_request(request)
        source_config, config = pair_configs(request)
        check_run(request.model, config)
        for params in trials:
            check_run(request.model, pair_request(request, **params).keys)
        pair = build_pair(source_config, config)
        cls = get_model(request.model)
        schedule = parse_stages(cls, config["stages"], config["epochs"])
        if not schedule or pair.valid(cls.stages[schedule[-1][0]].valid) is None:
            raise TransferConfigError(f"--tune: {request.model}'s last stage must be validated (a trained model, "
                                      "validated on the target)")
        probe = build(request.model, config, pair)
        skipped = probe.skips(schedule[-1][0]) if hasattr(probe, "skips") else None
        if skipped:  # its trials would report nothing
            raise TransferConfigError(f"--tune: {request.model}'s last stage ({schedule[-1][0]}) would be skipped here: "
                                      f"{skipped}; search it under --protocol=cold_start (or --map_users=overlap)")
        max_t = 1 if is_traditional(cls) else schedule[-1][1]  # a model built in one pass: one epoch
        return SearchTarget(config, pair.fingerprint(), len(pair.target.protocol.rows["valid"]), max_t)

    def trial(self, method, request, report):
        source_config, config = pair_configs(pair_request(request))
        pair = build_pair(source_config, config)
        last = parse_stages(get_model(request.model), config["stages"], config["epochs"])[-1][0]

        def on_epoch(epoch, stage, trainer, done):
            if stage != last:  # earlier stages validate a part of the model (or the source): not the trial's score
                return
            report({**{f"valid_{k.lower()}": float(v) for k, v in (trainer.last_valid_result or {}).items()},
                    "epoch": epoch, "recbole_done": done, "fingerprint": pair.fingerprint(), "model_file": None})

        run_one(request.model, pair, config, verbose=True, on_epoch=on_epoch, evaluate_test=False)

    def finish_search(self, method, state, target, best, metric):
        """Retrain the winner (its keys, its trial's seed: the same run as its trial) and test it once; a stage
        checkpoint holds one stage's best epoch, so the test comes from the retrained model."""
        source_config, config = pair_configs(pair_request(state.trial_request(method, target, best["config"])))
        row, _ = run_one(state.model, build_pair(source_config, config), config)
        trained = [r for r in row["stages"] if not r.get("skipped")]
        return {"test_result": {k[5:]: v for k, v in row.items() if k.startswith("test_") and isinstance(v, float)},
                "keys": {}, "test_per_user": row["test_per_user"], "test_users": row["test_users"],
                "trainable": [trained[-1]["trainable"], row["parameters"]] if trained else None}
