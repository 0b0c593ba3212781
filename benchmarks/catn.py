"""Benchmark: CATN against its baselines on cold-start users, on planted-aspect reviews and on the ml-100k
knowledge-graph documents.

Settings (each a domain pair under the cold-start protocol: half of the overlapping users are cold, 40 % of them
validate and 60 % test; a share eta of the other overlapping users keeps its target ratings):

- ``planted``: :func:`recbole_transfer.data.synthetic.write_planted_aspects` (400 users in both domains, 4 aspects,
  a planted source -> target aspect permutation, rating noise 0.2, strength 1.2), generated with the data seed;
- ``planted_strong``: a stronger, smaller planted pair (300 users, 60 items per domain, 3 aspects, noise 0.1,
  strength 2.0: the suite's planted test), added after the first runs of ``planted``;
- ``planted_strong_shuffled``: the same generator with ``shuffle_source=True``: every source review (and its rating)
  goes to a random other user, so nothing in a user's source document is hers. The control: transfer must not help;
- ``kg``: CATN's default scenario (``scenario.CATN.yaml``): ml-100k split by genre, documents made of each film's
  Freebase entities and the rating token (item content, not text users wrote).

Arms: CATN, EMCDR, CMF, global_mean, item_mean, item_mean_offset (the item mean plus the user's shrunk source
offset). Per (setting, seed, eta) every arm trains and is scored on one pair (one split, the same cold users and
ratings; the seed is the data seed, and each row keeps the pair's fingerprint). Keys are pre-declared, not chosen on
test: on kg those of ``scenario.CATN.yaml`` (the overlap family's lr 0.001, batch 2048 and patience 10 for every
arm; CATN CPU-sized, with batch 4096, lr 0.003 and the paper's patience 4); on the planted data those of ``KEYS``
below: batches of 64 (the domains are small) and, for CATN, learning rate 0.003, no dropout, at most 100 epochs and
patience 40. On planted data CATN stays at its item-mean start for a while (a plateau: 5 to 35 epochs in our probes
and first runs) before its validation RMSE drops; a first run with patience 15 stopped on the plateau in 2 of 3
seeds, so the patience was raised before this benchmark's rows were computed. Every arm selects its epoch on the
cold validation users' RMSE.

    OMP_NUM_THREADS=1 python benchmarks/catn.py                                  # every setting, 3 seeds, 5 etas
    OMP_NUM_THREADS=1 python benchmarks/catn.py --settings planted --seeds 2020 --etas 1.0 --out /tmp/c
    python benchmarks/catn.py --tables_from benchmarks/results/catn.json

Each finished (setting, seed) is kept in <out>.<setting>.seed<N>.json and reused by a rerun (two processes may run
different settings or seeds at once; a last run with all of them joins the parts). Writes <out>.json (the run
record and the rows: setting, model, eta, seed, rmse, mae, mse, seconds, per-user squared errors, ...) and <out>.md
(the tables, the paper's numbers as an anchor, and CATN's learned G against the planted permutation).
"""

import os
import sys
import time

import numpy as np
import torch
import yaml
from scipy.stats import spearmanr

from recbole_transfer.data.synthetic import write_planted_aspects
from recbole_transfer.request import Request
from recbole_transfer.registry import get_method
from recbole_transfer.report import markdown, mean_std, paired_vs

import _common as common

ARMS = ("item_mean_offset", "global_mean", "item_mean", "CMF", "EMCDR", "CATN")
SETTINGS = ("planted", "planted_strong", "planted_strong_shuffled", "kg")
ETAS = (1.0, 0.5, 0.2, 0.1, 0.05)
SEEDS = (2020, 2021, 2022)
# the generator's arguments per planted setting (the others: its defaults)
PLANTED = {"planted": {"n_users": 400, "noise": 0.2, "strength": 1.2},
           "planted_strong": {"n_users": 300, "n_items": (60, 60), "per_user": (10, 8), "n_aspects": 3, "noise": 0.1,
                              "strength": 2.0}}
