"""Benchmark: CATN against its baselines on cold-start users, on planted-aspect reviews and on the ml-100k
knowledge-graph documents.

Settings (each a domain pair under the cold-start protocol: half of the overlapping users are cold, 40 % of them
validate and 60 % test; a share eta of the other overlapping users keeps its target ratings):

- ``planted``: :func:`recbole_transfer.data.synthetic.write_planted_aspects` (400 users in both domains and 200 in
  the target only, 4 aspects, a planted source -> target aspect permutation, rating noise 0.2, strength 1.2),
  generated with the data seed;
- ``planted_shuffled``: the ``planted`` generator with ``shuffle_source=True`` (see ``planted_strong_shuffled``): the
  control of ``planted``, added with the new recipe's reruns;
- ``planted_strong``: a stronger, smaller planted pair (300 users in both domains and 150 in the target only, 60
  items per domain, 3 aspects, noise 0.1, strength 2.0: the suite's planted test's generator), added after the first
  runs of ``planted``. The target-only users keep the target items' documents full when few overlapping users keep
  their target rows (without them the items' documents named 1.9 of 3 aspects at eta 0.05);
- ``planted_strong_shuffled``: the same generator with ``shuffle_source=True``: every source review (and its rating)
  goes to a random other user, so nothing in a user's source document is hers. The control: transfer must not help;
- ``planted_strong_released``: the ``planted_strong`` pair, CATN alone (and the item mean) trained as the authors'
  released code trains it: both flows on the overlapping users who keep target rows only (``stages:
  [joint_overlap]``) and source batches in proportion to the two training sets (``source_batch: proportional``); a
  table pairs it per user with CATN's defaults on the same pairs;
- ``kg``: CATN's default scenario (``scenario.CATN.yaml``): ml-100k split by genre, documents made of each film's
  Freebase entities and the rating token (item content, not text users wrote).

Arms: CATN, EMCDR, CMF, global_mean, item_mean, item_mean_offset (the item mean plus the user's shrunk source
offset). CATN runs with its file's defaults (``CATN.yaml``: softplus G, the in-domain flows, no early stop before 300
steps; the recipe each CATN row keeps). Two ceilings on the planted settings, computed on the same pair and cold
users (:func:`oracle_rows`): ``oracle_bilinear``, the item mean plus p^T W q on aspects decoded from the user's
source document and the item's target document with a bilinear W fitted on the warm users' target ratings, and
``oracle_true_ridge``, per target item a ridge on the users' TRUE planted preferences; a table gives the share of
the gap between the item mean and ``oracle_bilinear`` that CATN closes. Per (setting, seed, eta) every arm trains and is scored on one pair (one split, the same cold users and
ratings; the seed is the data seed, and each row keeps the pair's fingerprint). Keys are pre-declared, not chosen on
test: on kg those of ``scenario.CATN.yaml`` (the overlap family's lr 0.001, batch 2048 and patience 10 for every
arm; CATN CPU-sized, with batch 4096, lr 0.003 and the paper's patience 4); on the planted data those of ``KEYS``
below: batches of 64 (the domains are small) and, for CATN, learning rate 0.003, no dropout, at most 100 epochs and
patience 40. On planted data CATN stays at its item-mean start for a while (a plateau: 5 to 35 epochs in our probes
and first runs) before its validation RMSE drops; a first run with patience 15 stopped on the plateau in 2 of 3
seeds, so the patience was raised before this benchmark's rows were computed. Every arm selects its epoch on the
cold validation users' RMSE.

    OMP_NUM_THREADS=1 python benchmarks/catn.py                                  # every setting, 3 seeds, 5 etas
    OMP_NUM_THREADS=1 python benchmarks/catn.py --settings planted_strong --training_seeds 2   # 2 training seeds each
    OMP_NUM_THREADS=1 python benchmarks/catn.py --settings planted --seeds 2020 --etas 1.0 --out /tmp/c
    python benchmarks/catn.py --tables_from benchmarks/results/catn.json

Each CATN run's validation curve starts with the untrained model (epoch 0): a table counts the runs that left that
start (validation RMSE 0.02 below it) within 5 epochs. ``--training_seeds K`` trains every arm of a data seed N
with the seeds N, N + 1000, ... (K of them) on the same pair.

Each finished (setting, seed, training seed) is kept in <out>.<setting>.seed<N>[.model<M>].json and reused by a rerun (two processes may run
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

from recbole_transfer.data.synthetic import PLANTED_QUALITIES, PLANTED_TASTES, write_planted_aspects
from recbole_transfer.request import Request
from recbole_transfer.registry import get_method
from recbole_transfer.report import markdown, mean_std, paired_vs

import _common as common

ARMS = ("item_mean_offset", "global_mean", "item_mean", "CMF", "EMCDR", "CATN")
CEILINGS = ("oracle_bilinear", "oracle_true_ridge")  # rows of what the planted truth allows (oracle_rows), not models
SHOWN = ARMS + CEILINGS
SETTINGS = ("planted", "planted_shuffled", "planted_strong", "planted_strong_shuffled", "planted_strong_released", "kg")
ETAS = (1.0, 0.5, 0.2, 0.1, 0.05)
SEEDS = (2020, 2021, 2022)
# the generator's arguments per planted setting (the others: its defaults)
PLANTED = {"planted": {"n_users": 400, "noise": 0.2, "strength": 1.2, "target_only_users": 200},
           "planted_strong": {"n_users": 300, "n_items": (60, 60), "per_user": (10, 8), "n_aspects": 3, "noise": 0.1,
                              "strength": 2.0, "target_only_users": 150}}
PLANTED["planted_strong_shuffled"] = {**PLANTED["planted_strong"], "shuffle_source": True}
PLANTED["planted_shuffled"] = {**PLANTED["planted"], "shuffle_source": True}
PLANTED["planted_strong_released"] = PLANTED["planted_strong"]  # the same pair; CATN trained as the released code
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
KEYS["planted_shuffled"] = KEYS["planted"]
# the released code's training users (both flows on the overlapping users who keep target rows) and batch proportions
KEYS["planted_strong_released"] = {**KEYS["planted_strong"], "model_keys": {"CATN": {
    **KEYS["planted_strong"]["model_keys"]["CATN"], "stages": ["joint_overlap"], "source_batch": "proportional"}}}
VARIANTS = {"planted_strong_released": "planted_strong"}  # a CATN variant -> the setting whose pair it shares
# the shuffled controls need CATN and the baselines that read no source (and the offset, which reads shuffled ratings)
SETTING_ARMS = {"planted_strong_shuffled": ("item_mean_offset", "item_mean", "CATN"),
                "planted_shuffled": ("item_mean_offset", "item_mean", "CATN"),
                "planted_strong_released": ("item_mean", "CATN")}
ORACLE_SETTINGS = ("planted", "planted_strong")  # the ceilings need the planted truth of the users' own reviews
# the paper's Table 3 (RMSE of CATN, eta 100 % .. 5 %): the authors' numbers on Amazon reviews, not ours
PAPER = {"Book -> Movie": (1.049, 1.072, 1.079, 1.093, 1.097), "Movie -> Music": (1.042, 1.075, 1.102, 1.126, 1.144),
         "Book -> Music": (0.862, 0.868, 0.875, 0.896, 0.899)}
KEPT = ("setting", "model", "arm", "eta", "seed", "data_seed", "model_seed", "recipe", "fingerprint", "epochs", "seconds",
        "seconds_per_epoch", "valid_rmse", "valid_curve", "rmse", "mae", "mse", "test_per_user", "test_users", "target")


def _request(setting, seed, etas, root):
    """The scenario request of one (setting, data seed), the planted permutation and truth (None on kg)."""
    method = get_method("overlap_cdr")
    scenario = method.runner.scenario_files(method, "CATN")[0]
    keys = {"num_threads": 1, "scenario_protocols": ["cold_start"], "scenario_etas": list(etas), "data_seed": seed}
    if setting == "kg":
        return Request("CATN", None, None, [scenario], keys), None, None
    folder = os.path.join(root, f"{setting}-seed{seed}")
    truth = {}
    pi = write_planted_aspects(folder, seed=seed, truth=truth, **PLANTED[setting])
    settings = os.path.join(folder, "benchmark_keys.yaml")
    with open(settings, "w", encoding="utf-8") as f:
        yaml.safe_dump(KEYS[setting], f)
    return Request("CATN", "asrc", ["atgt"], [scenario, settings],
                   {**keys, "data_path": folder, "protocol_dir": os.path.join(folder, "protocols")}), pi, truth


def run_setting(setting, seed, etas, arms, root, progress, model_seed=None):
    """Rows of one (setting, data seed ``seed``, training seed ``model_seed``, default the data seed): CATN's
    scenario (every arm at every eta, one pair per eta), plus CATN's G and, on planted data, its aspects named by the
    planted words they attend to, and the two ceilings."""
    model_seed = seed if model_seed is None else model_seed
    method = get_method("overlap_cdr")
    request, pi, truth = _request(setting, seed, etas, root)
    arms = [a for a in arms if a in SETTING_ARMS.get(setting, arms)]
    ceilings = []

    def measure(row, instance, pair):
        if row["arm"] != "CATN":
            return
        row["recipe"] = {"correlation": instance.activation, "in_domain_weight": instance.in_domain_weight,
                         "aspect_norm": instance.norms["user_source"].mode}
        if truth is not None and setting in ORACLE_SETTINGS:  # the pair's documents exist once CATN was built
            ceilings.extend(oracle_rows(pair, row, truth, PLANTED[setting].get("n_aspects", 4),
                                        float(pair.target.config["mean_shrinkage"])))
        row["G"] = instance.correlation().tolist()
        if pi is not None:
            row["planted_pi"] = [int(p) for p in pi]
            vocab = pair.links.documents.vocab
            row["aligned_source"] = planted_alignment(instance.aspect_mass("user", "source"), vocab, "s")
            row["aligned_target"] = planted_alignment(instance.aspect_mass("item", "target"), vocab, "t")

    def show(text):
        progress(f"{setting}: {text}")

    rows = method.runner.scenario(method, request, arms, [model_seed], progress=show, on_run=measure) + ceilings
    extra = ("G", "planted_pi", "aligned_source", "aligned_target")
    return [{**{k: row[k] for k in KEPT + extra if k in row}, "setting": setting, "model": row["trained"],
             "data_seed": seed, "model_seed": model_seed,
             "target": f"{setting} eta={row['eta']:g}", **{k[5:]: row[k] for k in ("test_rmse", "test_mae", "test_mse")}}
            for row in rows]


LEVELS = (-1.5, -0.5, 0.5, 1.5)  # a value for each of the generator's level words, lowest quartile first
TASTE, QUALITY = dict(zip(PLANTED_TASTES, LEVELS)), dict(zip(PLANTED_QUALITIES, LEVELS))


def decoded(doc, vocab, prefix, levels, n_aspects):
    """Per planted aspect: the mean level of the words that follow the aspect's words (``<prefix><m>_<j>``) in one
    document (0 where the document never names the aspect): what a perfect reader of the planted text could know."""
    total, count = np.zeros(n_aspects), np.zeros(n_aspects)
    words = [vocab[t] for t in doc.tolist() if t]
    for word, level in zip(words, words[1:]):
        head, _, tail = word.partition("_")
        if level in levels and head[:1] == prefix and head[1:].isdigit() and tail.isdigit():
            total[int(head[1:])] += levels[level]
            count[int(head[1:])] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def ridge(x, y, lam=1.0, free=()):
    """Ridge coefficients of y on x; the columns ``free`` (e.g. an intercept) are not penalised."""
    penalty = np.full(x.shape[1], float(lam))
    penalty[list(free)] = 0.0
    return np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y)


def oracle_rows(pair, reference, truth, n_aspects, beta):
    """Two ceilings on the cold users of one pair (the users of ``reference``, CATN's run on it):
    ``oracle_bilinear``: the item mean plus p^T W q, p the user's aspect preferences decoded from her SOURCE document,
    q the item's qualities decoded from its TARGET document, W (M x M) fitted by ridge on the warm users' target
    training ratings (what an ideal aspect-transfer model could learn from the same documents and rows);
    ``oracle_true_ridge``: per target item, a ridge regression (lambda 1, intercept not penalised) of its training
    ratings on the TRUE planted preferences of the users who gave them (what the users' real tastes say)."""
    docs, links = pair.links.documents, pair.links
    train = pair.target.train_data._dataset.inter_feat
    t_users, t_items, t_ratings = (train[f].numpy() for f in ("user_id", "item_id", "rating"))
    test = pair.target.test_data._dataset.inter_feat
    keep = np.isin(test["user_id"].numpy(), reference["test_users"])
    c_users, c_items, c_ratings = (test[f].numpy()[keep] for f in ("user_id", "item_id", "rating"))
    n_items, mu = pair.target.dataset.item_num, t_ratings.mean()
    total, count = np.bincount(t_items, t_ratings, n_items), np.bincount(t_items, minlength=n_items)
    item_mean = (total + beta * mu) / (count + beta)
    vocab = docs.vocab
    p_hat = {u: decoded(docs.user_docs["source"][int(links.target_to_source[u])], vocab, "s", TASTE, n_aspects)
             for u in set(t_users.tolist()) | set(c_users.tolist())}
    q_hat = {i: decoded(docs.item_docs["target"][i], vocab, "t", QUALITY, n_aspects) for i in range(n_items)}
    warm = np.array([int(links.target_to_source[u]) > 0 for u in t_users])  # users with a source document

    def features(users, items):
        return np.stack([np.outer(p_hat[u], q_hat[i]).ravel() for u, i in zip(users, items)])

    w = ridge(features(t_users[warm], t_items[warm]), t_ratings[warm] - item_mean[t_items[warm]])
    predictions = {"oracle_bilinear": item_mean[c_items] + features(c_users, c_items) @ w}
    token = pair.target.dataset.id2token
    true = {u: truth["target_prefs"][token("user_id", u)] for u in set(t_users.tolist()) | set(c_users.tolist())}
    per_item = np.array(item_mean[c_items])
    for i in np.unique(c_items):
        rows = t_items == i
        if rows.sum() == 0:
            continue
        x = np.stack([np.append(true[u], 1.0) for u in t_users[rows]])
        coef = ridge(x, t_ratings[rows], free=[x.shape[1] - 1])
        at = c_items == i
        per_item[at] = np.stack([np.append(true[u], 1.0) for u in c_users[at]]) @ coef
    predictions["oracle_true_ridge"] = per_item
    out = []
    for arm, predicted in predictions.items():
        squared = (predicted - c_ratings) ** 2
        users = sorted(set(c_users.tolist()))
        per_user = [float(np.round(squared[c_users == u].mean(), 6)) for u in users]
        out.append({**{k: reference[k] for k in ("eta", "seed", "data_seed", "fingerprint", "target") if k in reference},
                    "arm": arm, "trained": arm, "epochs": 0, "seconds": 0.0, "test_users": users,
                    "test_per_user": {"mse": per_user}, "test_mse": float(squared.mean()),
                    "test_rmse": float(np.sqrt(squared.mean())), "test_mae": float(np.abs(predicted - c_ratings).mean())})
    return out


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
        for arm in [a for a in SHOWN if any(r["setting"] == setting and r["arm"] == a for r in rows)]:
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


def gap_closed(rows):
    """Per planted setting and eta: the share of the gap between the item mean and the bilinear ceiling that CATN
    closes, in cold-user MSE (mean over runs): (item_mean - CATN) / (item_mean - oracle_bilinear)."""
    lines = []
    for setting in [s for s in ORACLE_SETTINGS if any(r["setting"] == s for r in rows)]:
        cells = []
        for eta in sorted({r["eta"] for r in rows}, reverse=True):
            mse = {arm: [r["mse"] for r in rows if r["setting"] == setting and r["eta"] == eta and r["arm"] == arm]
                   for arm in ("item_mean", "CATN", "oracle_bilinear")}
            if not all(mse.values()):
                cells.append("-")
                continue
            base, catn, ceiling = (float(np.mean(v)) for v in mse.values())
            cells.append(f"{(base - catn) / (base - ceiling):.2f}" if base > ceiling else "-")
        lines.append([setting] + cells)
    if not lines:
        return ""
    header = [f"eta {eta:g}" for eta in sorted({r["eta"] for r in rows}, reverse=True)]
    return ("Share of the gap between item_mean and oracle_bilinear (cold-user MSE, mean over runs) that CATN closes; "
            "1 = the ceiling, 0 = the item mean\n\n" + markdown(["setting"] + header, lines))


def control_kept(rows):
    """Per setting with a shuffled control and eta: CATN's gain over the item mean + source offset (cold-user MSE,
    mean over runs) on the setting and on its control (the same draws, every source review given to another user),
    over the runs both have (the same data seed and training seed), and the share of the gain the control keeps (the
    goal: under one half)."""
    def gains(scope, eta):
        """{(data seed, training seed): item_mean_offset's MSE minus CATN's} of one setting at one eta."""
        mse = {}
        for r in rows:
            if r["setting"] == scope and r["eta"] == eta and r["arm"] in ("item_mean_offset", "CATN"):
                mse.setdefault((r["data_seed"], r.get("model_seed", r["data_seed"])), {})[r["arm"]] = r["mse"]
        return {run: m["item_mean_offset"] - m["CATN"] for run, m in mse.items() if len(m) == 2}

    lines, etas = [], sorted({r["eta"] for r in rows}, reverse=True)
    for setting in [s for s in SETTINGS if f"{s}_shuffled" in SETTINGS and any(r["setting"] == f"{s}_shuffled" for r in rows)]:
        cells = []
        for eta in etas:
            real, control = gains(setting, eta), gains(f"{setting}_shuffled", eta)
            runs = sorted(set(real) & set(control))
            if not runs:
                cells.append("-")
                continue
            real, control = float(np.mean([real[r] for r in runs])), float(np.mean([control[r] for r in runs]))
            cells.append(f"{control / real:.2f} ({control:+.3f} of {real:+.3f}; {len(runs)} runs)" if real > 0 else
                         f"no gain to keep ({real:+.3f})")
        lines.append([setting] + cells)
    if not lines:
        return ""
    return ("The shuffled control's share of CATN's gain over item_mean_offset (cold-user MSE, mean over the runs "
            "both have, the same data and training seeds: the control's gain of the setting's gain; 0 = the control "
            "keeps none, 1 = all of it). The control's item_mean_offset reads the shuffled source, so it is worse than "
            "the setting's, which makes the control's share larger, not smaller\n\n"
            + markdown(["setting"] + [f"eta {eta:g}" for eta in etas], lines))


LEFT = 0.02  # validation RMSE this far below the start: the run has left its plateau


def left_plateau(curve):
    """The first epoch whose validation RMSE is ``LEFT`` below the start (epoch 0: the model before its first step),
    or None (never; or no start recorded)."""
    if not curve or curve[0][0] != 0:
        return None
    start = curve[0][2]
    return next((epoch for epoch, _s, score in curve[1:] if score <= start - LEFT), None)


def plateau(rows):
    """Per setting and eta: how many CATN runs left their start (validation RMSE 0.02 below the epoch-0 validation)
    within 5 epochs, and the epoch each run left it."""
    runs = [r for r in rows if r["arm"] == "CATN" and r.get("valid_curve")]
    lines = []
    for setting in [s for s in SETTINGS if any(r["setting"] == s for r in runs)]:
        for eta in sorted({r["eta"] for r in runs if r["setting"] == setting}, reverse=True):
            group = sorted((r for r in runs if r["setting"] == setting and r["eta"] == eta),
                           key=lambda r: (r["data_seed"], r.get("model_seed", r["data_seed"])))
            left = [left_plateau(r["valid_curve"]) for r in group]
            lines.append([setting, f"{eta:g}", len(group), sum(e is not None and e <= 5 for e in left),
                          " ".join("never" if e is None else str(e) for e in left),
                          f"{np.mean([r['valid_curve'][0][2] for r in group]):.3f}"])
    if not lines:
        return ""
    return (f"Leaving the start: per CATN run (data seed, then model seed), the first epoch whose cold-validation RMSE "
            f"is {LEFT} below the validation before the first step (epoch 0)\n\n"
            + markdown(["setting", "eta", "runs", "left within 5 epochs", "epoch left, per run", "start RMSE (mean)"],
                       lines))


def variants(rows):
    """Per CATN variant (``VARIANTS``) and eta: the variant's cold-user RMSE beside CATN's defaults on the same pairs,
    and the paired difference in MSE per user (variant minus defaults)."""
    lines = []
    for variant, base in VARIANTS.items():
        mine = [r for r in rows if r["setting"] == variant and r["arm"] == "CATN"]
        for eta in sorted({r["eta"] for r in mine}, reverse=True):
            label = f"{base} eta={eta:g}"
            other = [{**r, "arm": "variant", "target": label} for r in mine if r["eta"] == eta]
            pairs = {r["seed"]: r["fingerprint"] for r in other}  # training seed -> the pair it was scored on
            defaults = [r for r in rows if r["setting"] == base and r["arm"] == "CATN" and r["eta"] == eta
                        and r["seed"] in pairs]
            same = bool(defaults) and all(r["fingerprint"] == pairs[r["seed"]] for r in defaults)
            diff = paired_vs(defaults + other, "variant", "CATN", "test_mse", [label]) if defaults and same else None
            lines.append([variant, f"{eta:g}", len(other), mean_std([r["rmse"] for r in defaults], "{:.3f}") if defaults
                          else "-", mean_std([r["rmse"] for r in other], "{:.3f}"),
                          diff.cell() if diff else "-" if same else "not paired: other pairs or seeds"])
    if not lines:
        return ""
    return ("CATN variants on the same pairs as its defaults (`planted_strong_released`: the released code's training "
            "users and batch proportions, `stages: [joint_overlap]`, `source_batch: proportional`); cold users' test "
            "RMSE, mean ± std over runs, and the paired difference in MSE per user, variant minus defaults (bootstrap "
            "95 % interval; * excludes 0; negative: the variant better)\n\n"
            + markdown(["variant", "eta", "runs", "CATN defaults", "variant", "variant - defaults (MSE)"], lines))


def tables(rows):
    parts = [summary(rows)] + [t for t in [gap_closed(rows), control_kept(rows), plateau(rows), variants(rows)] if t]
    for setting in [s for s in SETTINGS if any(r["setting"] == s for r in rows)]:
        scoped = [r for r in rows if r["setting"] == setting]
        arms = [a for a in SHOWN if any(r["arm"] == a for r in scoped)]
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
            "this run, parts reused)\n\n" + missing_parts(run) + tables(rows) + "\n")


def missing_parts(run):
    missing = run.get("missing") or []
    return ("**Not measured yet** (parts the command names that did not exist when it joined them; every table below "
            "is over the runs that did): " + "; ".join(missing) + ".\n\n") if missing else ""


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
    p.add_argument("--join_only", action="store_true", help="train nothing: join the parts kept so far (<out>.<setting>."
                                                              "seed<N>[.model<M>].json) and list the missing ones")
    p.add_argument("--training_seeds", type=int, default=1,
                   help="training seeds per data seed: the data seed itself, then the data seed + 1000, + 2000, ... "
                        "(default 1); every arm of a data seed is scored on the same pair whatever its training seed")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    if args.training_seeds < 1:
        p.error(f"--training_seeds {args.training_seeds}: give 1 or more")
    common.measuring(args.threads)
    progress = lambda text: print(text, flush=True)  # noqa: E731
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    start = time.time()
    rows, missing = [], []
    for setting in args.settings:
        for seed in args.seeds:
            for model_seed in [seed + 1000 * i for i in range(args.training_seeds)]:
                name = f"seed{seed}" if model_seed == seed else f"seed{seed}.model{model_seed}"
                path = f"{args.out}.{setting}.{name}.json"
                if args.join_only and not os.path.isfile(path):
                    missing.append(f"{setting} data seed {seed} training seed {model_seed}")
                    continue
                rows += common.part(path, lambda: run_setting(setting, seed, args.etas, args.arms, args.data_root,
                                                              progress, model_seed), progress)
    argv = " ".join(sys.argv[1:] if argv is None else argv)
    saved = {"run": common.record(args.threads, wall_s=time.time() - start, argv=argv, missing=missing), "rows": rows}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
