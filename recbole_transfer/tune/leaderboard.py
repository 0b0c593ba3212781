"""The leaderboard: every family's default scenario, each arm (baselines and transfers alike) tuned on validation with
the same number of trials through the one Ray driver (:func:`~recbole_transfer.tune.search.run_search`), and per
scenario the best transfer arm against the best baseline arm, both picked on validation, paired per user on test.

A family takes part by shipping ``leaderboard.yaml`` in its folder::

    about: one line on what the trimmed scenario is
    targets: [action, family]        # a trim of the default scenario's targets (declared here, not in shared code)
    keys: {epochs: 30}               # keys over the scenario for every arm (a trim: fewer epochs, fewer etas)
    budget: 4                        # trials per arm (``--budget`` overrides it)
    arms:
      pop:      {kind: baseline, model: Popularity}                     # nothing to tune: one trial
      EASE:     {kind: baseline, model: EASE, space: {<its key>: {type: grid, values: [a, b, c, d]}}}
      transfer: {kind: transfer, model: <the family's model>, space: {transfer: {type: grid, values: [...]}}}

An arm is a model, its fixed ``keys`` and a ``space`` of the search-space format (:mod:`.space`): every arm with a
space runs exactly ``budget`` trials (a grid of that many points, or random entries drawn ``budget`` times), an arm
without one runs once. A space may only name keys the arm's model reads (its RecBole or plugin model file; for a
trained model also its method's keys and the training keys). A baseline arm trains with ``transfer: none``.

Every trial of every arm of one (family, target, data seed) is scored on the same data (the search driver checks
each trial's fingerprint; a scope whose picked arms were scored on different data is shown unpaired, never paired). Validation picks each arm's
configuration, then the best baseline and the best transfer arm; the test split is read once per arm, for its
winner. ``run_leaderboard`` writes ``<output>.json`` (one row per family, scenario, target, arm and data seed),
``<output>.md`` and ``<output>.png``; finished arms are kept in the work directory, so a rerun resumes. With
``workers`` or ``ray_address`` the arms run at once, each a Ray task that drives its own search.
"""

import json
import logging
import os
import time
from dataclasses import dataclass, field

import yaml

from .. import registry
from ..config import get_model
from ..errors import TransferConfigError, TransferError, did_you_mean
from ..keys import method_keys, read_yaml
from ..report import BEST, best_by_kind, forest_plot, markdown, paired_vs, picked_names
from ..request import Request
from ..trainer import is_traditional
from ..utils import property_file, stable_hash
from .space import SearchSpace
from .state import params_of

logger = logging.getLogger(__name__)

LEADERBOARD_FILE = "leaderboard.yaml"
PLAN_KEYS = ("about", "targets", "keys", "budget", "arms")
ARM_KEYS = ("kind", "model", "keys", "space")
KINDS = ("baseline", "transfer")
# keys every trained (not traditional) model reads through RecBole's trainer
TRAINING_KEYS = frozenset({"learning_rate", "weight_decay", "train_batch_size", "learner", "epochs", "stopping_step",
                           "clip_grad_norm"})
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
RECBOLE_MODELS = os.path.join(os.path.dirname(os.path.dirname(__import__("recbole").__file__)), "recbole", "properties",
                              "model")


def families():
    """The registered methods that ship a leaderboard plan, in registration order."""
    return [m for m in registry.methods() if m.file(LEADERBOARD_FILE)]