PLANTED["planted_strong_shuffled"] = {**PLANTED["planted_strong"], "shuffle_source": True}
# Pre-declared keys per setting: every arm's, and CATN's own under model_keys (written as a config file after the
# scenario file, so that model_keys win over them). CATN's model keys reach the other arms too, where they mean
# nothing. The matrix-factorisation arms keep the overlap family's settings (lr 0.001, patience 10); on the small
# planted domains with batches of 64 (about 20 steps per epoch).
KEYS = {
    "planted": {"train_batch_size": 64, "learning_rate": 0.001, "stopping_step": 10, "epochs": 300,
                "aspects": 4, "aspect_dim": 32, "word_dim": 32, "conv_filters": 50, "max_doc_len": 150,
                "dropout_prob": 0.0, "model_keys": {"CATN": {"learning_rate": 0.003, "stopping_step": 40, "epochs": 100}}},
    # the generator's arguments and sizes of the suite's planted test (tests/test_catn.py: EASY, EASY_KEYS)
    "planted_strong": {"train_batch_size": 64, "learning_rate": 0.001, "stopping_step": 10, "epochs": 300,
                       "aspects": 3, "aspect_dim": 16, "word_dim": 16, "conv_filters": 32, "max_doc_len": 100,
                       "dropout_prob": 0.0,
                       "model_keys": {"CATN": {"learning_rate": 0.003, "stopping_step": 40, "epochs": 100}}},
    "kg": {},  # scenario.CATN.yaml's keys, as `run_recbole_transfer.py --model=CATN --scenario` runs them
}
KEYS["planted_strong_shuffled"] = KEYS["planted_strong"]
# the shuffled controls need CATN and the baselines that read no source (and the offset, which reads shuffled ratings)
SETTING_ARMS = {"planted_strong_shuffled": ("item_mean_offset", "item_mean", "CATN")}
# the paper's Table 3 (RMSE of CATN, eta 100 % .. 5 %): the authors' numbers on Amazon reviews, not ours
PAPER = {"Book -> Movie": (1.049, 1.072, 1.079, 1.093, 1.097), "Movie -> Music": (1.042, 1.075, 1.102, 1.126, 1.144),
         "Book -> Music": (0.862, 0.868, 0.875, 0.896, 0.899)}
KEPT = ("setting", "model", "arm", "eta", "seed", "data_seed", "fingerprint", "epochs", "seconds", "seconds_per_epoch",
        "valid_rmse", "rmse", "mae", "mse", "test_per_user", "test_users", "target")


def _request(setting, seed, etas, root):
    """The scenario request of one (setting, seed) and the planted permutation (None on kg)."""
    method = get_method("overlap_cdr")
    scenario = method.runner.scenario_files(method, "CATN")[0]
    keys = {"num_threads": 1, "scenario_protocols": ["cold_start"], "scenario_etas": list(etas)}
    if setting == "kg":
        return Request("CATN", None, None, [scenario], keys), None
    folder = os.path.join(root, f"{setting}-seed{seed}")
    pi = write_planted_aspects(folder, seed=seed, **PLANTED[setting])
    settings = os.path.join(folder, "benchmark_keys.yaml")
    with open(settings, "w", encoding="utf-8") as f:
        yaml.safe_dump(KEYS[setting], f)
    return Request("CATN", "asrc", ["atgt"], [scenario, settings],
                   {**keys, "data_path": folder, "protocol_dir": os.path.join(folder, "protocols")}), pi


def run_setting(setting, seed, etas, arms, root, progress):
    """Rows of one (setting, seed): CATN's scenario (every arm at every eta, one pair per eta), plus CATN's G and,
    on planted data, its aspects named by the planted words they attend to."""
    method = get_method("overlap_cdr")
    request, pi = _request(setting, seed, etas, root)
    arms = [a for a in arms if a in SETTING_ARMS.get(setting, arms)]

    def measure(row, instance, pair):
        if row["arm"] != "CATN":
            return
        row["G"] = instance.correlation().tolist()
        if pi is not None:
            row["planted_pi"] = [int(p) for p in pi]
            vocab = pair.links.documents.vocab
            row["aligned_source"] = planted_alignment(instance.aspect_mass("user", "source"), vocab, "s")
            row["aligned_target"] = planted_alignment(instance.aspect_mass("item", "target"), vocab, "t")

    def show(text):
        progress(f"{setting}: {text}")

    rows = method.runner.scenario(method, request, arms, [seed], progress=show, on_run=measure)
    extra = ("G", "planted_pi", "aligned_source", "aligned_target")
    return [{**{k: row[k] for k in KEPT + extra if k in row}, "setting": setting, "model": row["trained"],
             "target": f"{setting} eta={row['eta']:g}", **{k[5:]: row[k] for k in ("test_rmse", "test_mae", "test_mse")}}
            for row in rows]


