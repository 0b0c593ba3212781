"""Synthetic domains with planted, transferable structure (for tests and benchmarks of every method).

Users and items of a domain each belong to one of ``n_clusters`` latent clusters; a user interacts with
items of her own cluster with probability ``signal`` and with a random item otherwise. Cluster labels
are not given to the model: it must learn embeddings that place users near their cluster's items AND an
interaction function that detects the match. The match function is the same in every domain, the
embeddings are not (ids are disjoint), so a network trained on a dense source carries the function to a
sparse target: the situation where moving a network's layers should pay off. ``signal=0`` gives pure noise, a control
whose transfer must NOT help.

``user_prefix`` and ``user_seed`` let two domains share one user space: the same user tokens, written in the
same order (so RecBole maps them to the same internal ids), with the same latent clusters. That is the
setting in which a user-embedding table can be transferred along with the interaction layers.

Files are RecBole atomic files ``<folder>/<name>/<name>.inter`` with increasing timestamps.
"""

import os

import numpy as np
import pandas as pd


def write_planted_domain(
    folder, name, n_users, n_items, per_user, n_clusters=4, signal=0.9, seed=0, id_prefix=None,
    user_prefix=None, user_seed=None,
):
    """Write one planted domain; returns the number of interactions written."""
    rng = np.random.default_rng(seed)
    prefix = id_prefix if id_prefix is not None else name
    uprefix = user_prefix if user_prefix is not None else prefix
    user_rng = rng if user_seed is None else np.random.default_rng(user_seed)
    user_cluster = user_rng.integers(0, n_clusters, size=n_users)
    item_cluster = np.arange(n_items) % n_clusters
    items_of = [np.flatnonzero(item_cluster == c) for c in range(n_clusters)]
    rows = []
    clock = 0
    for u in range(n_users):
        chosen = set()
        while len(chosen) < per_user:
            if rng.random() < signal:
                item = int(rng.choice(items_of[user_cluster[u]]))
            else:
                item = int(rng.integers(0, n_items))
            chosen.add(item)
        for item in chosen:
            clock += 1
            rows.append(f"{uprefix}u{u}\t{prefix}i{item}\t1\t{clock}")
    write_atomic_rows(folder, name, "inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float", rows)
    return len(rows)


def write_planted_scenario(folder, shared_users=False, n_clusters=8, target_per_user=5):
    """Write a planted source ``src``, a noise source ``noise`` and a sparse planted target ``tgt``.

    ``shared_users=False``: the paper's setting, every domain with its own ids (400 users, 200 items,
    20 interactions per source user). ``shared_users=True``: the three domains share 200 users and their
    clusters (6 clusters, 120 items per domain, 16 per source user, 4 per target user), so a user
    embedding can carry the planted signal; ``n_clusters`` and ``target_per_user`` are then fixed.
    """
    if not shared_users:
        write_planted_domain(folder, "src", 400, 200, 20, n_clusters=n_clusters, seed=1)
        write_planted_domain(folder, "noise", 400, 200, 20, n_clusters=n_clusters, signal=0.0, seed=2)
        write_planted_domain(folder, "tgt", 400, 200, target_per_user, n_clusters=n_clusters, seed=3)
        return
    common = dict(n_users=200, n_items=120, n_clusters=6, user_prefix="p", user_seed=11)
    write_planted_domain(folder, "src", per_user=16, seed=1, **common)
    write_planted_domain(folder, "noise", per_user=16, signal=0.0, seed=2, **common)
    write_planted_domain(folder, "tgt", per_user=4, seed=3, **common)


def write_planted_sequences(folder, name, n_users=600, n_items=600, length=10, n_clusters=2, signal=0.95, seed=0):
    """Write item sequences whose users carry a hidden profile label: the cluster they draw items from.

    Items are split into ``n_clusters`` equal clusters; a user of cluster c picks each next item from
    cluster c with probability ``signal`` (else any item). ``<name>.inter`` holds the sequences (increasing
    timestamps); ``<name>.user`` holds the label as the token field ``group`` (``g0``, ``g1``, ...), for a
    ``label: {field: group}`` task domain. With many items and few labelled users, the label can only be
    read from what next-item pretraining learned about items (which items go together), not from the
    labelled users' own items: the planted setting of a "pretraining matters" claim.
    """
    rng = np.random.default_rng(seed)
    group = rng.integers(0, n_clusters, size=n_users)
    item_cluster = np.arange(n_items) % n_clusters
    items_of = [np.flatnonzero(item_cluster == c) for c in range(n_clusters)]
    rows, clock = [], 0
    for u in range(n_users):
        for _ in range(length):
            item = int(rng.choice(items_of[group[u]])) if rng.random() < signal else int(rng.integers(0, n_items))
            clock += 1
            rows.append(f"u{u}\ti{item}\t{clock}")
    write_atomic_rows(folder, name, "inter", "user_id:token\titem_id:token\ttimestamp:float", rows)
    write_atomic_rows(folder, name, "user", "user_id:token\tgroup:token", [f"u{u}\tg{g}" for u, g in enumerate(group)])
    return len(rows)


