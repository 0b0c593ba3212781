"""Every results Markdown a benchmark script writes is rebuilt from its JSON alone, byte for byte.

For each ``benchmarks/results/<name>.md``, ``benchmarks/<name>.py --tables_from benchmarks/results/<name>.json``
runs in this process (the script's ``main``, stdout captured) and must print exactly the committed file: a change to
a table function, or a results file edited by hand, fails here. Every results Markdown must have such a rebuild,
the two written by the command line included (a search's report, rebuilt from its outcomes). No training; the whole
file takes a few seconds.
"""

import contextlib
import importlib.util
import io
import os
import re
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
RESULTS = os.path.join(BENCHMARKS, "results")

# results/<name>.md -> the script that writes it (with results/<name>.json)
SCRIPTS = {name: f"{name}.py" for name in (
    "catn", "catn_speed", "headline", "layer_importance", "layer_transfer", "leaderboard", "mmtnet_transfer", "overlap_cdr", "peterrec_transfer",
    "planted_transfer", "protocol_speed", "recbole_parity", "scale", "sml_retraining", "trainer_overhead", "tune_transfer")}

# written by the command line (`run_recbole_transfer.py --tune ... --output=benchmarks/results/<name>`): its .md is
# recbole_transfer.tune.search_report of the outcomes in its .json
CLI_WRITTEN = {"sml_tune", "overlap_tune"}

# Values these committed .md files hold that their JSON does not keep: the JSON was written before it kept a run
# record (machine facts come from _common.LEGACY), and a rebuild prints "?" for each: (pattern, what the rebuild
# prints, how many). An entry goes when its benchmark is rerun.
NOT_IN_JSON = {
    "protocol_speed": [(r"seed \d+;", "seed ?;", 1),  # its rows do not say the seed
                       (r"Profile \(cProfile.*", "?", 1)],  # the profile of a cached validation
}

sys.path.insert(0, BENCHMARKS)  # the scripts import _common from there
import _common  # noqa: E402


def _script(name):
    """The benchmark script ``name`` as a module."""
    module = sys.modules.get(f"benchmark_{name}")
    if module is None:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", os.path.join(BENCHMARKS, SCRIPTS[name]))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[spec.name] = module
    return module


def _saved(name):
    return _common.load(os.path.join(RESULTS, f"{name}.json"))


def _rebuilt(name):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _script(name).main(["--tables_from", os.path.join(RESULTS, f"{name}.json")]) == 0
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(CLI_WRITTEN))
def test_a_search_report_is_rebuilt_from_its_outcomes(name):
    import json

    from recbole_transfer.tune import search_report

    with open(os.path.join(RESULTS, f"{name}.json"), encoding="utf-8") as f:
        outcomes = json.load(f)
    with open(os.path.join(RESULTS, f"{name}.md"), encoding="utf-8") as f:
        assert search_report(outcomes) == f.read()


def test_every_results_markdown_has_a_rebuild():
    written = {os.path.splitext(f)[0] for f in os.listdir(RESULTS) if f.endswith(".md")}
    assert written - CLI_WRITTEN == set(SCRIPTS), "a results .md without a rebuild here, or a rebuild without its .md"
    for name, script in SCRIPTS.items():
        assert os.path.isfile(os.path.join(BENCHMARKS, script)) and os.path.isfile(os.path.join(RESULTS, f"{name}.json"))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_tables_from_prints_the_committed_markdown(name):
    with open(os.path.join(RESULTS, f"{name}.md"), encoding="utf-8") as f:
        expected = f.read()
    for pattern, printed, count in NOT_IN_JSON.get(name, []):
        expected, found = re.subn(pattern, printed, expected)
        assert found == count, f"{name}.md: {pattern!r} found {found} times, not {count}"
    assert _rebuilt(name) == expected


@pytest.mark.parametrize("name", sorted(NOT_IN_JSON))
def test_only_older_results_files_miss_values(name):
    """A results JSON written by the current scripts keeps its run record: then its entry in NOT_IN_JSON must go."""
    assert _saved(name)["run"].get("legacy")


def test_headline_is_up_to_date_with_the_results_files():
    """headline.json holds what headline.py computes from the other results files now."""
    assert _script("headline").headline_rows() == _saved("headline")["rows"], "rerun python benchmarks/headline.py"