def planted_alignment(mass, vocab, prefix):
    """Per learned aspect: the planted aspect whose words (``<prefix><a>_<j>``) take most of its attention mass."""
    planted = np.full(len(vocab), -1)
    for index, word in enumerate(vocab):
        head, _, tail = str(word).partition("_")
        if head[:1] == prefix and head[1:].isdigit() and tail.isdigit():
            planted[index] = int(head[1:])
    per_aspect = np.zeros((mass.shape[0], planted.max() + 1))
    for a in range(planted.max() + 1):
        per_aspect[:, a] = mass[:, torch.as_tensor(planted == a)].sum(1).numpy()
    return per_aspect.argmax(1).tolist()


def recovery(rows):
    """Per planted CATN row: does the learned G recover the planted aspect correspondence? Each learned source aspect
    is named by the planted source aspect whose words take most of its attention in the users' source documents, each
    learned target aspect by the planted target aspect that dominates its attention in the items' target documents;
    the planted correspondence of a learned pair (m, n) is 1 when the planted permutation maps m's aspect to n's, else
    0. Spearman's rank correlation between G and that 0/1 matrix over the M x M cells (NaN when it is constant, e.g.
    every learned aspect attends to one planted aspect)."""
    out = []
    for row in rows:
        if row["arm"] != "CATN" or "aligned_source" not in row:
            continue
        pi, src, tgt = row["planted_pi"], row["aligned_source"], row["aligned_target"]
        planted = np.array([[1.0 if pi[a] == b else 0.0 for b in tgt] for a in src])
        g = np.asarray(row["G"])
        rho = float(spearmanr(g.ravel(), planted.ravel())[0]) if planted.min() < planted.max() else float("nan")
        out.append({"setting": row["setting"], "seed": row["seed"], "eta": row["eta"], "spearman": rho,
                    "aspects_found": len(set(src)) + len(set(tgt)), "rmse": row["rmse"]})
    return out


def summary(rows):
    """Two compact tables: cold-user test RMSE per setting, arm and eta (mean ± std over seeds), and CATN's paired
    difference in MSE per user to each baseline."""
    etas = sorted({r["eta"] for r in rows}, reverse=True)
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    lines, paired = [], []
    for setting in settings:
        for arm in [a for a in ARMS if any(r["setting"] == setting and r["arm"] == a for r in rows)]:
            cells = [[r["rmse"] for r in rows if r["setting"] == setting and r["arm"] == arm and r["eta"] == eta]
                     for eta in etas]
            lines.append([setting, arm] + [mean_std(c, "{:.3f}") if c else "-" for c in cells])
            if arm == "CATN":
                continue
            scoped = [r for r in rows if r["setting"] == setting]
            diffs = [paired_vs(scoped, "CATN", arm, "test_mse", [f"{setting} eta={eta:g}"]) for eta in etas]
            paired.append([setting, f"CATN - {arm}"] + [d.cell() if d else "-" for d in diffs])
    header = [f"eta {eta:g}" for eta in etas]
    return ("Cold users' test RMSE, mean ± std over seeds\n\n" + markdown(["setting", "arm"] + header, lines)
            + "\n\nCATN minus each arm, MSE per user (bootstrap 95 % interval over the tested users of all seeds; * "
            "excludes 0; negative: CATN better). The interval is over users given the seeds' runs: it does not cover "
            "the seed-to-seed spread of CATN's training (the std above)\n\n"
            + markdown(["setting", "difference"] + header, paired))


