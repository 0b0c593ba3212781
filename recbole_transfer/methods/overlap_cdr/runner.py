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

import numpy as np

from ...config import TransferConfig, get_model
from ...errors import TransferConfigError
from ...pipeline.base import Runner, SearchTarget
from ...pipeline.two_stage import domain_config
from ...report import markdown, mean_std, paired_vs
from ...stats import user_means
from ...trainer import TransferTrainer, load_checkpoint, load_model_state
from ...trainer.trainer import evaluated_users
from ...utils import listish
from .models import PairModel
from .pair import build_pair, check_protocol
from .stages import parse_stages, stage_table, train_stages

logger = logging.getLogger(__name__)

# arm -> (model, keys): the scenario's arms; the first of each task's list is the baseline the others pair with
ARMS = {
    "TargetMF": ("TargetMF", {}), "pop": ("TargetPop", {}), "CMF": ("CMF", {}), "EMCDR": ("EMCDR", {}),
    "PTUPCDR": ("PTUPCDR", {}),
    "global_mean": ("RatingMean", {"rating_mean": "global"}), "item_mean": ("RatingMean", {"rating_mean": "item"}),
    "item_mean_offset": ("RatingMean", {"rating_mean": "item_offset"}), "CATN": ("CATN", {}),
}
TASK_ARMS = {
    "ranking": ["TargetMF", "pop", "CMF", "EMCDR", "PTUPCDR"],
    "rating": ["TargetMF", "global_mean", "item_mean", "item_mean_offset", "CMF", "EMCDR", "PTUPCDR"],
}
TASKS = tuple(TASK_ARMS)
FOLDER = os.path.dirname(os.path.abspath(__file__))  # the method's YAML files


def task_files(config_files, task):
    """The request's config files with the task's RecBole keys after the scenario file (``rating.yaml``: labels,
    value metrics), so that the user's files still override them."""
    if task not in TASKS:
        raise TransferConfigError(f"task={task!r}: allowed {', '.join(TASKS)}")
    extra = os.path.join(FOLDER, f"{task}.yaml")
    files = list(config_files)
    return files[:1] + [extra] + files[1:]


def pair_configs(model, source, target, config_files, config_dict):
    """(source config, target config) of one run; the task decides which metric keys apply. The source is kept
    in the target's keys (a checkpoint names its pair)."""
    if source:
        config_dict = {**config_dict, "source": source}
    probe = domain_config(model, target, config_files, config_dict, key="target")
    own = model_keys(probe, model)
    if own:  # the files' keys for this model alone, under the command line's
        config_dict = {**own, **config_dict}
        probe = domain_config(model, target, config_files, config_dict, key="target")
    files = task_files(config_files, probe["task"])
    target_config = domain_config(model, target, files, config_dict, key="target")
    source = source or target_config["source"]
    if not source:
        raise TransferConfigError("source: no source domain given (--source=<name> or a 'source:' key)")
    source_config = domain_config(model, source, files, config_dict, key="source")
    field = target_config["doc_field"]
    columns = list((target_config["load_col"] or {}).get("inter") or [])
    if field and columns and field not in columns:  # the documents' field is loaded with the interactions
        config_dict = {**config_dict, "load_col": {**target_config["load_col"], "inter": columns + [field]}}
        return pair_configs(model, source, target, config_files, config_dict)
    return source_config, target_config


def model_keys(config, model):
    """``model_keys[model]``: keys a scenario sets for one model only (e.g. CATN's batch size beside the matrix
    factorisation arms'); {} when it sets none. They apply over every config file (a file that sets ``model_keys``
    replaces the whole table); the command line's keys and a scenario arm's own keys win over them."""
    table = config["model_keys"]
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(v is None or isinstance(v, dict) for v in table.values()):
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
    return domains


def check_run(model, config):
    """Every key of a run that can be checked before data is read."""
    check_protocol(config)
    check_eval_domains(config)
    cls = get_model(model)
    if config["task"] not in cls.tasks:
        raise TransferConfigError(f"task={config['task']!r}: {model} supports {', '.join(cls.tasks)}")
    parse_stages(cls, config["stages"], config["epochs"])
    return cls


