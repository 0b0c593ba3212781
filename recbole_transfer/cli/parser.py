"""The command line's grammar: its flags (every registered method's scenario arms and analyses among them), and the
``--key=value`` arguments that become config keys, converted as RecBole converts them, plus YAML's flow lists."""

import argparse
import importlib
import os

import yaml
from recbole.config import Config

from .. import keys, registry
from ..errors import TransferError
from ..utils import listish

USAGE_EXIT = 2


def build_parser():
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
    p.add_argument("--workers", type=int, default=None, help="scenario: run its (seed, arm) units as Ray tasks on a "
                   "local Ray of this many CPUs (with --ray_address: at most this many at once on that cluster); "
                   "leaderboard: run its arms at once, their trials sharing those CPUs; the same rows as one after another")
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
    t.add_argument("--ray_address", default=None, help="join this Ray cluster (default: a local Ray on all cores); "
                   "--scenario and --leaderboard: run their units there at once")
    t.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray (default: all cores)")
    t.add_argument("--run_dir", default=None, help="directory of the search (default: <tune_dir>/<timestamp>)")
    t.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted search")
    b = p.add_argument_group("leaderboard (every family's scenario, every arm tuned with the same trials)")
    b.add_argument("--leaderboard", action="store_true", help="run each family's trimmed default scenario (its "
                   "leaderboard.yaml): baselines and transfer arms, each tuned on validation with --budget trials through "
                   "Ray Tune; per scenario the best transfer against the best baseline, paired on test; with --output=P "
                   "writes P.json, P.md and P.png. --seeds: data seeds (default one); --arms: only these arms")
    b.add_argument("--families", default=None, help="leaderboard families (method names), e.g. \"[family_a,family_b]\" (default: all "
                   "that ship a leaderboard.yaml)")
    b.add_argument("--budget", type=int, default=None, help="leaderboard: trials per arm (default: each family's budget)")
    b.add_argument("--leaderboard_plan", metavar="FILE", default=None, help="leaderboard: this plan instead of the family's "
                   "leaderboard.yaml (a copy of it, edited; give one family with --families)")
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
    args, extra = build_parser().parse_known_args(argv)
    return args, parse_extra(extra)


def parse_seeds(value):
    """``--seeds="[2020,2021]"`` (or ``2020,2021``) to integers; anything else is an error."""
    if value is None:
        return None
    seeds = listish(value)
    if not seeds or not all(s.lstrip("-").isdigit() and int(s) >= 0 for s in seeds):
        raise TransferError(f"--seeds={value!r}: expected non-negative integers, e.g. --seeds=\"[2020,2021,2022]\"")
    seeds = [int(s) for s in seeds]
    twice = next((s for s in seeds if seeds.count(s) > 1), None)
    if twice is not None:
        raise TransferError(f"--seeds={value!r}: seed {twice} given twice (each seed is one paired replicate)")
    return seeds


def import_modules(argv):
    """``--import=a,b``: import the modules that register methods defined outside the package, before the parser
    lists the methods."""
    found = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    found.add_argument("--import", dest="imports", default=None)
    names = listish(found.parse_known_args(argv)[0].imports) or []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TransferError(f"--import={name!r}: cannot import it ({exc})") from None