def write_drifting_periods(
    folder, name="drift", n_users=200, n_items=300, periods=8, per_period=10, dim=8, drift=0.8,
    persistence=0.7, trend=0.0, sharpness=2.0, seed=0,
):
    """Write interactions whose users keep long-term tastes AND drift, period after period (the setting of periodic retraining).

    Items have fixed factors b_i ~ N(0, I/dim). User u's taste in period t is a_u + d_{u,t}: a long-term
    factor a_u ~ N(0, I) and a drift d_{u,t} = persistence * d_{u,t-1} + trend * v_u + drift * e_{u,t}
    (v_u ~ N(0, I) fixed per user: a steady movement of her taste; e ~ N(0, I) fresh every period), so a
    period resembles the one before it (recent data matters), a_u persists (history matters) and the
    trend can be extrapolated from the last two models (what a transfer of (W_{t-1}, Ŵ_t) can learn).
    Every user returns in every period and picks ``per_period`` items she has not picked before, drawn
    in proportion to exp(sharpness * (a_u + d_{u,t}) . b_i). Period t's interactions carry timestamps of
    block t (shuffled within it), so ``periods`` equal-count periods recover the generator's periods.
    """
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)) / np.sqrt(dim)
    long_term = rng.normal(size=(n_users, dim))
    state = np.zeros((n_users, dim))
    velocity = rng.normal(size=(n_users, dim))
    used = [set() for _ in range(n_users)]
    rows, clock = [], 0
    for _ in range(periods):
        state = persistence * state + trend * velocity + drift * rng.normal(size=(n_users, dim))
        block = []
        for u in range(n_users):
            logits = sharpness * (items @ (long_term[u] + state[u]))
            logits[list(used[u])] = -np.inf
            p = np.exp(logits - logits.max())
            picks = rng.choice(n_items, size=per_period, replace=False, p=p / p.sum())
            used[u].update(picks.tolist())
            block += [(u, int(i)) for i in picks]
        for j in rng.permutation(len(block)):
            clock += 1
            rows.append(f"u{block[j][0]}\ti{block[j][1]}\t{clock}")
    write_atomic_rows(folder, name, "inter", "user_id:token\titem_id:token\ttimestamp:float", rows)
    return len(rows)


def write_atomic_rows(folder, name, suffix, header, rows):
    """Write the RecBole atomic file ``<folder>/<name>/<name>.<suffix>``: a typed header, then the rows."""
    path = os.path.join(folder, name)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, f"{name}.{suffix}"), "w", encoding="utf-8") as f:
        f.write(header + "\n" + "\n".join(rows) + "\n")


def write_planted_context(folder, name, n_users=300, n_items=200, per_user=20, n_clusters=6, moods=4, slots=3,
                          signal=0.9, seed=0, id_prefix=None):
    """Write a domain whose only signal is carried by the interaction's CONTEXT (the setting of shared contextual modules).

    Every interaction has a context (``mood`` m of ``moods`` tokens, ``slot`` s of ``slots`` tokens) drawn
    uniformly; its item comes, with probability ``signal``, from item cluster (m + s) % ``n_clusters``,
    else from any item. Users carry no preference, so neither user embeddings nor popularity can predict
    the item: a model must learn which items form a cluster (domain-specific) and which context points to
    which cluster (the same rule, with the same tokens ``m0``.., ``s0``.., in every domain: a contextual
    invariant a shared context module can carry to a sparse target). Ids are ``<prefix>u..`` / ``<prefix>i..``.
    """
    rng = np.random.default_rng(seed)
    prefix = id_prefix if id_prefix is not None else f"{name}:"
    cluster_of = np.arange(n_items) % n_clusters
    members = [np.flatnonzero(cluster_of == c) for c in range(n_clusters)]
    rows, clock = [], 0
    for u in range(n_users):
        for _ in range(per_user):
            m, s = int(rng.integers(moods)), int(rng.integers(slots))
            item = int(rng.choice(members[(m + s) % n_clusters])) if rng.random() < signal else int(rng.integers(n_items))
            clock += 1
            rows.append(f"{prefix}u{u}\t{prefix}i{item}\t{clock}\tm{m}\ts{s}")
    write_atomic_rows(folder, name, "inter", "user_id:token\titem_id:token\ttimestamp:float\tmood:token\tslot:token", rows)
    return len(rows)


