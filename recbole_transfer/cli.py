"""Command line of recbole_transfer (``run_recbole_transfer.py`` and the ``recbole-transfer`` script).

Every command runs the model's method (:mod:`recbole_transfer.registry`): its default scenario file is in effect
(its domains, source and targets; your --config_files and --key=value arguments override it), its runner runs
the command, its tables print the results. This module never names a method.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile
import time

import yaml
from recbole.config import Config
from recbole.data import create_dataset

from . import keys, registry
from .config import TransferConfig, recbole_errors
from .data.amazon import write_amazon_pair
from .data.pairs import overlap
from .data.periods import check_period_args, dataset_periods, format_period_table, period_table
from .errors import TransferError
from .logs import quiet_logging, quiet_recbole_warnings, recbole_logging
from .pipeline import Request, domain_config, evaluate_checkpoint, load_transfer_model
from .trainer import load_checkpoint
from .utils import listish as _listish

USAGE_EXIT = 2


def _parser():
    methods = registry.methods()
    default = registry.default_method()
    models = ", ".join(f"{name} ({m.name})" for m in methods for name in m.models)
    p = argparse.ArgumentParser(
        prog="run_recbole_transfer.py",
        allow_abbrev=False,  # --seed is a config key, not an abbreviation of --seeds
        description=f"Transfer learning for RecBole models. With no arguments: the default scenario of the default "
        f"method ({default.name}) on the bundled ml-100k. Unknown --key=value arguments are RecBole / recbole_transfer "
        "config keys. Methods: " + "; ".join(f"{m.name}: {m.description}" for m in methods) + ".",
    )
    p.add_argument("--model", "-m", default=None, help=f"model name (plugin first, then RecBole): {models}; any RecBole "
                   f"model joins the {default.name} method (default: the model of that method's scenario)")
    p.add_argument("--source", default=None, help="source dataset or derived-domain name")
    p.add_argument("--target", "--dataset", "-d", dest="target", default=None, help="target dataset or derived-domain name")
    p.add_argument("--config_files", type=str, default=None, help="config files, separated by spaces")
    p.add_argument("--import", dest="imports", default=None, metavar="MODULES",
                   help="import these modules first (comma-separated): a method defined outside the package registers "
                        "itself when imported (or declare an entry point of the group recbole_transfer.methods)")
    p.add_argument("--scenario", action="store_true", help="run every arm on every target of the method's scenario "
                   "and print the method's result tables")
    p.add_argument("--arms", default=None, help="scenario arms, e.g. \"[none,arm1,arm2]\" (default: the method's: "
                   + "; ".join(f"{m.name}: {', '.join(m.arms)}" for m in methods if m.arms) + ")")
    p.add_argument("--seeds", default=None, help="scenario seeds, e.g. \"[2020,2021,2022]\" (default: the seed key)")
    p.add_argument("--output", default=None, help="scenario: write rows (JSON), tables (Markdown) and a plot (PNG) with this path "
                   "prefix; --tune: the search's outcomes (JSON) and tables (Markdown)")
    p.add_argument("--evaluate", metavar="CHECKPOINT", default=None, help="reload a recbole_transfer checkpoint and test it")
    for name in sorted({a for m in methods for a in m.analyses}):
        owners = ", ".join(m.name for m in methods if name in m.analyses)
        p.add_argument(f"--{name}", metavar="CHECKPOINT", default=None, help=f"{name} analysis of a checkpoint ({owners})")
    p.add_argument("--verbose", action="store_true", help="scenario: show RecBole's per-epoch logs")
    p.add_argument("--show_periods", action="store_true",
                   help="print the time periods of --dataset given by --periods=T [--period_by=interactions|time], then exit")
    p.add_argument("--show_overlap", action="store_true",
                   help="print the users (--overlap_field=item_id: items) that --source and --target share, then exit")
    r = p.add_argument_group("review files (Amazon 2014 / 2018 JSON lines, optionally .gz)")
    r.add_argument("--data", choices=["amazon"], default=None,
                   help="amazon: build the source and target domains from --source_file and --target_file first")
    r.add_argument("--source_file", default=None, help="the source domain's review file")
    r.add_argument("--target_file", default=None, help="the target domain's review file")
    r.add_argument("--min_item_reviews", type=int, default=30, help="keep items with at least this many reviews (30)")
    r.add_argument("--min_user_reviews", type=int, default=10, help="keep users with at least this many reviews (10)")
    r.add_argument("--review_dir", default=os.path.join("saved", "amazon"),
                   help="where the review domains are written (default saved/amazon)")
    t = p.add_argument_group("search (Ray Tune)")
    t.add_argument("--tune", action="store_true", help="search the best configuration per target with Ray Tune")
    t.add_argument("--search_space", default=None, help="search-space YAML (default: the method's space.yaml)")
    t.add_argument("--num_samples", type=int, default=None, help="random draws per grid point of the space")
    t.add_argument("--ray_address", default=None, help="join this Ray cluster (default: a local Ray on all cores)")
    t.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray (default: all cores)")
    t.add_argument("--run_dir", default=None, help="directory of the search (default: <tune_dir>/<timestamp>)")
    t.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted search")
    return p


def parse_extra(extra):
    """``--key=value`` arguments to a config dict, values converted the way RecBole converts them."""
    out = {}
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg:
            raise TransferError(f"argument {arg!r}: expected --key=value (see --help)")
        key, value = arg[2:].split("=", 1)
        out[key] = value
    out = Config._convert_config_dict(None, out)  # RecBole's conversion: numbers, True / False, Python literals
    for key, value in out.items():  # and YAML's flow lists and mappings, as a config file writes them: [a,b], {k: v}
        if isinstance(value, str) and value[:1] + value[-1:] in ("[]", "{}"):
            try:
                out[key] = yaml.load(value, Loader=keys.LOADER)
            except yaml.YAMLError:
                pass  # left as written: the key's check names it
    return out


def parse_command(argv):
    """(argparse namespace, config dict) of a command line, without running it: what ``main`` acts on. Raises
    TransferError for a ``--key=value`` argument that is not one, SystemExit (argparse) for a bad flag."""
    args, extra = _parser().parse_known_args(argv)
    return args, parse_extra(extra)


def _print(msg):
    print(msg, flush=True)


def parse_seeds(value):
    """``--seeds="[2020,2021]"`` (or ``2020,2021``) to integers; anything else is an error."""
    if value is None:
        return None
    seeds = _listish(value)
    if not seeds or not all(s.lstrip("-").isdigit() and int(s) >= 0 for s in seeds):
        raise TransferError(f"--seeds={value!r}: expected non-negative integers, e.g. --seeds=\"[2020,2021,2022]\"")
    return [int(s) for s in seeds]


def check_output(prefix, flag="--output"):
    """Fail before any work when ``<prefix>.*`` cannot be written."""
    if not prefix:
        return
    folder = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise TransferError(f"{flag}={prefix!r}: cannot write there ({exc.strerror or exc})") from None


def resolve_model(model, config_files, config_dict):
    """The model of a command: --model, else a 'model' key of the user's keys or config files, else the model of
    the default method's scenario."""
    if model:
        return model
    if config_dict.get("model"):
        return config_dict["model"]
    for path in config_files:
        data = keys.read_yaml(path)
        if data.get("model"):
            return data["model"]
    scenario = registry.default_method().scenario
    with open(scenario, "r", encoding="utf-8") as f:
        return yaml.safe_load(f)["model"]


