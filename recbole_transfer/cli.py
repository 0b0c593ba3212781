"""Argument handling of ``run_recbole_transfer.py`` (also installed as ``recbole-transfer``)."""

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # ray 2.6.3, imported by recbole
from recbole.config import Config  # noqa: E402

from .errors import TransferError  # noqa: E402
from .utils import listish as _listish  # noqa: E402

USAGE_EXIT = 2


def _parser():
    p = argparse.ArgumentParser(
        prog="run_recbole_transfer.py",
        allow_abbrev=False,  # --seed is a config key, not an abbreviation of --seeds
        description="Transfer learning for RecBole models. With no arguments: the default layer-transfer "
        "scenario on the bundled ml-100k. Unknown --key=value arguments are RecBole / recbole_transfer config keys.",
    )
    p.add_argument("--model", "-m", default=None, help="model name (plugin first, then RecBole), e.g. TransferMLP, NeuMF, DMF")
    p.add_argument("--source", default=None, help="source dataset or derived-domain name")
    p.add_argument("--target", "--dataset", "-d", dest="target", default=None, help="target dataset or derived-domain name")
    p.add_argument("--config_files", type=str, default=None, help="config files, separated by spaces")
    p.add_argument("--scenario", action="store_true", help="run every arm on every target (gain table; PeterRec: method x task table; MMTNet: per target, macro and wall time)")
    p.add_argument("--arms", default=None, help="scenario arms, e.g. \"[none,config-1,config-5]\" (default: none + config-1..7; PeterRec: pop, finecls, finelast, fineall, peterrec/serial, peterrec/parallel, peterzero/serial; MMTNet: none, anneal, drr, random)")
    p.add_argument("--seeds", default=None, help="scenario seeds, e.g. \"[2020,2021,2022]\" (default: the seed key)")
    p.add_argument("--output", default=None, help="scenario: write rows (JSON) and the table (Markdown) with this path prefix")
    p.add_argument("--evaluate", metavar="CHECKPOINT", default=None, help="reload a recbole_transfer checkpoint and test it")
    p.add_argument("--importance", metavar="CHECKPOINT", default=None, help="layer importance by representation erasure")
    p.add_argument("--verbose", action="store_true", help="scenario: show RecBole's per-epoch logs")
    p.add_argument("--show_periods", action="store_true",
                   help="print the time periods of --dataset given by --periods=T [--period_by=interactions|time], then exit")
    t = p.add_argument_group("search (Ray Tune)")
    t.add_argument("--tune", action="store_true", help="search the best transfer configuration per target with Ray Tune")
    t.add_argument("--search_space", default=None, help="search-space YAML (default: every layer-transfer arm, frozen or fine-tuned; MMTNet: properties/tune/mmtnet.yaml)")
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
    return Config._convert_config_dict(None, out)


def _print(msg):
    print(msg, flush=True)


def _quiet_logging():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)


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


def run_scenario_cli(args, config_files, config_dict):
    from .scenario import (default_scenario, forest_plot, gain_table, method_paired_table, method_table, one_to_many_table,
                           paired_table, run_scenario)
    from .transfer import uses_patches, uses_shared_modules

    if not args.verbose:
        _quiet_logging()
    files = [default_scenario(args.model)] + config_files
    targets = _listish(config_dict.pop("targets", None)) or ([args.target] if args.target else None)
    seeds = parse_seeds(args.seeds)
    check_output(args.output)
    arms = _listish(args.arms)
    start = time.time()
    _print("recbole_transfer: scenario " + " ".join(os.path.basename(f) for f in files))
    rows = run_scenario(args.model, args.source, targets, files, config_dict, arms, seeds, progress=_print, verbose=args.verbose)
    if args.output:  # the runs first: a table that cannot be built must not lose them
        _write_outputs(args.output, rows, None)
    model = rows[0]["model"] if rows else args.model  # the scenario's model (--model, or its config file's)
    # the valid_metric first, then the other test metrics the runs computed
    metrics = list(dict.fromkeys([f"test_{rows[0]['metric']}"] + [k for k in rows[0] if k.startswith("test_") and "@" in k]))
    if uses_patches(model):  # fine-tuning methods (PeterRec): the method x task table, each task's own metric
        tables, plotted = method_table(rows) + "\n\n" + method_paired_table(rows), None
    elif uses_shared_modules(model):  # one source, many targets (MMTNet): per target, macro, wall time
        tables = "\n\n".join([one_to_many_table(rows, metrics)] + [paired_table(rows, m) for m in metrics])
        plotted = metrics[0]
    else:
        tables = "\n\n".join([gain_table(rows, m) for m in metrics] + [paired_table(rows, metrics[0])])
        plotted = metrics[0]
    _print("\n" + tables + f"\n\ntotal wall time {time.time() - start:.0f}s")
    if args.output:
        _write_outputs(args.output, rows, tables)
        forest_plot(rows, args.output + ".png", plotted)
        _print(f"wrote {args.output}.json, {args.output}.md and {args.output}.png (paired gains, forest plot)")
    return 0


