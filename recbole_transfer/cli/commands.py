"""Command line of recbole_transfer (``run_recbole_transfer.py`` and the ``recbole-transfer`` script).

Every command runs the model's method (:mod:`recbole_transfer.registry`): its default scenario file is in effect
(its domains, source and targets; your --config_files and --key=value arguments override it), its runner runs
the command, its tables print the results. This module never names a method.
"""

import logging
import os
import sys
import time

from .. import registry
from ..errors import TransferError
from ..logs import quiet_logging, quiet_recbole_warnings, recbole_logging, watch
from ..request import Request
from ..utils import listish
from .outputs import check_output, write_rows, write_search
from .parser import USAGE_EXIT, build_parser, import_modules, parse_extra, parse_seeds
from .views import amazon_cli, checkpoint_cli, overlap_cli, periods_cli


def _print(msg):
    print(msg, flush=True)


def main(argv=None):
    """The command line (run_recbole_transfer.py): the command, watched so that it never stays silent for longer than
    :data:`~recbole_transfer.logs.EVERY_S` seconds (:func:`~recbole_transfer.logs.watch`)."""
    with watch(logging.getLogger("recbole_transfer")):
        return _main(argv)


def _main(argv=None):
    quiet_recbole_warnings()
    try:
        import_modules(argv if argv is not None else sys.argv[1:])
    except TransferError as exc:
        print(f"run_recbole_transfer.py: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    args, extra = build_parser().parse_known_args(argv)  # argparse's own errors exit 2 with its usage line
    try:
        config_dict = parse_extra(extra)
        config_files = args.config_files.strip().split() if args.config_files else []
        analysis = next((name for name in sorted({a for m in registry.methods() for a in m.analyses})
                         if getattr(args, name, None)), None)
        if args.leaderboard:
            return run_leaderboard_cli(args, config_dict, config_files)
        if (args.workers is not None or args.ray_address is not None) and (args.evaluate or analysis or args.show_periods
                                                                            or args.show_overlap):
            raise TransferError("--workers / --ray_address: give --scenario or --leaderboard (or --tune for --ray_address) with them")
        if args.evaluate or analysis:
            return checkpoint_cli(args, analysis, config_dict)
        if args.show_periods:
            return periods_cli(args, config_files, config_dict)
        if args.show_overlap:
            return overlap_cli(args, config_files, config_dict)
        if args.families is not None or args.budget is not None or args.leaderboard_plan is not None:
            raise TransferError("--families / --budget / --leaderboard_plan: give --leaderboard with them")
        if args.data == "amazon":
            args.source, args.target = amazon_cli(args, config_dict)
        elif args.source_file or args.target_file:
            raise TransferError("--source_file / --target_file: give --data=amazon with them")
        targets = listish(config_dict.pop("targets", None)) or listish(args.target)
        request = Request.command(args.model, args.source, targets, config_files, config_dict)
        method, runner = request.method, request.method.runner
        if args.tune or args.resume:
            if args.workers is not None:
                raise TransferError("--workers: a search runs its trials on Ray already (--num_cpus sets its CPUs)")
            return run_search_cli(args, method, request)
        if args.scenario or not runner.single_run or (args.target is None and runner.scenario_without_target):
            return run_scenario_cli(args, method, request)
        if args.workers is not None or args.ray_address is not None:
            raise TransferError("--workers / --ray_address: give --scenario or --leaderboard (or --tune for --ray_address) with them")
        request = request.for_target(request.target)  # one run: the first target
        recbole_logging(request.keys, request.target)
        _result, text = runner.run(method, request, _print)
        _print(text)
        return 0
    except TransferError as exc:
        print(f"run_recbole_transfer.py: error: {exc}", file=sys.stderr)
        return USAGE_EXIT


def run_scenario_cli(args, method, request):
    runner = method.runner
    if not args.verbose:
        quiet_logging()
    seeds = parse_seeds(args.seeds)
    if args.arms is not None and not listish(args.arms):
        raise TransferError(f"--arms={args.arms!r}: no arm given; e.g. --arms=\"[{','.join(method.arms[:2])}]\"")
    output = args.output or runner.default_output(request)
    check_output(output)
    start = time.time()
    _print("recbole_transfer: scenario of method " + method.name + " (" + " ".join(os.path.basename(f) for f in request.config_files) + ")")
    if args.workers is not None or args.ray_address is not None:
        from ..pipeline.parallel import run_parallel

        if args.verbose:
            raise TransferError("--verbose: the units of --workers / --ray_address log to their Ray workers; run without")
        rows = run_parallel(method, request, listish(args.arms), seeds, args.workers, args.ray_address, progress=_print)
    else:
        rows = runner.scenario(method, request, listish(args.arms), seeds, progress=_print, verbose=args.verbose)
    if output:  # the runs first: a table that cannot be built must not lose them
        write_rows(output, rows, None)
    tables, plotted = runner.tables(method, rows)
    _print("\n" + tables + f"\n\ntotal wall time {time.time() - start:.0f}s")
    if output:
        write_rows(output, rows, tables)
        runner.plot(method, rows, output + ".png", plotted)
        written = [f"{output}.{ext}" for ext in ("json", "md", "png") if os.path.isfile(f"{output}.{ext}")]
        _print(f"wrote {', '.join(written)}")
    return 0


def run_search_cli(args, method, request):
    from ..tune import SearchInterrupted, run_search, search_report

    quiet_logging()
    check_output(args.output)
    start = time.time()
    try:
        outcomes = run_search(
            search_space=args.search_space, num_samples=args.num_samples, ray_address=args.ray_address,
            run_dir=args.run_dir, resume=args.resume, num_cpus=args.num_cpus, progress=_print, request=request,
        )
    except SearchInterrupted as exc:
        print(f"run_recbole_transfer.py: interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        where = args.resume or args.run_dir or "<the search directory printed above>"
        print(f"run_recbole_transfer.py: interrupted; continue with --resume={where}", file=sys.stderr)
        return 130
    _print("\n" + search_report(outcomes).rstrip("\n"))
    _print(f"search directory {outcomes[0]['run_dir'] if outcomes else '-'}; total wall time {time.time() - start:.0f}s")
    if args.output:  # the search's outcomes (every trial row, the winner, its test metrics) and the printed tables
        write_search(args.output, outcomes)
        _print(f"wrote {args.output}.json and {args.output}.md")
    return 0


# what --leaderboard reads; any other flag given with it is refused, never ignored
LEADERBOARD_FLAGS = frozenset({"leaderboard", "families", "budget", "leaderboard_plan", "seeds", "arms", "output",
                               "num_cpus", "workers", "ray_address", "imports"})


def run_leaderboard_cli(args, config_dict, config_files):
    from ..tune.leaderboard import leaderboard_report, run_leaderboard

    defaults = build_parser()
    ignored = [f"--{k}" for k in config_dict] + [
        f"--{name}" for name, value in vars(args).items()
        if name not in LEADERBOARD_FLAGS and value != defaults.get_default(name)]
    if ignored:
        raise TransferError(f"--leaderboard: {', '.join(ignored)} not taken; each family's scenario and its "
                            "leaderboard.yaml say what runs (--leaderboard_plan=<an edited copy> to change it); "
                            f"the leaderboard takes --{', --'.join(sorted(LEADERBOARD_FLAGS - {'leaderboard', 'imports'}))}")
    if args.budget is not None and args.budget < 1:
        raise TransferError(f"--budget={args.budget}: must be >= 1 (trials per arm)")
    families = listish(args.families)
    if args.families is not None and not families:
        raise TransferError(f"--families={args.families!r}: no family given")
    if args.arms is not None and not listish(args.arms):
        raise TransferError(f"--arms={args.arms!r}: no arm given")
    plan_files = None
    if args.leaderboard_plan is not None:
        if len(families or []) != 1:
            raise TransferError("--leaderboard_plan: give the one family it is a plan of (--families=<name>)")
        if not os.path.isfile(args.leaderboard_plan):
            raise TransferError(f"--leaderboard_plan={args.leaderboard_plan!r}: no such file")
        plan_files = {families[0]: args.leaderboard_plan}
    quiet_logging()
    check_output(args.output)
    start = time.time()
    rows = run_leaderboard(families, parse_seeds(args.seeds), args.budget, listish(args.arms),
                           args.output, progress=_print, num_cpus=args.num_cpus, plan_files=plan_files,
                           workers=args.workers, ray_address=args.ray_address)
    _print("\n" + leaderboard_report(rows) + f"\n\ntotal wall time {time.time() - start:.0f}s")
    if args.output:
        _print(f"wrote {', '.join(f'{args.output}.{e}' for e in ('json', 'md', 'png') if os.path.isfile(f'{args.output}.{e}'))}")
    return 0
