"""Tracks (or faces) into people: average-linkage agglomerative clustering on cosine
similarity, stopped at a threshold, with cannot-link pairs (two faces seen in one frame are
never one person).

For unit vectors the average pairwise similarity of two clusters is the dot product of
their sums over the product of their sizes, so clusters are carried as (sum, size) and the
linkage matrix is updated by Lance-Williams. A dense step holds at most BLOCK x BLOCK
similarities: larger inputs are clustered a block at a time, in order, and the blocks'
clusters again, until one block holds them (then a leader pass, if blocks stop merging), so
memory stays bounded with tens of thousands of tracks. Deterministic: ties go to the
earliest pair.
"""
from __future__ import annotations

import numpy as np

BLOCK = 1500


def cluster(emb: np.ndarray, threshold: float, cannot: np.ndarray | None = None,
            weight: np.ndarray | None = None) -> np.ndarray:
    """emb (n, d) unit vectors (or, with `weight`, sums of `weight` (n,) unit vectors);
    threshold: the least average cosine similarity at which two clusters join; cannot
    (p, 2) int index pairs never in one cluster. Returns labels (n,) int64, numbered by
    each cluster's first item."""
    n = len(emb)
    if n == 0:
        return np.zeros(0, np.int64)
    weight = np.ones(n) if weight is None else np.asarray(weight, np.float64)
    groups = [[i] for i in range(n)]
    sums = np.asarray(emb, np.float64).reshape(n, -1)
    links = _link_sets(n, cannot)
    while len(groups) > BLOCK:
        merged = _blockwise(sums, weight, groups, links, threshold)
        if len(merged[2]) > 0.9 * len(groups):  # blocks hardly merge: one pass decides
            sums, weight, groups = _leader(*merged, links, threshold)
            break
        sums, weight, groups = merged
    else:
        sums, weight, groups = _agglomerate(sums, weight, groups, links, threshold)
    labels = np.empty(n, np.int64)
    for g in groups:
        labels[g] = min(g)
    _, labels = np.unique(labels, return_inverse=True)  # 0.. in order of first item
    return labels.astype(np.int64)


def _link_sets(n: int, cannot: np.ndarray | None) -> list[set[int]]:
    links: list[set[int]] = [set() for _ in range(n)]
    for a, b in (np.asarray(cannot).reshape(-1, 2) if cannot is not None else ()):
        links[int(a)].add(int(b))
        links[int(b)].add(int(a))
    return links


def _blocked(groups: list[list[int]], links: list[set[int]]) -> np.ndarray:
    """(k, k) bool: whether two groups hold a cannot-link pair."""
    owner = {i: gi for gi, g in enumerate(groups) for i in g}
    out = np.zeros((len(groups), len(groups)), bool)
    for gi, g in enumerate(groups):
        for i in g:
            for j in links[i]:
                if j in owner:
                    out[gi, owner[j]] = True
    return out


def _agglomerate(sums: np.ndarray, weight: np.ndarray, groups: list[list[int]],
                 links: list[set[int]], threshold: float):
    """Merge the most similar allowed pair of groups while its average similarity is at
    least `threshold`. sums (k, d), weight (k,)."""
    k = len(groups)
    if k < 2:
        return sums, weight, groups
    sim = (sums @ sums.T) / np.outer(weight, weight)
    sim[_blocked(groups, links)] = -np.inf
    np.fill_diagonal(sim, -np.inf)
    alive = np.ones(k, bool)
    sums, weight, groups = sums.copy(), weight.copy(), [list(g) for g in groups]
    while True:
        flat = int(np.argmax(sim))
        a, b = divmod(flat, k)
        if not sim[a, b] >= threshold:
            break
        a, b = min(a, b), max(a, b)
        wa, wb = weight[a], weight[b]
        row = (wa * sim[a] + wb * sim[b]) / (wa + wb)  # Lance-Williams, average linkage
        row[np.isneginf(sim[a]) | np.isneginf(sim[b])] = -np.inf  # cannot-links carry over
        sim[a], sim[:, a] = row, row
        sim[b], sim[:, b] = -np.inf, -np.inf
        sim[a, a] = -np.inf
        sums[a] += sums[b]
        weight[a] += wb
        groups[a] += groups[b]
        alive[b] = False
    keep = np.flatnonzero(alive)
    return sums[keep], weight[keep], [groups[i] for i in keep]


def _blockwise(sums, weight, groups, links, threshold):
    """_agglomerate on consecutive blocks of BLOCK groups, concatenated."""
    out_s, out_w, out_g = [], [], []
    for s in range(0, len(groups), BLOCK):
        bs, bw, bg = _agglomerate(sums[s:s + BLOCK], weight[s:s + BLOCK],
                                  groups[s:s + BLOCK], links, threshold)
        out_s.append(bs), out_w.append(bw), out_g.extend(bg)
    return np.concatenate(out_s), np.concatenate(out_w), out_g


def _leader(sums, weight, groups, links, threshold):
    """One pass in order: a group joins the most similar earlier leader (by mean vectors) it
    may join at `threshold`, else leads a group of its own."""
    lead_s: list[np.ndarray] = []
    lead_w: list[float] = []
    lead_g: list[list[int]] = []
    for s, w, g in zip(sums, weight, groups):
        best = -1
        if lead_s:
            means = np.stack(lead_s) / np.asarray(lead_w)[:, None]
            sim = means @ (s / w)
            for j in np.argsort(-sim, kind="stable"):
                if sim[j] < threshold:
                    break
                members = set(lead_g[j])
                if not any(links[i] & members for i in g):
                    best = int(j)
                    break
        if best < 0:
            lead_s.append(s.copy()), lead_w.append(float(w)), lead_g.append(list(g))
        else:
            lead_s[best] += s
            lead_w[best] += w
            lead_g[best] += g
    return np.stack(lead_s), np.asarray(lead_w), lead_g
