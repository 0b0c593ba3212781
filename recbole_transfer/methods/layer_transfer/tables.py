"""The layer-transfer paper's Table 3 shape: target x configuration, % gain over scratch."""

import numpy as np

from ...report import markdown, mean_by, paired_vs, rows_by_key, short_name, validation_picks
from ...stats import paired_strata, paired_users
from ...transfer import NO_TRANSFER


def _pick_label(picks):
    names = [p["arm"] for p in picks.values()]
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    return " ".join(n if c == len(names) else f"{n} ({c}/{len(names)})" for n, c in counts.items())


def gain_table(rows, metric="test_hit@10"):
    """Text table: target x arm gain (%) over scratch (``*``: paired 95 % interval excludes 0), the
    validation-selected arm per seed (its test score and paired difference), the test-selected arm per seed
    (an ORACLE: an upper bound on any per-seed choice, not a finding), KL relatedness."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != NO_TRANSFER]
    means = mean_by(rows, ("target", "arm"), metric)
    kl = mean_by([r for r in rows if r["relatedness"] is not None], ("target",), "relatedness")
    seeds = len(set(r["seed"] for r in rows))
    short = short_name(metric)
    header = ["target", f"scratch {short}"] + arms + ["valid-selected arm", f"its {short}", "its paired diff [95% CI]",
                                                      "oracle arm (test-selected)", f"oracle {short}", "KL(S||T)"]
    by = rows_by_key(rows)
    lines = []
    for target in targets:
        base = means.get((target, NO_TRANSFER))
        cells = [target, f"{base:.4f}" if base is not None else "-"]
        for arm in arms:
            value = means.get((target, arm))
            if value is None or not base:
                cells.append("-")
                continue
            diff = paired_vs(rows, arm, NO_TRANSFER, metric, [target])
            cells.append(f"{100.0 * (value - base) / base:+.1f}{'*' if diff and diff.excludes_zero else ''}")
        picks = validation_picks(rows, target)
        picked = float(np.mean([p.get(metric, np.nan) for p in picks.values()]))
        diff = paired_strata([[paired_users(p, by[(s, target, NO_TRANSFER)], metric) for s, p in picks.items()
                               if (s, target, NO_TRANSFER) in by]])
        diff = diff.cell() if diff else "-"
        oracle = validation_picks(rows, target, key=metric)  # per seed, the best test score: a bound on any pick
        cells += [_pick_label(picks), f"{picked:.4f}", diff, _pick_label(oracle),
                  f"{np.mean([p.get(metric, np.nan) for p in oracle.values()]):.4f}", f"{kl.get((target,), float('nan')):.3f}"]
        lines.append(cells)
    title = (f"Gain (%) of {short} over scratch (test, mean of {seeds} seed{'s' if seeds > 1 else ''}; * = paired 95 % "
             f"interval excludes 0); transfer_mode={rows[0]['mode'] if rows else '-'}. Both selections pick per seed; the "
             "oracle picks on TEST: an upper bound on any per-seed choice, not a finding")
    return title + "\n\n" + markdown(header, lines, str.rjust)