def select_families(names=None):
    """The families named (all by default); an unknown name is an error with the valid names."""
    known = {m.name: m for m in families()}
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TransferConfigError(f"--families: unknown family {unknown[0]!r}{did_you_mean(unknown[0], known)}; "
                                  f"families with a leaderboard: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def model_reads(model):
    """The keys a space may tune for ``model``: its own model files' keys (RecBole's and the plugin's) and, for a
    trained model, its method's keys and the training keys (a traditional model is built, not trained)."""
    names = set()
    for path in (os.path.join(RECBOLE_MODELS, f"{model}.yaml"), registry.model_file(model),
                 os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "properties",
                              "model", f"{model}.yaml")):
        if path and os.path.isfile(path):
            names |= set(read_yaml(path))
    if not is_traditional(get_model(model)):
        names |= set(method_keys(registry.method_of(model))) | TRAINING_KEYS
    return names


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str
    model: str
    keys: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)

    def space_spec(self, budget):
        """The arm's search space (every trial runs its epochs: a FIFO scheduler; no baseline trial is added)."""
        random = any(isinstance(v, dict) and v.get("type") in ("float", "int", "choice") for v in self.space.values())
        return {"metric": None, "num_samples": budget if random else 1, "scheduler": {"type": "fifo"},
                "cpus_per_trial": 1, "scratch_margin": 0, "add_baseline": False, "parameters": dict(self.space)}

    def trials(self, budget, path="<plan>", default_transfer="none", seed=0):
        """The arm's concrete trial configurations (config keys), as its search at ``seed`` expands them (a trial
        without a transfer entry takes ``default_transfer``: the run's own)."""
        space = SearchSpace(self.space_spec(budget), f"{path} arms.{self.name}", registry.method_of(self.model))
        return [params_of(t) for t in space.trials(seed, self.run_keys().get("transfer", default_transfer))]

    def run_keys(self):
        """The keys of its runs (its own over these): a baseline arm of a model whose method transfers trains with
        ``transfer: none``."""
        method, extra = registry.method_of(self.model), {}
        if self.kind == "baseline" and method.strategy is not None:
            # a method's own baseline model (e.g. a bag of source items) ignores the transfer keys: it gets its method's
            # baseline arm's, which the method's strategy reads (every other baseline: no transfer)
            own = self.model in method.baseline_models.values()
            extra = method.baseline_trial() if own else {"transfer": "none"}
        return {**extra, **self.keys}


@dataclass
class Plan:
    """A family's leaderboard plan (its ``leaderboard.yaml``, validated)."""

    method: object
    path: str
    about: str
    targets: list
    keys: dict
    budget: int
    arms: list

    def request(self):
        """The family's default scenario, trimmed by the plan (its targets, its keys)."""
        method = self.method
        model = next(iter(method.models))
        scenario = read_yaml(method.scenario) if method.scenario else {}
        model = scenario.get("model") or model
        return Request.command(model, None, self.targets or None, (), dict(self.keys))


def _err(path, msg):
    return TransferConfigError(f"leaderboard plan {path}: {msg}")


def load_plan(method, budget=None, arms=None, path=None, seeds=None):
    """The validated plan of ``method`` (its ``leaderboard.yaml``, or the file ``path``; its budget replaced by
    ``budget``, its arms restricted to ``arms``): every arm's model, keys, space and trial count (at each of ``seeds``,
    default the scenario's seed: random draws that repeat count once) checked before anything trains."""
    path = path or method.file(LEADERBOARD_FILE)
    data = read_yaml(path, key="leaderboard")
    for key in data:
        if key not in PLAN_KEYS:
            raise _err(path, f"unknown key {key!r}{did_you_mean(key, PLAN_KEYS)}; allowed: {', '.join(PLAN_KEYS)}")
    budget = data.get("budget", 4) if budget is None else budget
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise _err(path, f"budget={budget!r}: must be an integer >= 1 (trials per arm)")
    specs = data.get("arms") or {}
    if not isinstance(specs, dict) or not specs:
        raise _err(path, "arms: expected a mapping of arm name -> {kind, model, keys, space}")
    if arms is not None and not arms:
        raise TransferConfigError("--arms: no arm given")
    if arms:
        unknown = [a for a in arms if a not in specs]
        if unknown:
            raise TransferConfigError(f"--arms: {unknown[0]!r} is not an arm of family {method.name!r}"
                                      f"{did_you_mean(unknown[0], specs)}; its arms: {', '.join(specs)}")
        specs = {a: specs[a] for a in arms}
    plan = Plan(method, path, str(data.get("about") or ""), list(data.get("targets") or []), dict(data.get("keys") or {}),
                budget, [check_arm(path, name, spec) for name, spec in specs.items()])
    kinds = {a.kind for a in plan.arms}
    if not arms and kinds != set(KINDS):
        raise _err(path, f"arms: needs baseline and transfer arms (has {', '.join(sorted(kinds))})")
    request = plan.request()
    request.check_domains(request.require_targets(), "targets")
    for arm in plan.arms:
        check_budget(path, arm, budget, seeds or [request.seed], given=data.get("budget", 4) != budget)
    for arm in plan.arms:  # every arm's keys resolve and check (a bad value fails here, not in a Ray worker)
        try:
            arm_request = request.with_keys(model=arm.model, **arm.run_keys())
            for params in arm.trials(budget, path, default_transfer=arm_request.keys["transfer"]):
                arm_request.with_keys(**params).config(arm_request.require_targets()[0])
        except TransferConfigError as exc:
            raise _err(path, f"arms.{arm.name}: {exc}") from None
        check_arm_request(method, arm, arm_request, plan.budget, path)
    return plan


