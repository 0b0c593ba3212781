"""What a search prints and writes: the trial table of a target, the summary over targets, a target's ``best.yaml``
(the winner's keys, with the command that reproduces it outside Ray) and the whole report (:func:`search_report`, what
``--tune --output`` writes), rebuilt from the outcomes alone."""

import os

import yaml

from ..keys import layered
from ..report import markdown
from .state import params_of, trial_seed


def trial_table(rows, metric, time_attr="epoch"):
    lines = [[row["index"] + 1, row["label"], f"{row['best_valid']:.4f}" if row["best_valid"] is not None else "-",
              row["best_epoch"] or "-", row["epochs"], "yes" if row["stopped_early"] else "no", row["ended"]] for row in rows]
    return markdown(["#", "configuration", f"best {metric}", f"best {time_attr}", f"{time_attr}s run", "stopped early",
                     "ended"], lines)


def summary_table(outcomes):
    metric = outcomes[0]["metric"] if outcomes else "valid"
    test_key = metric.replace("valid_neg_", "").replace("valid_", "")
    lines = []
    for out in outcomes:
        best = out["best"]
        scratch = f"{out['scratch_valid']:.4f}" if out["scratch_valid"] is not None else "-"
        test = out["test_result"].get(test_key)
        lines.append([out["target"], best["label"] if best else "-", f"{best['best_valid']:.4f}" if best else "-", scratch,
                      f"{test:.4f}" if best and test is not None else "-", out["trials"],
                      out["errors"], out["trial_epochs"]])
    return markdown(["target", "best configuration", f"best {metric}", f"scratch {metric}", f"test {test_key}", "trials",
                     "errors", "trial-epochs"], lines)


def write_best_yaml(method, path, state, target, row, metric, test, extra_keys):
    """``best.yaml`` of a target: the winner's keys (the search's, its trial's, its seed), headed by the command that
    reproduces it outside Ray. Returns that command."""
    params = params_of(row["config"])
    keys = {**layered(state.config_dict, params), "seed": trial_seed(state.seed, params, method), **extra_keys}
    keys["num_threads"] = state.num_threads
    files = " ".join(state.config_files + [path])
    source = f"--source={state.source} " if state.source else ""
    valid = row["best_valid"]
    command = (f"python run_recbole_transfer.py --model={state.model} {source}"
               f"--target={target} --config_files=\"{files}\"")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items()) or "see the comparison below"
    header = [
        f"# Best configuration for target {target!r}, chosen by Ray Tune on {metric} ({row['label']}).",
        f"# Search: {os.path.dirname(os.path.dirname(path))}; validation {metric} {valid:.4f}; test {shown}.",
        "# Reproduce outside Ray (same seed, same metrics):",
        f"#   {command}",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(header) + "\n" + yaml.safe_dump(keys, sort_keys=True))
    return command


def search_report(outcomes):
    """The text ``--tune`` prints and ``--output`` writes (``<output>.md``), from the outcomes alone (``<output>.json``):
    each target's trial table, the summary, each winner's ``best.yaml`` and reproduce command, and what the runner
    ran after the search."""
    parts = [f"{o['target']}: trials (validation only; test metrics of the winner below)\n\n{o['table']}" for o in outcomes]
    parts.append(summary_table(outcomes))
    parts += [f"{o['target']}: {o['best_yaml']}\n  reproduce: {o['command']}" for o in outcomes if o["best_yaml"]]
    if outcomes and outcomes[0].get("after"):
        parts.append(outcomes[0]["after"])
    return "\n\n".join(parts) + "\n"