# write_planted_aspects' level words, lowest to highest (one per quartile of a standard normal)
PLANTED_TASTES = ("hates", "minds", "likes", "loves")  # a user's preference for an aspect
PLANTED_QUALITIES = ("poor", "weak", "good", "great")  # an item's quality on an aspect


def write_planted_aspects(folder, names=("asrc", "atgt"), n_users=300, n_items=(120, 120), per_user=(12, 8),
                          n_aspects=4, words_per_aspect=6, phrases=6, noise=0.3, strength=1.0, seed=0,
                          shuffle_source=False, target_only_users=0, truth=None):
    """Write a pair of rating domains with reviews and planted aspects (a control for aspect transfer over reviews).

    - ``n_aspects`` latent aspects; each has ``words_per_aspect`` words of its own in each domain (``s<m>_<j>`` in
      the source, ``t<m>_<j>`` in the target);
    - a planted correlation: source aspect m corresponds to target aspect ``pi[m]`` (a fixed permutation);
    - each user has aspect preferences p_u (normal), SHARED by both domains (the same user tokens ``u<k>``); each
      item has aspect qualities q_i (normal) in its own domain;
    - rating = round(3 + b_i + strength * p_u . q_i / sqrt(M) (the target reads p_u through pi) + noise), clipped
      to 1..5;
    - a review is ``phrases`` taste phrases (an aspect word of the domain, then ``loves`` / ``likes`` / ``minds`` /
      ``hates`` by the user's preference for that aspect) and as many quality phrases (an aspect word, then
      ``great`` / ``good`` / ``weak`` / ``poor`` by the item's quality), aspects drawn uniformly, phrases in random
      order, with a filler word between phrases. A user's document tells her preferences, an item's document its
      qualities, in words a text convolution reads.
    ``shuffle_source=True`` gives every source review (and rating) to a random other user (the same draw otherwise:
    the same ratings, reviews and target domain, only the source rows' owners permuted): the control whose transfer
    must not help. ``target_only_users`` adds that many users (tokens ``x<k>``, preferences of their own, drawn from a
    generator of their own) who rate and review only target items, after everyone else: the target items' documents
    then do not starve when few overlapping users keep their target rows (the rest of the draw is unchanged).
    Returns the permutation ``pi`` (source aspect -> target aspect). ``truth``: a dict that receives the planted
    truth, ``prefs`` {user token: source-aspect preferences} and ``target_prefs`` {user token: the preferences the
    target reads, target aspect order} (what a benchmark compares models with).
    """
    rng = np.random.default_rng(seed)
    pi = rng.permutation(n_aspects)
    prefs = rng.normal(size=(n_users, n_aspects))
    tastes, qualities = PLANTED_TASTES, PLANTED_QUALITIES
    cuts = np.array([-0.67, 0.0, 0.67])  # quartiles of a standard normal

    def word(table, value):
        return table[int(np.searchsorted(cuts, value))]

    for d, (name, prefix) in enumerate(zip(names, ("s", "t"))):
        items = n_items[d]
        quality = rng.normal(size=(items, n_aspects))
        bias = rng.normal(scale=0.3, size=items)
        user_pref = prefs if d == 0 else prefs[:, np.argsort(pi)]  # target aspect pi[m] carries source preference m
        rows, clock = [], 0
        # the control's owners come from their own generator: the shuffled pair is the same draw, reviews re-owned
        owners = np.random.default_rng([seed, 1]).permutation(n_users) if (shuffle_source and d == 0) else np.arange(n_users)
        writers = [(f"u{owners[u]}", user_pref[u], rng) for u in range(n_users)]
        if d == 1 and target_only_users:
            extra = np.random.default_rng([seed, 2])
            writers += [(f"x{u}", extra.normal(size=n_aspects), extra) for u in range(target_only_users)]
        if truth is not None and d == 1:
            truth["target_prefs"] = {token: pref for token, pref, _draw in writers}
        elif truth is not None:
            truth["prefs"] = {f"u{u}": prefs[u] for u in range(n_users)}  # the user's own (shuffle: not her reviews)
        for token, pref, draw in writers:
            for i in draw.choice(items, size=per_user[d], replace=False):
                score = 3 + bias[i] + strength * pref @ quality[i] / np.sqrt(n_aspects) + draw.normal(scale=noise)
                rating = int(np.clip(np.round(score), 1, 5))
                said = [[f"{prefix}{m}_{draw.integers(words_per_aspect)}", word(tastes, pref[m])]
                        for m in draw.integers(n_aspects, size=phrases)]
                said += [[f"{prefix}{m}_{draw.integers(words_per_aspect)}", word(qualities, quality[i, m])]
                         for m in draw.integers(n_aspects, size=phrases)]
                order = draw.permutation(len(said))
                words = [w for k in order for w in said[k] + [f"w{draw.integers(30)}"]]
                clock += 1
                rows.append(f"{token}\t{prefix}i{i}\t{rating}\t{clock}\t{' '.join(words)}")
        write_atomic_rows(folder, name, "inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\treview:token_seq", rows)
    return pi