def check_arm(path, name, spec):
    where = f"arms.{name}"
    if not isinstance(spec, dict):
        raise _err(path, f"{where}: expected a mapping with keys {', '.join(ARM_KEYS)}")
    for key in spec:
        if key not in ARM_KEYS:
            raise _err(path, f"{where}: unknown key {key!r}{did_you_mean(key, ARM_KEYS)}; allowed: {', '.join(ARM_KEYS)}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise _err(path, f"{where}.kind: {kind!r}; must be one of {', '.join(KINDS)}")
    model = spec.get("model")
    if not isinstance(model, str):
        raise _err(path, f"{where}.model: give the arm's model name")
    try:
        get_model(model)
    except (TransferConfigError, ValueError) as exc:
        raise _err(path, f"{where}.model: {exc}") from None
    space = spec.get("space") or {}
    if not isinstance(space, dict):
        raise _err(path, f"{where}.space: expected a mapping of key -> entry")
    reads = model_reads(model)
    for key in space:
        if key not in reads and key != "transfer":
            raise _err(path, f"{where}.space.{key}: {model} does not read {key!r}"
                             f"{' (it is built, not trained)' if is_traditional(get_model(model)) else ''}; "
                             f"the keys it reads: {', '.join(sorted(reads)) or 'none'}")
    keys = spec.get("keys") or {}
    if not isinstance(keys, dict):
        raise _err(path, f"{where}.keys: expected a mapping of key -> value")
    method = registry.method_of(model)
    if kind == "baseline" and ("transfer" in space or ("transfer" in keys and not _is_baseline(method, keys))):
        raise _err(path, f"{where}: a baseline arm trains without transfer (its 'transfer' key, if any, is its method's "
                         f"baseline configuration, e.g. {method.baseline_trial() or {'transfer': 'none'}})")
    if kind == "transfer" and method.strategy is not None:
        values = space.get("transfer", {}).get("values", []) if isinstance(space.get("transfer"), dict) else []
        fixed = [keys["transfer"]] if "transfer" in keys else []
        plain = [v for v in values + fixed if _is_baseline(method, {**keys, "transfer": v})]
        if plain:
            raise _err(path, f"{where}: transfer={plain[0]!r} is a baseline configuration; a transfer arm transfers "
                             "(put the baseline in a baseline arm)")
    return Arm(name, kind, model, dict(keys), dict(space))


def _is_baseline(method, params):
    try:
        return method.is_baseline(params)
    except TransferConfigError:  # an unknown transfer value: the arm's strategy check names it
        return False


def check_budget(path, arm, budget, seeds, given=False):
    """Every arm with a space runs exactly ``budget`` trials at each data seed that will run (a grid of that many
    points, or random entries drawn ``budget`` times whose draws do not repeat)."""
    if not arm.space:
        return
    for seed in seeds:
        n = len(arm.trials(budget, path, seed=seed))
        if n != budget:
            how = (f"--budget={budget} differs from the plan's; give a space of {budget} points in a copy of the plan "
                   "(--leaderboard_plan=<file>)" if given else
                   "a grid of that many points, or random entries drawn budget times whose draws do not repeat")
            raise _err(path, f"arms.{arm.name}.space: {n} trials at seed {seed}, but every arm with a space runs "
                             f"budget={budget} ({how})")


def check_arm_request(method, arm, request, budget, plan_path="<plan>"):
    """What a scenario checks of an arm before anything trains: every trial's strategy (its transfer keys, as the trial
    reads them) and a baseline that cannot score the targets (refused with its reason)."""
    from ..pipeline.scenario import SHARED_BASELINES, check_baseline, check_strategies

    check_strategies(registry.method_of(arm.model), request, [{}] + arm.trials(budget, default_transfer=request.keys["transfer"]))
    if arm.model in SHARED_BASELINES.values():
        for target in request.require_targets():
            check_baseline(request, target, arm.model)
    runner_check = getattr(registry.method_of(arm.model).runner, "check_arm", None)
    if runner_check is not None:  # what only the runner knows (e.g. which keys an arm of one retraining method reads)
        try:
            runner_check(arm.model, request, set(arm.space), arm.kind, arm.keys)
        except TransferConfigError as exc:
            raise _err(plan_path, f"arms.{arm.name}: {exc}") from None


def run_leaderboard(families_=None, seeds=None, budget=None, arms=None, output=None, work_dir=None, progress=None,
                    num_cpus=None, plan_files=None, workers=None, ray_address=None):
    """Run the leaderboard (see the module docstring); returns the rows. ``families_``: family names (default all);
    ``seeds``: data seeds (default: each family's scenario seed); ``arms``: restrict every family to these arms;
    ``plan_files``: {family: a plan file to use instead of its leaderboard.yaml}.

    Arms run one after another, each arm's trials on a local Ray of ``num_cpus`` CPUs. With ``workers`` (a local Ray
    of that many CPUs) or ``ray_address`` (a running cluster) every unfinished (family, seed, arm) is a Ray task of
    its own that runs the arm's search there, so the trials of all arms share the cluster's CPUs: the same rows
    (every trial trains its epochs with its own seed on the driver's data), in the same order."""
    from .cluster import check_workers, import_roots, probe_address, ray_session, run_tasks

    check_workers(workers)
    if num_cpus is not None and (workers is not None or ray_address is not None):
        raise TransferConfigError("--num_cpus: give it without --workers and --ray_address (--num_cpus: the arms one "
                                  "after another on a local Ray of that many CPUs; --workers: the arms at once on a "
                                  "local Ray of that many CPUs; --ray_address: the arms at once on that cluster)")
    emit = progress or (lambda msg: logger.info(msg))
    plans = [load_plan(m, budget, arms, (plan_files or {}).get(m.name), seeds)  # every plan checked first
             for m in select_families(families_)]
    probe_address(ray_address)
    work_dir = os.path.abspath(work_dir or os.path.join("saved", "leaderboard"))
    units, requests = [], []  # (plan, seed, arm) and its request, each plan's scenario read once
    for plan in plans:
        base = plan.request()
        for seed in seeds or [base.seed]:
            for arm in plan.arms:
                units.append((plan, seed, arm))
                requests.append(_arm_request(base, seed, arm))
    results, start = {}, time.time()

    def finished(index, arm_rows, seconds):
        results[index] = arm_rows
        plan, seed, arm = units[index]
        for row in arm_rows:
            shown = (f"valid {row['valid']:.4f} test {row['test']:.4f}" if row.get("test") is not None
                     else f"no trial finished ({row.get('errors')} errors; see {_run_dir(work_dir, *units[index])})")
            emit(f"[{len(results)}/{len(units)}] {plan.method.name} seed {seed} {row['target']} {arm.name} ({arm.kind}): "
                 f"{row['metric']} {shown}; picked {_config_text(row['picked_config'])} "
                 f"({row['seconds']:.0f}s; arm {seconds:.0f}s, elapsed {time.time() - start:.0f}s)")

    todo = []
    for index, unit in enumerate(units):
        kept = _finished(_run_dir(work_dir, *unit), unit[0], unit[2], requests[index])
        if kept is None:
            todo.append(index)
        else:  # its seconds are those of the run that finished it
            finished(index, [{**row, "resumed": True} for row in kept], 0)
    if todo:  # Ray starts with the first arm that runs (a resumed one needs none)
        roots = tuple(dict.fromkeys(r for plan in plans for r in import_roots(plan.method)))
        with ray_session(ray_address, None if ray_address else (num_cpus if workers is None else workers), roots):
            if workers is None and ray_address is None:
                for index in todo:
                    t0 = time.time()
                    finished(index, _arm_rows(units[index], requests[index], work_dir, num_cpus), time.time() - t0)
            else:
                import ray

                cpus = ray.cluster_resources().get("CPU", 0)
                at_once = workers or max(1, int(cpus))
                emit(f"Ray {ray.get_runtime_context().gcs_address}: {len(todo)} arms, at most {at_once} at once, on "
                     f"{cpus:g} CPUs")
                # an arm's task drives its search (the data, the trials' checks, the winner's test): no CPU is reserved
                # for it, so that its trials can have them; at most as many arms as CPUs (or --workers) at once keeps
                # the drivers' own work bounded. A crashed arm is an error, not a silent rerun of its search.
                task = ray.remote(num_cpus=0, max_retries=0)(_arm_task)
                run_tasks(task, [(units[index], work_dir, os.getcwd()) for index in todo], at_once,
                          lambda at, out: finished(todo[at], *out))
    rows = [row for index in range(len(units)) for row in results[index]]
    if output:
        write_leaderboard(output, rows)
    return rows


def _arm_request(base, seed, arm):
    """The request of one arm at one data seed, over its plan's scenario ``base``."""
    return base.with_keys(model=arm.model, seed=seed, **arm.run_keys())


def _run_dir(work_dir, plan, seed, arm):
    return os.path.join(work_dir, plan.method.name, f"seed{seed}", arm.name)


def _arm_rows(unit, request, work_dir, num_cpus):
    from .search import run_search

    quiet = lambda msg: logger.info(msg)  # noqa: E731 - the searches' own lines go to the log
    return _run_arm(run_search, unit[0], unit[2], request, _run_dir(work_dir, *unit), quiet, num_cpus)


def _arm_task(unit, work_dir, cwd):
    """One arm's search, run from a Ray task (in the driver's working directory: relative keys mean the same)."""
    from ..logs import quiet_logging

    quiet_logging()
    if not os.path.isdir(cwd):
        raise TransferConfigError(f"a leaderboard arm on a Ray node: no folder {cwd!r} there (the driver's working "
                                  "folder); run the leaderboard from a folder every node sees")
    before, t0 = os.getcwd(), time.time()
    os.chdir(cwd)
    try:
        request = _arm_request(unit[0].request(), unit[1], unit[2])
        return _arm_rows(unit, request, work_dir, None), time.time() - t0
    finally:
        os.chdir(before)


def _finished(run_dir, plan, arm, request):
    """The rows of an arm a previous run finished with the same plan and keys (a rerun resumes), else None (also
    when a target's every trial failed: a rerun tries the arm again)."""
    path = os.path.join(run_dir, "leaderboard-rows.json")
    if not os.path.isfile(path):
        return None
    with open(path, "r", encoding="utf-8") as f:
        saved = json.load(f)
    if saved.get("key") != _arm_key(plan, arm, request) or any(r.get("test") is None for r in saved["rows"]):
        return None
    return saved["rows"]


def _arm_key(plan, arm, request):
    """What decides an arm's rows: the arm, the budget, the request's keys and targets, and the text of its config
    files, of the shared keys (``properties/overall.yaml``) and of its method's own files (a changed scenario, key
    default or model reruns the arm, and so does any edit in the method's folder; a change elsewhere in the package
    does not). Files of this package are named by their path inside it, so a key holds in any checkout."""
    folder = plan.method.folder
    own = sorted(os.path.join(root, name) for root, _dirs, names in os.walk(folder) for name in names
                 if name.endswith((".py", ".yaml")))
    files = [*request.config_files, property_file("overall.yaml"), *own]
    return stable_hash({"arm": arm.__dict__, "budget": plan.budget, "keys": dict(request.config_dict),
                        "targets": list(request.targets), "files": [_named(p) for p in request.config_files],
                        "texts": {_named(p): _text(p) for p in files}})


def _named(path):
    """A file's name in a key: its path inside this package's checkout, else its absolute path."""
    path = os.path.abspath(path)
    inside = os.path.relpath(path, PACKAGE_ROOT)
    return path if inside.startswith("..") else inside


def _text(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _run_arm(run_search, plan, arm, request, run_dir, progress, num_cpus):
    if os.path.isdir(run_dir):  # an unfinished earlier try: start the arm again
        import shutil

        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    space_path = os.path.join(run_dir, "space.yaml")
    with open(space_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(arm.space_spec(plan.budget), f, sort_keys=False)
    t0 = time.time()
    outcomes = run_search(request=request, search_space=space_path, run_dir=os.path.join(run_dir, "search"),
                          progress=progress, num_cpus=num_cpus, after=False)
    seconds = (time.time() - t0) / max(1, len(outcomes))
    rows = [_row(plan, arm, request, out, seconds) for out in outcomes]
    with open(os.path.join(run_dir, "leaderboard-rows.json"), "w", encoding="utf-8") as f:
        json.dump({"key": _arm_key(plan, arm, request), "rows": rows}, f)
    return rows


# an error metric is paired on the per-user key it averages (RMSE: each user's squared error)
PER_USER_KEY = {"rmse": "mse"}


def _row(plan, arm, request, out, seconds):
    lower = out["metric"].startswith("valid_neg_")
    metric = out["metric"].replace("valid_neg_", "valid_", 1).replace("valid_", "", 1)
    best = out["best"]
    valid = None if not best else (-best["best_valid"] if lower else best["best_valid"])  # the search maximizes -RMSE
    fixed = set(arm.run_keys())
    test = dict(out.get("test_result") or {})
    trainable = out.get("trainable")
    paired = PER_USER_KEY.get(metric, metric) if lower else metric
    per_user = out.get("test_per_user")
    if per_user and paired in per_user:  # the values the tables pair on; the other metrics' lists are never read
        per_user = {paired: per_user[paired]}
    return {
        "family": plan.method.name, "scenario": os.path.basename(plan.method.scenario or ""), "target": out["target"],
        "arm": arm.name, "kind": arm.kind, "model": arm.model, "data_seed": request.data_seed, "seed": request.seed,
        "metric": metric, "lower_is_better": lower, "paired_on": f"test_{paired}",
        "picked_config": {k: v for k, v in params_of(best["config"]).items() if k not in fixed} if best else None,
        "trials": out["trials"], "errors": out.get("errors"), "valid": valid, f"valid_{metric}": valid,
        "test": test.get(metric), **{f"test_{k}": v for k, v in test.items()},
        "test_per_user": per_user, "test_users": out.get("test_users"),
        "trainable": trainable[0] / trainable[1] if trainable and trainable[1] else None,
        "seconds": seconds, "resumed": False, "fingerprint": out["fingerprint"], "same_split": out["same_split"],
    }


# ----- the table ------------------------------------------------------------------------------------------------
def _config_text(config):
    if not config:
        return "-"
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())


def best_rows(rows):
    """Per (family, target, data seed), the best baseline and the best transfer arm, picked on validation
    (:func:`~recbole_transfer.report.best_by_kind`), scoped ``family: target``: the rows the table and the plot pair."""
    return best_by_kind(rows, scope=lambda r: f"{r['family']}: {r['target']}", seed_key="data_seed",
                        lower=lambda r: r["lower_is_better"])


def leaderboard_table(rows):
    """Per (family, target): the best baseline and the best transfer arm (each picked on validation, per data seed),
    their test metric (mean over data seeds), the paired per-user difference with its bootstrap 95 % interval, the
    transfer's trainable share and the wall time of all arms."""
    picks = best_rows(rows)
    lines = []
    for scope in dict.fromkeys(r["target"] for r in picks):
        mine = [r for r in picks if r["target"] == scope]
        base = [r for r in mine if r["arm"] == BEST["baseline"]]
        tran = [r for r in mine if r["arm"] == BEST["transfer"]]
        if not base or not tran:
            continue
        family, target = scope.split(": ", 1)
        metric = f"test_{base[0]['metric']}"
        try:
            diff = paired_vs(picks, BEST["transfer"], BEST["baseline"], base[0].get("paired_on", metric), [scope])
        except TransferError as exc:  # arms scored on different data: never paired
            logger.warning("leaderboard: %s", exc)
            diff = "different data"
        if diff == "different data":
            finding = "not paired: arms scored on different data"
        elif diff is None:
            finding = "-"
        else:
            finding = ("within noise" if not diff.excludes_zero else "transfer wins" if diff.mean > 0 else "baseline wins")
        if isinstance(diff, str):
            diff = None
        if diff is not None and base[0]["lower_is_better"]:  # RMSE-like: report baseline minus transfer (a gain > 0)
            diff = type(diff)(-diff.mean, -diff.high, -diff.low, diff.se, diff.n)
        seconds = sum(r["seconds"] for r in rows if r["family"] == family and r["target"] == target)
        share = [r["trainable"] for r in tran if r.get("trainable") is not None]
        lines.append([
            family, target, base[0]["metric"], picked_names(base), _mean(base, metric), picked_names(tran), _mean(tran, metric),
            diff.cell() if diff else "-", finding,
            f"{sum(share) / len(share):.1%}" if share else "-", f"{seconds:.0f}",
        ])
    seeds = sorted({r["data_seed"] for r in rows})
    title = (f"Best transfer vs best baseline, each picked on validation (data seeds {', '.join(map(str, seeds))}; every arm "
             "tuned with the same number of trials). Paired difference on test: transfer minus baseline (RMSE: baseline "
             "minus transfer), each user's difference averaged over data seeds [bootstrap 95 % interval over users]")
    return title + "\n\n" + markdown(["family", "target", "metric", "best baseline (picked)", "its test", "best transfer "
                                      "(picked)", "its test", "paired diff [95% CI]", "finding", "trainable share",
                                      "wall s (all arms)"], lines)


def _mean(rows, metric):
    values = [r[metric] for r in rows if r.get(metric) is not None]
    return f"{sum(values) / len(values):.4f}" if values else "-"


def arm_table(rows):
    """Every arm: its kind, picked configuration (per data seed), validation and test metric."""
    lines = [[r["family"], r["target"], r["data_seed"], r["arm"], r["kind"], _config_text(r["picked_config"]),
              r["trials"], "-" if r["valid"] is None else f"{r['valid']:.4f}",
              "-" if r.get("test") is None else f"{r['test']:.4f}", f"{r['seconds']:.0f}"] for r in rows]
    return "Every arm (its configuration picked on validation; test read once, for it)\n\n" + markdown(
        ["family", "target", "data seed", "arm", "kind", "picked configuration", "trials", "valid", "test", "s"], lines)


def leaderboard_report(rows):
    return leaderboard_table(rows) + "\n\n" + arm_table(rows)


def write_leaderboard(prefix, rows, extra=None):
    """``<prefix>.json`` (the rows, and ``extra``), ``<prefix>.md`` (:func:`leaderboard_report`) and ``<prefix>.png``
    (each scenario's paired difference, best transfer minus best baseline)."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with open(prefix + ".json", "w", encoding="utf-8") as f:
        json.dump({"rows": rows, **(extra or {})}, f)
    with open(prefix + ".md", "w", encoding="utf-8") as f:
        f.write(leaderboard_report(rows) + "\n")
    picks = best_rows(rows)
    if any(r["arm"] == BEST["transfer"] for r in picks) and any(r["arm"] == BEST["baseline"] for r in picks):
        forest_plot(picks, prefix + ".png", metric=None, baseline=BEST["baseline"])