def build(model, config, pair):
    cls = get_model(model)
    from recbole.utils import init_seed

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    dataset = pair.target.train_data._dataset
    if config["doc_field"] and getattr(cls, "reads_documents", False):  # the pair builds them once, from its training rows
        pair.documents(config["doc_field"], config["max_doc_len"], config["code_faithful_aux"])
    instance = cls(config, dataset, pair.links)
    return instance.to(config["device"])


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
           "data_seed": config["data_seed"] if config["data_seed"] is not None else config["seed"],
           "fingerprint": pair.fingerprint(), "metric": str(config["valid_metric"]).lower(), "stages": report,
           "epochs": sum(r["epochs"] for r in report), "seconds": seconds,
           "seconds_per_epoch": _per_epoch(report)}
    trained = [r for r in report if not r.get("skipped")]
    row["model_file"] = trained[-1]["model_file"] if trained else None
    if trained:  # the validation of the last stage that ran: what selected the model's final epoch
        row.update({f"valid_{k.lower()}": float(v) for k, v in trained[-1]["best_valid"].items()})
    if not evaluate_test:
        return row, instance
    result, per_user, users = evaluate(instance, config, pair.target.test_data, "target")
    row.update({f"test_{k}": v for k, v in result.items()})
    row.update(test_per_user=per_user, test_users=users)
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


def setting_label(row):
    return "warm" if row["protocol"] == "warm" else f"cold_start eta={row['eta']:g}"


def result_text(row, pair, domains):
    lines = pair.summary() + ["", stage_table(row["stages"]), ""]
    metrics = [k for k in row if k.startswith("test_") and k not in ("test_per_user", "test_users")]
    lines.append(f"{row['model']} on {pair.target.dataset.dataset_name} ({setting_label(row)}, task {row['task']}), test: "
                 + ", ".join(f"{k[5:]} {row[k]:.4f}" for k in metrics))
    source_metrics = [k for k in row if k.startswith("source_test_")]
    if "source" in domains:
        lines.append(f"source {pair.source.dataset.dataset_name}, test: "
                     + (", ".join(f"{k[12:]} {row[k]:.4f}" for k in source_metrics) or "- (no source vectors)"))
    lines.append(f"{row['epochs']} epochs in {row['seconds']:.1f}s ({row['seconds_per_epoch']:.2f}s per training epoch); "
                 f"model file {row['model_file']}")
    return "\n".join(lines)


def table_metrics(task):
    if task == "rating":
        return ["test_rmse", "test_mae", "test_mse"]
    return ["test_ndcg@10", "test_recall@10", "test_hit@10", "test_mrr@10"]


def results_tables(rows, baseline=None):
    """Per task: setting x arm means ± std over seeds, and each arm's paired difference to the baseline."""
    parts = []
    for task in [t for t in TASKS if any(r["task"] == t for r in rows)]:
        scoped = [r for r in rows if r["task"] == task]
        metrics = [m for m in table_metrics(task) if any(m in r for r in scoped)]
        base = baseline or TASK_ARMS[task][0]
        settings = list(dict.fromkeys(r["target"] for r in scoped))
        arms = list(dict.fromkeys(r["arm"] for r in scoped))
        lines = []
        for setting in settings:
            for arm in arms:
                group = [r for r in scoped if r["target"] == setting and r["arm"] == arm]
                if not group:
                    continue
                cells = [mean_std([r[m] for r in group if m in r]) if any(m in r for r in group) else "-" for m in metrics]
                paired = paired_vs(scoped, arm, base, "test_mse" if task == "rating" else metrics[0], [setting]) \
                    if arm != base else None
                lines.append([setting, arm] + cells + [paired.cell() if paired else "-",
                                                       f"{np.mean([r['seconds_per_epoch'] for r in group]):.2f}",
                                                       f"{np.mean([r['seconds'] for r in group]):.1f}"])
        key = "MSE per user" if task == "rating" else metrics[0].replace("test_", "")
        parts.append(
            f"Task {task}: test metrics, mean ± std over {len({r['seed'] for r in scoped})} seed(s); paired = the arm minus "
            f"{base} in {key} (each user's difference averaged over seeds, bootstrap 95 % interval over users; * excludes 0)"
            "\n\n" + markdown(["setting", "arm"] + [m.replace("test_", "") for m in metrics]
                              + [f"paired vs {base}", "s/epoch", "s"], lines)
        )
        source = [m for m in sorted({k for r in scoped for k in r if k.startswith("source_test_")})]
        if source:
            lines = [[setting, arm] + [mean_std([r[m] for r in scoped if r["target"] == setting and r["arm"] == arm and m in r])
                                       if any(m in r for r in scoped if r["target"] == setting and r["arm"] == arm) else "-"
                                       for m in source]
                     for setting in settings for arm in arms
                     if any(r["target"] == setting and r["arm"] == arm for r in scoped)]
            parts.append(f"Task {task}, the SOURCE domain's test split\n\n"
                         + markdown(["setting", "arm"] + [m.replace("source_test_", "") for m in source], lines))
    return "\n\n".join(parts)