def run_scenario_cli(args, method, request):
    runner = method.runner
    if not args.verbose:
        quiet_logging()
    seeds = parse_seeds(args.seeds)
    if args.arms is not None and not _listish(args.arms):
        raise TransferError(f"--arms={args.arms!r}: no arm given; e.g. --arms=\"[{','.join(method.arms[:2])}]\"")
    output = args.output or runner.default_output(request)
    check_output(output)
    start = time.time()
    _print("recbole_transfer: scenario of method " + method.name + " (" + " ".join(os.path.basename(f) for f in request.config_files) + ")")
    rows = runner.scenario(method, request, _listish(args.arms), seeds, progress=_print, verbose=args.verbose)
    if output:  # the runs first: a table that cannot be built must not lose them
        _write_outputs(output, rows, None)
    tables, plotted = runner.tables(method, rows)
    _print("\n" + tables + f"\n\ntotal wall time {time.time() - start:.0f}s")
    if output:
        _write_outputs(output, rows, tables)
        runner.plot(method, rows, output + ".png", plotted)
        written = [f"{output}.{ext}" for ext in ("json", "md", "png") if os.path.isfile(f"{output}.{ext}")]
        _print(f"wrote {', '.join(written)}")
    return 0


def _write_outputs(prefix, rows, tables):
    """``<prefix>.json`` (the rows) and ``<prefix>.md`` (the tables)."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with open(prefix + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f)
    if tables is not None:
        with open(prefix + ".md", "w", encoding="utf-8") as f:
            f.write(tables + "\n")


def run_search_cli(args, method, request):
    from .tune import SearchInterrupted, run_search, summary_table

    quiet_logging()
    check_output(args.output)
    start = time.time()
    try:
        outcomes = run_search(
            request.model, request.source, request.targets, request.config_files, request.config_dict,
            search_space=args.search_space, num_samples=args.num_samples, ray_address=args.ray_address,
            run_dir=args.run_dir, resume=args.resume, num_cpus=args.num_cpus, progress=_print,
        )
    except SearchInterrupted as exc:
        print(f"run_recbole_transfer.py: interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        where = args.resume or args.run_dir or "<the search directory printed above>"
        print(f"run_recbole_transfer.py: interrupted; continue with --resume={where}", file=sys.stderr)
        return 130
    parts = [f"{out['target']}: trials (validation only; test metrics of the winner below)\n\n{out['table']}" for out in outcomes]
    parts.append(summary_table(outcomes))
    parts += [f"{out['target']}: {out['best_yaml']}\n  reproduce: {out['command']}" for out in outcomes if out["best_yaml"]]
    if outcomes and outcomes[0].get("after"):
        parts.append(outcomes[0]["after"])
    _print("\n" + "\n\n".join(parts))
    _print(f"search directory {outcomes[0]['run_dir'] if outcomes else '-'}; total wall time {time.time() - start:.0f}s")
    if args.output:  # the search's outcomes (every trial row, the winner, its test metrics) and the printed tables
        with open(args.output + ".json", "w", encoding="utf-8") as f:
            json.dump(outcomes, f, default=str)
        with open(args.output + ".md", "w", encoding="utf-8") as f:
            f.write("\n\n".join(parts) + "\n")
        _print(f"wrote {args.output}.json and {args.output}.md")
    return 0


def main(argv=None):
    quiet_recbole_warnings()
    try:
        _import_modules(argv if argv is not None else sys.argv[1:])
    except TransferError as exc:
        print(f"run_recbole_transfer.py: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    args, extra = _parser().parse_known_args(argv)
    try:
        config_dict = parse_extra(extra)  # parse_command(argv), with argparse's exit kept outside the try
        config_files = args.config_files.strip().split() if args.config_files else []
        analysis = next((name for name in sorted({a for m in registry.methods() for a in m.analyses})
                         if getattr(args, name, None)), None)
        if args.evaluate or analysis:
            return _checkpoint_cli(args, analysis, config_dict)
        if args.show_periods:
            return _periods_cli(args, config_files, config_dict)
        if args.show_overlap:
            return _overlap_cli(args, config_files, config_dict)
        if args.data == "amazon":
            args.source, args.target = _amazon_cli(args, config_dict)
        elif args.source_file or args.target_file:
            raise TransferError("--source_file / --target_file: give --data=amazon with them")
        model = resolve_model(args.model, config_files, config_dict)
        method = registry.method_of(model)
        scenario = method.scenario_of(model)
        files = ([scenario] if scenario else []) + config_files  # the model's (method's) scenario, then yours
        targets = _listish(config_dict.pop("targets", None)) or _listish(args.target)
        request = Request(model, args.source, targets, files, config_dict)
        if args.tune or args.resume:
            return run_search_cli(args, method, request)
        runner = method.runner
        if args.scenario or not runner.single_run or (args.target is None and runner.scenario_without_target):
            return run_scenario_cli(args, method, request)
        target = targets[0] if targets else (_listish(TransferConfig(model, "ml-100k", files, config_dict)["targets"]) or [None])[0]
        recbole_logging(domain_config(model, target, files, config_dict, key="target"))
        _result, text = method.runner.run(method, request, _print)
        _print(text)
        return 0
    except TransferError as exc:
        print(f"run_recbole_transfer.py: error: {exc}", file=sys.stderr)
        return USAGE_EXIT


def _import_modules(argv):
    """``--import=a,b``: import the modules that register methods defined outside the package, before the parser
    lists the methods."""
    found = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    found.add_argument("--import", dest="imports", default=None)
    names = _listish(found.parse_known_args(argv)[0].imports) or []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TransferError(f"--import={name!r}: cannot import it ({exc})") from None


def _checkpoint_cli(args, analysis, config_dict):
    quiet_logging()
    path = args.evaluate or getattr(args, analysis)
    if args.evaluate:
        model = (load_checkpoint(path).get("config") or {}).get("model")
        runner = registry.method_of(model).runner if model else None
        config, result = (runner and runner.evaluate_checkpoint(path, config_dict)) or evaluate_checkpoint(path, config_dict)
        _print(f"{os.path.basename(path)} on {config['dataset']}: test {result}")
        return 0
    config, model, _dataset, _train, valid, _test = load_transfer_model(path, config_dict)
    method = registry.method_of(config["model"])
    if analysis not in method.analyses:
        raise TransferError(f"--{analysis}: model {config['model']} (method {method.name}) offers no {analysis} analysis; "
                            f"methods that do: {', '.join(m.name for m in registry.methods() if analysis in m.analyses)}")
    _print(method.analyses[analysis](config, model, valid))
    return 0


def _amazon_cli(args, config_dict):
    """``--data=amazon``: write the two review domains (:mod:`recbole_transfer.data.amazon`); their names."""
    if not args.source_file or not args.target_file:
        raise TransferError("--data=amazon: give both review files, --source_file=<path> --target_file=<path>")
    if args.min_item_reviews < 1 or args.min_user_reviews < 1:
        raise TransferError("--min_item_reviews / --min_user_reviews: must be >= 1")
    names = ("amazon_source", "amazon_target")
    counts = write_amazon_pair(args.source_file, args.target_file, args.review_dir, names, args.min_item_reviews,
                               args.min_user_reviews)
    for name, (users, items, reviews, dropped) in counts.items():
        _print(f"{name}: {users} users, {items} items, {reviews} reviews ({dropped} dropped: an empty field)")
    config_dict["data_path"] = os.path.abspath(args.review_dir)
    return names


def _overlap_cli(args, config_files, config_dict):
    """``--show_overlap --source=A --target=B``: the pair's overlap table (raw tokens aligned)."""
    quiet_logging()
    if not args.source or not args.target:
        raise TransferError("--show_overlap: give both domains, --source=<name> --target=<name>")
    field = config_dict.pop("overlap_field", None)
    datasets = []
    for key, name in (("source", args.source), ("target", args.target)):
        config = domain_config(args.model or "Popularity", name, config_files, config_dict, key=key)
        with recbole_errors(config, key):
            datasets.append(create_dataset(config))
    source, target = datasets
    found = overlap(source, target, field or source.uid_field)
    for key, dataset in (("source", source), ("target", target)):
        _print(f"{key} {dataset.dataset_name}: {dataset.user_num - 1} users, {dataset.item_num - 1} items, "
               f"{dataset.inter_num} interactions")
    _print("\n" + found.table(args.source, args.target))
    if not found.both:
        raise TransferError(f"--show_overlap: {args.source!r} and {args.target!r} share no {found.field} token")
    return 0


def _periods_cli(args, config_files, config_dict):
    quiet_logging()
    if args.target is None:
        raise TransferError("--show_periods: give the dataset with --dataset=<name>")
    # raw timestamps, for dates in the table (RecBole's ml-100k.yaml min-max normalises every float field)
    raw_time = None if {"normalize_all", "normalize_field"} & set(config_dict) else {"normalize_all": False}
    config = domain_config(args.model or "Popularity", args.target, config_files, config_dict, overrides=raw_time)
    check_period_args(config["periods"], config["period_by"])  # before the dataset is read
    dataset = create_dataset(config)
    period = dataset_periods(dataset, config["periods"], config["period_by"])
    feat = dataset.inter_feat
    rows = period_table(feat[dataset.uid_field].to_numpy(), feat[dataset.iid_field].to_numpy(),
                        feat[dataset.time_field].to_numpy(), period)
    _print(f"{config['dataset']}: {len(feat)} interactions in {config['periods']} periods (period_by={config['period_by']})\n")
    _print(format_period_table(rows))
    return 0
