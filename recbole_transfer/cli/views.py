"""Commands of the command line that look at data or a checkpoint instead of training: ``--evaluate`` and a method's
analyses of a checkpoint, ``--show_periods``, ``--show_overlap``, and ``--data=amazon`` (review files to domains)."""

import os


from .. import registry
from ..config import recbole_errors
from ..data.amazon import write_amazon_pair
from ..data.pairs import overlap
from ..data.periods import check_period_args, dataset_periods, format_period_table, period_table
from ..errors import TransferError
from ..logs import quiet_logging
from ..pipeline import evaluate_checkpoint, load_transfer_model
from ..pipeline.two_stage import read_dataset
from ..request import domain_config
from ..trainer import load_checkpoint


def _print(msg):
    print(msg, flush=True)


def checkpoint_cli(args, analysis, config_dict):
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


def amazon_cli(args, config_dict):
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


def overlap_cli(args, config_files, config_dict):
    """``--show_overlap --source=A --target=B``: the pair's overlap table (raw tokens aligned)."""
    quiet_logging()
    if not args.source or not args.target:
        raise TransferError("--show_overlap: give both domains, --source=<name> --target=<name>")
    field = config_dict.pop("overlap_field", None)
    datasets = []
    for key, name in (("source", args.source), ("target", args.target)):
        config = domain_config(args.model or "Popularity", name, config_files, config_dict, key=key)
        with recbole_errors(config, key):
            datasets.append(read_dataset(config))
    source, target = datasets
    found = overlap(source, target, field or source.uid_field)
    for key, dataset in (("source", source), ("target", target)):
        _print(f"{key} {dataset.dataset_name}: {dataset.user_num - 1} users, {dataset.item_num - 1} items, "
               f"{dataset.inter_num} interactions")
    _print("\n" + found.table(args.source, args.target))
    if not found.both:
        raise TransferError(f"--show_overlap: {args.source!r} and {args.target!r} share no {found.field} token")
    return 0


def periods_cli(args, config_files, config_dict):
    quiet_logging()
    if args.target is None:
        raise TransferError("--show_periods: give the dataset with --dataset=<name>")
    # raw timestamps, for dates in the table (RecBole's ml-100k.yaml min-max normalises every float field)
    raw_time = None if {"normalize_all", "normalize_field"} & set(config_dict) else {"normalize_all": False}
    config = domain_config(args.model or "Popularity", args.target, config_files, config_dict, overrides=raw_time)
    check_period_args(config["periods"], config["period_by"])  # before the dataset is read
    dataset = read_dataset(config)
    period = dataset_periods(dataset, config["periods"], config["period_by"])
    feat = dataset.inter_feat
    rows = period_table(feat[dataset.uid_field].to_numpy(), feat[dataset.iid_field].to_numpy(),
                        feat[dataset.time_field].to_numpy(), period)
    _print(f"{config['dataset']}: {len(feat)} interactions in {config['periods']} periods (period_by={config['period_by']})\n")
    _print(format_period_table(rows))
    return 0