def write_scale_pair(folder, n_rows, overlap=0.9, names=("ssrc", "stgt"), zipf=1.0, sigma=1.0, min_rows=5, seed=0):
    """A pair of domains of about ``n_rows`` interactions each, shaped as logs are at scale (for the scale benchmark of issue 27):
    ``n_rows // 20`` users and ``n_rows // 100`` items per domain; item popularity Zipf (weight 1 / rank^``zipf``);
    user activity lognormal (``sigma``), every user with at least ``min_rows`` interactions; the source's users are
    ``overlap`` of the target's (the same user tokens) plus users of its own; items are each domain's own (integer
    tokens: the target's 0 .. items - 1, the source's from ``items`` on, so no item token is in both). A repeated (user, item) draw is drawn again (a few rounds; a user's activity is capped at a
    quarter of the items), so each domain holds about ``n_rows`` interactions (the counts are returned). Drawn in whole arrays (no loop over rows or users). Returns ``{name: {"rows", "users", "items"}}``."""
    if n_rows < 100 * min_rows:
        raise ValueError(f"n_rows={n_rows}: at least {100 * min_rows} rows (n_rows // 100 items, >= {min_rows} per user)")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap={overlap}: must be in [0, 1]")
    rng = np.random.default_rng(seed)
    n_users, n_items = n_rows // 20, n_rows // 100
    weights = 1.0 / np.arange(1, n_items + 1) ** zipf
    weights /= weights.sum()
    target_users = np.arange(n_users)
    shared = rng.choice(target_users, size=int(round(overlap * n_users)), replace=False)
    source_users = np.concatenate([np.sort(shared), np.arange(n_users, 2 * n_users - len(shared))])
    counts = {}
    for name, users, first_item in ((names[0], source_users, n_items), (names[1], target_users, 0)):
        activity = rng.lognormal(0.0, sigma, len(users))
        per_user = min_rows + np.floor((n_rows - min_rows * len(users)) * activity / activity.sum()).astype(np.int64)
        per_user = np.minimum(per_user, max(min_rows, n_items // 4))
        pairs, wanted = np.empty(0, dtype=np.int64), np.repeat(users, per_user)
        for _round in range(8):  # redraw what repeated a pair already drawn
            items = rng.choice(n_items, size=len(wanted), p=weights)
            pairs = np.unique(np.concatenate([pairs, wanted * np.int64(n_items) + items]))  # sorted by user, then item
            short = per_user - np.bincount(np.searchsorted(users, pairs // n_items), minlength=len(users))
            if not short.any():
                break
            wanted = np.repeat(users, np.maximum(short, 0))
        user_of_row, items = pairs // n_items, pairs % n_items
        stamps = rng.permutation(len(pairs)).astype(np.int64)
        path = os.path.join(folder, name)
        os.makedirs(path, exist_ok=True)
        table = pd.DataFrame({"user_id:token": user_of_row, "item_id:token": items + first_item, "rating:float": 5,
                              "timestamp:float": stamps})
        table.to_csv(os.path.join(path, f"{name}.inter"), sep="\t", index=False)
        counts[name] = {"rows": int(len(pairs)), "users": int(len(np.unique(user_of_row))), "items": int(len(np.unique(items)))}
    return counts