def _write_outputs(prefix, rows, tables):
    """``<prefix>.json`` (the rows) and ``<prefix>.md`` (the tables)."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with open(prefix + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f)
    if tables is not None:
        with open(prefix + ".md", "w", encoding="utf-8") as f:
            f.write(tables + "\n")


def run_search_cli(args, config_files, config_dict):
    from .scenario import default_scenario
    from .tune import SearchInterrupted, run_search, summary_table

    _quiet_logging()
    targets = _listish(config_dict.pop("targets", None)) or _listish(args.target)
    start = time.time()
    try:
        outcomes = run_search(
            args.model, args.source, targets, [default_scenario(args.model)] + config_files, config_dict,
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
    for out in outcomes:
        _print(f"\n{out['target']}: trials (validation only; test metrics of the winner below)\n\n{out['table']}")
    _print("\n" + summary_table(outcomes))
    for out in outcomes:
        if out["best_yaml"]:
            _print(f"{out['target']}: {out['best_yaml']}\n  reproduce: {out['command']}")
    _print(f"search directory {outcomes[0]['run_dir'] if outcomes else '-'}; total wall time {time.time() - start:.0f}s")
    return 0


def main(argv=None):
    # RecBole 1.2.1 on pandas 2.2 / torch 2.13 emits deprecation noise on every dataset and trainer.
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")
    args, extra = _parser().parse_known_args(argv)
    try:
        config_dict = parse_extra(extra)
        config_files = args.config_files.strip().split() if args.config_files else []
        if args.evaluate or args.importance:
            return _checkpoint_cli(args, config_dict)
        if args.show_periods:
            return _periods_cli(args, config_files, config_dict)
        if args.model == "SML":
            return _periodic_cli(args, config_files, config_dict)
        if args.tune or args.resume:
            return run_search_cli(args, config_files, config_dict)
        if args.scenario or args.target is None:
            return run_scenario_cli(args, config_files, config_dict)
        from .quick_start import run_transfer
        from .scenario import DEFAULT_SCENARIO, default_scenario

        if default_scenario(args.model) != DEFAULT_SCENARIO:  # its own domains and source, unless overridden
            config_files = [default_scenario(args.model)] + config_files
        result = run_transfer(args.model, args.source, args.target, config_files, config_dict)
        mode = f" ({result['transfer_mode']})" if result["trainable"] is None else ""
        _print(f"transfer={result['transfer']}{mode}  test: {dict(result['test_result'])}")
        if result["relatedness"] is not None:
            _print(f"KL relatedness R(source, target) = {result['relatedness']:.4f}")
        _print(f"model file: {result['model_file']}")
        return 0
    except TransferError as exc:
        print(f"run_recbole_transfer.py: error: {exc}", file=sys.stderr)
        return USAGE_EXIT


def _checkpoint_cli(args, config_dict):
    from .importance import importance_table, layer_importance
    from .quick_start import load_transfer_model
    from .trainer import TransferTrainer

    _quiet_logging()
    path = args.evaluate or args.importance
    config, model, _dataset, _train, valid, test = load_transfer_model(path, config_dict)
    if args.evaluate:
        result = TransferTrainer(config, model, stage="analysis").evaluate(test, load_best_model=False)
        _print(f"{os.path.basename(path)} on {config['dataset']}: test {dict(result)}")
    else:
        base, rows = layer_importance(config, model, valid)
        _print(importance_table(base, rows))
    return 0


def _periods_cli(args, config_files, config_dict):
    from recbole.data import create_dataset

    from .data.periods import check_period_args, dataset_periods, format_period_table, period_table
    from .quick_start import domain_config

    _quiet_logging()
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


def _periodic_cli(args, config_files, config_dict):
    """``--model=SML``: every method of ``retrain_methods`` over the periods of --dataset (default ml-100k)."""
    from .quick_start import domain_config
    from .trainer.periodic import check_periodic_config, period_table_of, plot_curves, run_periodic, table1

    if args.resume:
        raise TransferError("--resume with --model=SML: SML searches are not resumable; start a new --tune")
    if not args.verbose:
        _quiet_logging()
    dataset = args.target or "ml-100k"
    config = domain_config("SML", dataset, config_files, config_dict)
    methods = check_periodic_config(config)  # before the dataset is read
    check_output(args.output)
    start = time.time()
    if args.tune:  # choose SML's keys on the validation periods, then run every method with them
        from .tune.periodic import run_periodic_search

        found = run_periodic_search(config, args.search_space, args.num_samples, args.run_dir, args.ray_address,
                                    args.num_cpus, progress=_print)
        _print(f"\nSML trials (validation periods only)\n\n{found['table']}\n\nbest: {found['best_yaml']}\n"
               f"  reproduce: {found['command']}\n")
        config_dict = {**config_dict, **found["winner"]["params"]}
        config = domain_config("SML", dataset, config_files, config_dict)
    _print(f"recbole_transfer: periodic retraining of {config['sml_base']} on {config['dataset']}: "
           f"{config['periods']} periods ({config['period_by']}), last {config['test_periods']} tested; methods {methods}")
    rows = run_periodic(config, methods, progress=_print)
    tables = (f"Test periods (online: the model after period t-1 is tested on period t)\n\n{table1(rows)}\n\n"
              f"{period_table_of(rows)}")
    _print("\n" + tables + f"\n\ntotal wall time {time.time() - start:.0f}s")
    prefix = args.output or os.path.join("saved", "sml", f"{config['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}")
    _write_outputs(prefix, rows, tables)
    plot_curves(rows, prefix + ".png")
    _print(f"wrote {prefix}.json, {prefix}.md and {prefix}.png")
    return 0