def tables(rows):
    parts = [summary(rows)]
    for setting in [s for s in SETTINGS if any(r["setting"] == s for r in rows)]:
        scoped = [r for r in rows if r["setting"] == setting]
        arms = [a for a in ARMS if any(r["arm"] == a for r in scoped)]
        lines = []
        for eta in sorted({r["eta"] for r in scoped}, reverse=True):
            label = f"{setting} eta={eta:g}"
            for arm in arms:
                group = [r for r in scoped if r["eta"] == eta and r["arm"] == arm]
                if not group:
                    continue
                cells = [mean_std([r[m] for r in group]) for m in ("rmse", "mae", "mse")]
                paired = []
                for base in ("item_mean_offset", "EMCDR", "item_mean"):
                    diff = paired_vs(scoped, "CATN", base, "test_mse", [label]) if arm == "CATN" and base in arms else None
                    paired.append(diff.cell() if diff else "-")
                lines.append([f"{eta:g}", arm, len(group)] + cells + paired
                             + [f"{np.mean([r['epochs'] for r in group]):.0f}", f"{np.mean([r['seconds'] for r in group]):.0f}"])
        parts.append(f"Setting {setting}: cold users' test metrics, mean ± std over seeds; paired = CATN minus the arm in "
                     "MSE per user (each user id's difference averaged over the seeds that tested it, bootstrap 95 % "
                     "interval over users; * excludes 0; negative: CATN better; on the planted settings every seed "
                     "generates new users, so a user id of two seeds is two people)\n\n"
                     + markdown(["eta", "arm", "seeds", "rmse", "mae", "mse", "CATN - item_mean_offset", "CATN - EMCDR",
                                 "CATN - item_mean", "epochs", "s"], lines))
    rec = recovery(rows)
    if rec:
        lines = [[r["setting"], f"{r['eta']:g}", r["seed"], f"{r['rmse']:.4f}", r["aspects_found"],
                  "nan" if np.isnan(r["spearman"]) else f"{r['spearman']:+.3f}"] for r in rec]
        parts.append("CATN's learned G against the planted aspect correspondence, per run: learned aspects named by the "
                     "planted aspect that dominates their attention (source: users' source documents; target: items' "
                     "target documents); `planted aspects found` counts the distinct planted aspects named, source + "
                     "target (at most 2 M); Spearman's rank correlation between G and the planted 0/1 correspondence "
                     "of the named pairs (nan: the correspondence is constant)\n\n"
                     + markdown(["setting", "eta", "seed", "CATN rmse", "planted aspects found", "spearman(G, planted)"],
                                lines))
    parts.append("Anchor, NOT our measurement: the paper's CATN RMSE (Table 3; Amazon reviews, eta 100 / 50 / 20 / 10 / "
                 "5 %)\n\n" + markdown(["scenario", "100%", "50%", "20%", "10%", "5%"],
                                      [[k] + [f"{v:.3f}" for v in vals] for k, vals in PAPER.items()]))
    return "\n\n".join(parts)


def report(saved):
    """The results file's Markdown, from the saved rows and run record alone."""
    rows, run = saved["rows"], saved["run"]
    return (f"# CATN benchmark\n\nCommand: `OMP_NUM_THREADS=1 python benchmarks/catn.py {run.get('argv', command_of(rows))}`"
            f" (python {run['python']}, torch {run['torch']}, {run['threads']} thread; {common.number(run.get('wall_s'))}s "
            "this run, parts reused)\n\n" + tables(rows) + "\n")


def command_of(rows):
    """The arguments that measure ``rows`` (an older results file did not keep its command line): none for the
    defaults."""
    values = {"settings": [s for s in SETTINGS if any(r["setting"] == s for r in rows)],
              "seeds": sorted({r["seed"] for r in rows}), "etas": sorted({r["eta"] for r in rows}, reverse=True),
              "arms": [a for a in ARMS if any(r["arm"] == a for r in rows)]}
    defaults = {"settings": list(SETTINGS), "seeds": list(SEEDS), "etas": list(ETAS), "arms": list(ARMS)}
    return " ".join(f"--{k} {' '.join(f'{v:g}' if k == 'etas' else str(v) for v in vs)}"
                    for k, vs in values.items() if vs != defaults[k])


def main(argv=None):
    p = common.parser("catn", __doc__, seeds=SEEDS)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--etas", nargs="+", type=float, default=list(ETAS))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--data_root", default=os.path.join("saved", "catn_benchmark"), help="generated planted domains")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    progress = lambda text: print(text, flush=True)  # noqa: E731
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    start = time.time()
    rows = []
    for setting in args.settings:
        for seed in args.seeds:
            rows += common.part(f"{args.out}.{setting}.seed{seed}.json",
                                lambda: run_setting(setting, seed, args.etas, args.arms, args.data_root, progress), progress)
    argv = " ".join(sys.argv[1:] if argv is None else argv)
    saved = {"run": common.record(args.threads, wall_s=time.time() - start, argv=argv), "rows": rows}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