class PairRunner(Runner):
    """See the module docstring."""

    time_attr = "epoch"
    scenario_without_target = False  # --model=CMF alone: one run on the scenario's pair

    def _configs(self, request, model, extra=None):
        """(source config, target config) of ``model`` on the request's pair (``extra``: keys over the request's)."""
        config_dict = {**dict(request.config_dict or {}), **(extra or {})}
        target = (request.targets or [None])[0]
        if target is None:
            targets = listish(TransferConfig(model, "ml-100k", request.config_files, config_dict)["targets"]) or []
            if not targets:
                raise TransferConfigError("targets: no target domain given (--target=<name> or a 'targets:' list)")
            target = targets[0]
        return pair_configs(model, request.source, target, request.config_files, config_dict)

    def run(self, method, request, progress):
        source_config, target_config = self._configs(request, request.model)
        check_run(request.model, target_config)
        pair = build_pair(source_config, target_config)
        row, instance = run_one(request.model, pair, target_config, verbose=True)
        row.update(arm=request.model, target=setting_label(row))
        text = result_text(row, pair, check_eval_domains(target_config))
        if hasattr(instance, "report") and row["model_file"]:  # e.g. CATN's aspects and its correlation heatmap
            text += "\n\n" + instance.report(os.path.splitext(row["model_file"])[0] + "-G.png")
        return row, text

    def arms(self, method, request, arms=None):
        _source, config = self._configs(request, request.model)
        if not arms:  # the task's arms, and the requested model's own when none of them trains it (e.g. CATN)
            arms = TASK_ARMS[config["task"]] + ([request.model] if request.model in ARMS and request.model not in
                                                {ARMS[a][0] for a in TASK_ARMS[config["task"]]} else [])
        arms = list(arms)
        unknown = [a for a in arms if a not in ARMS]
        if unknown:
            raise TransferConfigError(f"arms: unknown {', '.join(map(repr, unknown))}; the family's arms are "
                                      f"{', '.join(ARMS)}")
        return arms

    def scenario(self, method, request, arms=None, seeds=None, progress=None, verbose=False, on_run=None):
        """Every arm x setting x seed (see the module docstring); ``on_run(row, instance, pair)`` sees each trained
        model before the next one trains (e.g. a benchmark's extra measurements)."""
        arms = self.arms(method, request, arms)
        _source, probe = self._configs(request, request.model)
        settings = []
        for protocol in listish(probe["scenario_protocols"]) or []:
            etas = listish(probe["scenario_etas"]) if protocol == "cold_start" else [1.0]
            settings += [(protocol, float(eta)) for eta in etas]
        if not settings:
            raise TransferConfigError("scenario_protocols: no protocol given, e.g. [warm, cold_start]")
        configs = {}
        for protocol, eta in settings:  # every key of every run, checked before anything trains
            for arm in arms:
                model, keys = ARMS[arm]
                configs[(protocol, eta, arm)] = keys = {**keys, "protocol": protocol, "eta": eta, "model": model}
                check_run(model, self._configs(request, model, keys)[1])
        rows, total, start = [], len(seeds or [probe["seed"]]) * len(settings) * len(arms), time.time()
        for seed in seeds or [probe["seed"]]:
            for protocol, eta in settings:
                built = {arm: self._configs(request, configs[(protocol, eta, arm)]["model"],
                                            {**configs[(protocol, eta, arm)], "seed": seed}) for arm in arms}
                # one pair per (seed, setting): every arm trains and is scored on it; built with the config of an arm
                # that reads documents, if one does (their field is then loaded too; the rows are the same)
                pair = build_pair(*next((c for c in built.values() if c[1]["doc_field"]), built[arms[0]]))
                for arm in arms:
                    keys = {**configs[(protocol, eta, arm)], "seed": seed}
                    source_config, target_config = built[arm]
                    row, instance = run_one(keys["model"], pair, target_config, verbose=verbose)
                    row.update(arm=arm, target=setting_label(row), model=request.model, trained=keys["model"])
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
        source_config = domain_config(model, source, [], keys, key="source")
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
    def check_search(self, method, state, target, trials):
        request = _request(state, target)
        source_config, config = self._configs(request, state["model"], {"num_threads": state["num_threads"]})
        check_run(state["model"], config)
        for params in trials:
            check_run(state["model"], self._configs(request, state["model"], params)[1])
        pair = build_pair(source_config, config)
        schedule = parse_stages(get_model(state["model"]), config["stages"], config["epochs"])
        if not schedule or pair.valid(get_model(state["model"]).stages[schedule[-1][0]].valid) is None:
            raise TransferConfigError(f"--tune: {state['model']}'s last stage must be validated (a trained model, "
                                      "validated on the target)")
        probe = build(state["model"], config, pair)
        skipped = probe.skips(schedule[-1][0]) if hasattr(probe, "skips") else None
        if skipped:  # its trials would report nothing
            raise TransferConfigError(f"--tune: {state['model']}'s last stage ({schedule[-1][0]}) would be skipped here: "
                                      f"{skipped}; search it under --protocol=cold_start (or --map_users=overlap)")
        return SearchTarget(config, pair.fingerprint(), len(pair.target.protocol.rows["valid"]), schedule[-1][1])

    def trial(self, method, setup, params, report):
        request = _request(setup, setup["target"])
        source_config, config = self._configs(request, setup["model"])
        pair = build_pair(source_config, config)
        last = parse_stages(get_model(setup["model"]), config["stages"], config["epochs"])[-1][0]

        def on_epoch(epoch, stage, trainer, done):
            if stage != last:  # earlier stages validate a part of the model (or the source): not the trial's score
                return
            report({**{f"valid_{k.lower()}": float(v) for k, v in (trainer.last_valid_result or {}).items()},
                    "epoch": epoch, "recbole_done": done, "fingerprint": pair.fingerprint(), "model_file": None})

        run_one(setup["model"], pair, config, verbose=True, on_epoch=on_epoch, evaluate_test=False)

    def finish_search(self, method, state, target, best, metric):
        """Retrain the winner (its keys, its trial's seed: the same run as its trial) and test it once; a stage
        checkpoint holds one stage's best epoch, so the test comes from the retrained model."""
        from ...tune.search import params_of, trial_seed

        params = params_of(best["config"])
        keys = {**params, "seed": trial_seed(state["seed"], params, method), "num_threads": state["num_threads"]}
        source_config, config = self._configs(_request(state, target), state["model"], keys)
        row, _ = run_one(state["model"], build_pair(source_config, config), config)
        return {"test_result": {k[5:]: v for k, v in row.items() if k.startswith("test_") and isinstance(v, float)},
                "keys": {}}


def _request(state, target):
    from ...pipeline.base import Request

    return Request(state["model"], state["source"], [target], state["config_files"], dict(state["config_dict"]))
