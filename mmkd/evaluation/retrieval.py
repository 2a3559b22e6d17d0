"""Retrieval and embedding-space metrics for metric learning: Recall@K, mAP@R, NMI, pi_ratio and rho.

Recall@K and NMI as in Yu et al. (CVPR 2019) and S2SD (Roth et al., ICML 2021, supplementary C); mAP@R as in
Musgrave et al. (ECCV 2020, pytorch-metric-learning's ``mean_average_precision_at_r``); pi_ratio and rho as in S2SD's
supplementary D (Eq. 16-19). Every sample is a query against all the others (leave-one-out retrieval).
"""
import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmkd.registry import METRICS

ArrayLike = Union[np.ndarray, torch.Tensor]
METRIC_NAMES = ('recall', 'map_at_r', 'nmi', 'pi_ratio', 'rho')

# Neighbours kept per query beyond the k needed, so that a near-tie at the k-th place rarely sends the query to
# the exact fallback.
_EXTRA_CANDIDATES = 8
# Scores per maximum (a chunk of columns, or of rows) that screens a tile: a tile is read once at full size (to
# take these maxima); only the few chunks whose maximum can enter a query's top k are read again.
_CHUNK = 32
_UNIT_ROUNDOFF_32 = 2.0**-24
_UNIT_ROUNDOFF_64 = 2.0**-53
# the score of padding samples: far below any real score, finite so that the products stay free of nan
_FAR = -1e30


def retrieval_metrics(embeddings: ArrayLike,
                      labels: ArrayLike,
                      ks: Sequence[int] = (1, 2, 4, 8),
                      metrics: Sequence[str] = ('recall', 'map_at_r', 'nmi'),
                      *,
                      block_size: Optional[int] = None,
                      device: Optional[Union[str, torch.device]] = None,
                      nmi_seed: int = 0,
                      nmi_iters: int = 20,
                      spectral_skip: Optional[int] = None,
                      memory_budget: int = 32 * 2**20) -> Dict[str, float]:
    """Leave-one-out retrieval metrics of labelled embeddings, with Euclidean distance on the embeddings as given
    (L2-normalise them first if the model compares normalised embeddings).

    * ``'recall'`` -> ``R@K`` for every K in ``ks``: the fraction of queries with at least one of their K nearest
      neighbours (the query itself excluded) of the query's label.
    * ``'map_at_r'`` -> ``mAP@R``: per query, with R = the number of OTHER samples of its label,
      ``(1/R) * sum_{i<=R} P@i * [neighbour i has the query's label]``, averaged over the queries.

      Queries whose label has no other sample (R = 0) can never be answered: like pytorch-metric-learning's
      AccuracyCalculator (``precision_at_1``, ``mean_average_precision_at_r``), they are left out of both averages
      (if every query is such, the values are nan).
    * ``'nmi'`` -> ``NMI``: k-means with k = the number of labels (:func:`kmeans`: ``nmi_iters`` Lloyd iterations
      from k distinct samples drawn with ``nmi_seed``, float32), then :func:`normalized_mutual_info` (arithmetic
      mean normalisation, as scikit-learn's default and pytorch-metric-learning). A different k-means (faiss',
      scikit-learn's) gives a different clustering, hence a different NMI.
    * ``'pi_ratio'``: :func:`embedding_density` (S2SD Eq. 16-18).
    * ``'rho'``: :func:`spectral_decay` (S2SD Eq. 19), the ``spectral_skip`` largest singular values dropped.

    Neighbours are exact: candidates are found with float32 matrix products in tiles of bounded memory, with a
    rigorous bound on their rounding error, and re-ranked by the float64 squared distance ``sum((a - b)**2)``; a
    query whose candidates cannot be proven complete is searched again exhaustively in float64. Ties (equal float64
    distances, e.g. duplicated embeddings) are ordered by sample index, the lower first.

    Args:
        embeddings: (N, D) float embeddings (numpy array or torch tensor).
        labels: (N, ) integer labels, >= 0.
        ks: the K of Recall@K.
        metrics: which of ``'recall'``, ``'map_at_r'``, ``'nmi'``, ``'pi_ratio'``, ``'rho'`` to compute.
        block_size: query rows per tile of the neighbour search (default: from ``memory_budget``).
        device: where to compute (default: the embeddings' device; numpy: CPU).
        nmi_seed: seed of the k-means initialisation.
        nmi_iters: most Lloyd iterations of the k-means (fewer when it converges, by scikit-learn's rule); 20 as
            faiss' default.
        spectral_skip: the number of largest singular values that rho drops; default ``round(10 * D / 128)``
            (S2SD drops 10 of 128).
        memory_budget: bytes for one tile of the neighbour search (and the k-means / distance-sum blocks).

    Returns:
        dict: python floats under ``R@K`` (every K), ``mAP@R``, ``NMI``, ``pi_ratio``, ``rho``, as asked.
    """
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f'retrieval_metrics: unknown metrics {sorted(unknown)}; expected some of {METRIC_NAMES}')
    x, y = _as_tensors(embeddings, labels, device)
    results = {}
    if 'recall' in metrics or 'map_at_r' in metrics:
        results.update(_knn_metrics(x, y, ks, 'recall' in metrics, 'map_at_r' in metrics, block_size, memory_budget))
    if 'nmi' in metrics:
        num_classes = int(torch.unique(y).numel())
        clusters = kmeans(x, num_classes, seed=nmi_seed, num_iters=nmi_iters, memory_budget=memory_budget)
        results['NMI'] = normalized_mutual_info(y, clusters)
    if 'pi_ratio' in metrics:
        results['pi_ratio'] = embedding_density(x, y, memory_budget=memory_budget)
    if 'rho' in metrics:
        results['rho'] = spectral_decay(x, spectral_skip)
    return results


def _as_tensors(embeddings: ArrayLike, labels: ArrayLike, device) -> Tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(embeddings)
    y = torch.as_tensor(labels)
    if device is None:
        device = x.device
    x, y = x.to(device), y.to(device)
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f'retrieval_metrics: embeddings must be a float (N, D) array, got {tuple(x.shape)} {x.dtype}')
    if y.shape != (x.shape[0], ) or y.is_floating_point() or y.is_complex():
        raise ValueError(f'retrieval_metrics: labels must be an integer ({x.shape[0]}, ) array (one per embedding), '
                         f'got {tuple(y.shape)} {y.dtype}')
    if x.shape[0] < 2:
        raise ValueError(f'retrieval_metrics: at least 2 embeddings are needed, got {x.shape[0]}')
    if not torch.isfinite(x).all():
        raise ValueError('retrieval_metrics: the embeddings contain inf or nan')
    if (y < 0).any():
        raise ValueError('retrieval_metrics: labels must be >= 0 (-1 marks an unlabelled sample, which a retrieval '
                         'evaluation cannot use)')
    return x, y.long()


# ---------------------------------------------------------------------------------------------- neighbours
def nearest_neighbors(embeddings: torch.Tensor,
                      k: int,
                      block_size: Optional[int] = None,
                      memory_budget: int = 32 * 2**20) -> torch.Tensor:
    """The exact ``k`` nearest neighbours of every sample among the others, by float64 Euclidean distance, ties
    by index (the lower first).

    Stage 1 (float32, tiled, each pair once): for a block of rows I and a block of columns J >= I, one matrix
    product of augmented embeddings ``[x, 1, -|x|^2/2] . [x, -|x|^2/2, 1]`` gives ``-d^2 / 2``, symmetric, so the
    tile serves the queries of I (its rows) and those of J (its columns). Maxima over chunks of ``_CHUNK`` rows or
    columns screen the tile: only chunks whose maximum can enter a query's current top ``k + _EXTRA_CANDIDATES``
    are read again, and only their elements above that threshold are merged. Self-matches are excluded by index.
    Stage 2 (float64): the candidates are re-ranked by ``sum((a - b)**2)``. They provably hold the exact top ``k``
    when the lowest kept score is below the k-th minus three times the rounding bound of a float32 score
    (``(D + 6) u (|a| |b|_max + |a|^2 + |b|_max^2)``, doubled for safety, u = 2^-24); the other queries (near-ties,
    duplicates) are searched again exhaustively in float64 (:func:`_exact_neighbors`).

    Args:
        embeddings: (N, D) float embeddings.
        k: neighbours per query, 1 <= k <= N - 1.
        block_size: rows (and columns) of a tile, rounded up to a multiple of ``_CHUNK`` (default: the largest
            whose float32 tile fits ``memory_budget``).
        memory_budget: bytes of one float32 score tile.

    Returns:
        Tensor: (N, k) long indices, nearest first.
    """
    n, dim = embeddings.shape
    if not 1 <= k <= n - 1:
        raise ValueError(f'nearest_neighbors: k must be in [1, N - 1 = {n - 1}], got {k}')
    device = embeddings.device
    x64 = embeddings.to(torch.float64)
    kept = min(n - 1, k + _EXTRA_CANDIDATES)
    if block_size is None:
        block_size = int(math.sqrt(memory_budget / 4))
    block = _CHUNK * max(1, math.ceil(block_size / _CHUNK))
    padded = _CHUNK * math.ceil(n / _CHUNK)
    # padding samples score _FAR (finite, so that no inf meets a zero in the product) against everything
    half_sq = -0.5 * (x64 * x64).sum(1)
    left = torch.zeros(padded, dim + 2, dtype=torch.float32, device=device)
    left[:n, :dim] = x64
    left[:, dim] = 1
    left[:n, dim + 1] = half_sq
    left[n:, dim + 1] = _FAR
    right_t = left[:, [*range(dim), dim + 1, dim]].T.contiguous()  # (D + 2, padded)
    norms = x64.norm(dim=1)
    max_norm = float(norms.max())
    eps = 2 * (dim + 6) * _UNIT_ROUNDOFF_32 * (norms * max_norm + norms**2 + max_norm**2)

    values = torch.full((padded, kept), float('-inf'), device=device)
    indices = torch.zeros((padded, kept), dtype=torch.long, device=device)
    # the diagonal tiles first: every query then screens the other tiles with the threshold of a full block
    starts = range(0, padded, block)
    tiles = [(row, row) for row in starts] + [(row, col) for row in starts for col in starts if col > row]
    with _highest_matmul_precision():
        for row, col in tiles:
            scores = torch.mm(left[row:row + block], right_t[:, col:col + block])
            b, m = scores.shape
            if col == row:
                scores.diagonal().fill_(float('-inf'))  # self exclusion by index
            by_row = scores.view(b, m // _CHUNK, _CHUNK)
            row_max = by_row.amax(2)
            if col != row:
                by_col = scores.view(b // _CHUNK, _CHUNK, m)
                col_max = by_col.amax(1).T
            with _one_thread():
                _screen(row_max, lambda r, c: by_row[r, c], row, col, values, indices)
                if col != row:
                    _screen(col_max, lambda r, c: by_col[c, :, r], col, row, values, indices)
    values, indices = values[:n], indices[:n]
    margin = values[:, k - 1] - 3 * eps
    complete = values[:, -1] < margin if kept < n - 1 else torch.ones_like(eps, dtype=torch.bool)
    # the candidates that can be in the exact top k: the first `inside` ones (descending approximate scores)
    inside = (values >= margin[:, None]).sum(1)
    ranked = _rerank(x64, indices, inside, k, memory_budget)
    missing = (~complete).nonzero().flatten()
    if missing.numel():
        ranked[missing] = _exact_neighbors(x64, missing, k, memory_budget)
    return ranked


def _screen(chunk_max: torch.Tensor, chunk_values, q0: int, r0: int, values: torch.Tensor,
            indices: torch.Tensor) -> None:
    """Merge the scores of one tile into the running top lists (in place) of the queries ``q0...``.

    Args:
        chunk_max: (Q, C) the maximum score of each query over each chunk of ``_CHUNK`` references.
        chunk_values: ``f(query rows (P, ), chunks (P, ))`` -> (P, _CHUNK) those chunks' scores.
        q0, r0: the sample index of the tile's first query and first reference.
        values, indices: (N, kept) every query's running top scores (descending) and reference indices.
    """
    num_q = chunk_max.shape[0]
    kept = values.shape[1]
    device = values.device
    threshold = values[q0:q0 + num_q, -1]
    # the kept-th largest chunk maximum is a score of `kept` distinct references: nothing below it enters (worth
    # computing only until the query's list is full)
    if chunk_max.shape[1] >= kept and not torch.isfinite(threshold).all():
        threshold = torch.maximum(threshold, chunk_max.topk(kept, dim=1).values[:, -1])
    hit_q, hit_c = (chunk_max >= threshold[:, None]).nonzero(as_tuple=True)
    if hit_q.numel() == 0:
        return
    hit_values = chunk_values(hit_q, hit_c)
    pos, lane = (hit_values >= threshold[hit_q, None]).nonzero(as_tuple=True)
    rows = hit_q[pos]  # ascending
    new_values = hit_values[pos, lane]
    new_indices = r0 + hit_c[pos] * _CHUNK + lane
    queries, counts = torch.unique_consecutive(rows, return_counts=True)
    slot = torch.arange(rows.numel(), device=device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    which = torch.repeat_interleave(torch.arange(queries.numel(), device=device), counts)
    width = int(counts.max())
    pad_values = torch.full((queries.numel(), width), float('-inf'), device=device)
    pad_values[which, slot] = new_values
    pad_indices = torch.zeros((queries.numel(), width), dtype=torch.long, device=device)
    pad_indices[which, slot] = new_indices
    queries = queries + q0
    merged_values, order = torch.cat([values[queries], pad_values], 1).topk(kept, dim=1)
    values[queries] = merged_values
    indices[queries] = torch.cat([indices[queries], pad_indices], 1).gather(1, order)


def _rerank(x64: torch.Tensor, cand: torch.Tensor, inside: torch.Tensor, k: int, memory_budget: int) -> torch.Tensor:
    """The ``k`` nearest candidates of each query by float64 ``sum((a - b)**2)``, ties by index: (N, k). Only the
    first ``max(inside)`` of a block of queries are measured: beyond its ``inside``, a query's candidates are
    provably farther than its first k."""
    n, kept = cand.shape
    out = torch.empty(n, k, dtype=torch.long, device=cand.device)
    rows = max(1, memory_budget // (16 * kept * x64.shape[1]))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        width = int(inside[start:stop].max())
        idx = cand[start:stop, :width]
        dist = ((x64[idx] - x64[start:stop, None])**2).sum(2)
        idx, order = idx.sort(dim=1)
        dist = dist.gather(1, order)
        out[start:stop] = idx.gather(1, dist.sort(dim=1, stable=True).indices[:, :k])
    return out


def _exact_neighbors(x64: torch.Tensor, queries: torch.Tensor, k: int, memory_budget: int) -> torch.Tensor:
    """The exact neighbours of ``queries`` (indices (Q, )) among all samples, for queries whose float32 candidates
    were not provably complete: float64 scores screen with a float64 rounding margin, then ``sum((a - b)**2)``
    ranks every sample inside the margin. (Q, k)."""
    n, dim = x64.shape
    norms = x64.norm(dim=1)
    max_norm = float(norms.max())
    out = torch.empty(len(queries), k, dtype=torch.long, device=x64.device)
    half = -0.5 * (x64 * x64).sum(1)
    rows = max(1, memory_budget // (8 * n))
    for start in range(0, len(queries), rows):
        q = queries[start:start + rows]
        with _highest_matmul_precision():
            scores = torch.addmm(half, x64[q], x64.T)
        scores[torch.arange(len(q), device=x64.device), q] = float('-inf')
        eps = 2 * (dim + 4) * _UNIT_ROUNDOFF_64 * (norms[q] * max_norm + max_norm**2)
        kth = scores.topk(k, dim=1).values[:, -1]
        for row, (query, limit) in enumerate(zip(q.tolist(), (kth - 3 * eps).tolist())):
            inside = (scores[row] >= limit).nonzero().flatten()  # ascending indices
            dist = ((x64[inside] - x64[query])**2).sum(1)
            out[start + row] = inside[dist.sort(stable=True).indices[:k]]
    return out


class _one_thread:
    """torch on one thread: the merges are many small operations, which on a busy machine wait for a descheduled
    second thread at every parallel region far longer than a second thread saves."""

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


class _highest_matmul_precision:
    """float32 matrix products in full float32 (no TF32 / bf16), which the rounding bound assumes."""

    def __enter__(self):
        self.saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision('highest')

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self.saved)


def _knn_metrics(x: torch.Tensor, y: torch.Tensor, ks: Sequence[int], recall: bool, map_at_r: bool,
                 block_size: Optional[int], memory_budget: int) -> Dict[str, float]:
    n = x.shape[0]
    if any(int(k) < 1 for k in ks):
        raise ValueError(f'retrieval_metrics: every K of Recall@K must be >= 1, got {tuple(ks)}')
    counts = torch.bincount(y)
    r = counts[y] - 1  # other samples of the query's label
    k = max(max(ks) if recall else 1, int(r.max()) if map_at_r else 1)
    k = min(k, n - 1)
    neighbours = nearest_neighbors(x, k, block_size=block_size, memory_budget=memory_budget)
    same = y[neighbours] == y[:, None]
    answerable = r > 0
    results = {}
    if recall:
        for kk in ks:
            hit = same[:, :min(int(kk), k)].any(1)
            results[f'R@{kk}'] = _mean(hit[answerable].to(torch.float64))
    if map_at_r:
        relevant = torch.arange(k, device=x.device)[None] < r[:, None]
        hits = (same & relevant).to(torch.float64)
        precision = hits.cumsum(1) / torch.arange(1, k + 1, device=x.device, dtype=torch.float64)
        ap = (precision * hits).sum(1) / r.clamp(min=1)
        results['mAP@R'] = _mean(ap[answerable])
    return results


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else float('nan')


# ---------------------------------------------------------------------------------------------- clustering
def kmeans(embeddings: torch.Tensor,
           num_clusters: int,
           seed: int = 0,
           num_iters: int = 20,
           tol: float = 1e-4,
           memory_budget: int = 32 * 2**20) -> torch.Tensor:
    """Lloyd's k-means in float32: centres initialised at ``num_clusters`` distinct samples drawn with ``seed``
    (``torch.randperm`` on a CPU generator), at most ``num_iters`` assignment + update rounds, stopping early as
    scikit-learn's ``KMeans`` does (when the assignment no longer changes or the squared centre shifts sum to at
    most ``tol`` x the mean variance of a dimension); an empty cluster keeps its centre. Ties go to the lower centre
    index.

    The assignment uses float32 matrix products, whose rounding depends on the BLAS and its thread count, so a
    sample almost equidistant from two centres may change cluster across machines.

    Args:
        embeddings: (N, D) float embeddings.
        num_clusters: k, 1 <= k <= N.
        seed: seed of the initialisation.
        num_iters: most Lloyd rounds.
        tol: the stopping tolerance, relative to the mean variance of a dimension.
        memory_budget: bytes of one block of sample-centre scores.

    Returns:
        Tensor: (N, ) long cluster index of every sample.
    """
    n = embeddings.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f'kmeans: num_clusters must be in [1, N = {n}], got {num_clusters}')
    x = embeddings.to(torch.float32)
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(n, generator=gen)[:num_clusters].to(x.device)].clone()
    rows = max(1, memory_budget // (4 * num_clusters))
    # scikit-learn's stopping rule: the squared centre shifts sum to at most tol x the mean variance of a dimension
    limit = tol * float(x.to(torch.float64).var(0, unbiased=False).mean())
    ones = torch.ones(n, 1, dtype=x.dtype, device=x.device)
    x_aug = torch.cat([x, ones], 1)
    assign = None
    with _highest_matmul_precision():
        for _ in range(num_iters):
            new_assign = _assign(x_aug, centres, rows)
            if assign is not None and torch.equal(new_assign, assign):
                return assign  # the centres are the means of this assignment already
            assign = new_assign
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            sizes = torch.bincount(assign, minlength=num_clusters)
            filled = sizes > 0
            new = centres.clone()
            new[filled] = sums[filled] / sizes[filled, None].to(x.dtype)
            shift = float(((new - centres).to(torch.float64)**2).sum())
            centres = new
            if shift <= limit:
                break
        return _assign(x_aug, centres, rows)


def _assign(x_aug: torch.Tensor, centres: torch.Tensor, rows: int) -> torch.Tensor:
    """The nearest centre of every sample: argmax of ``x.c - |c|^2 / 2`` ((N, D + 1) samples with a column of ones,
    one product with contiguous (D + 1, K) centres per block of ``rows``)."""
    centres_t = torch.cat([centres.T, -0.5 * (centres * centres).sum(1)[None]], 0).contiguous()
    return torch.cat([torch.mm(x_aug[s:s + rows], centres_t).argmax(1) for s in range(0, x_aug.shape[0], rows)])


def normalized_mutual_info(labels: ArrayLike, clusters: ArrayLike) -> float:
    """NMI(labels, clusters) = I / ((H(labels) + H(clusters)) / 2) (arithmetic normalisation; natural logs cancel).

    Args:
        labels: (N, ) integer labels.
        clusters: (N, ) integer cluster indices.

    Returns:
        float: in [0, 1]; 1.0 when both hold a single group (as scikit-learn).
    """
    a = torch.as_tensor(labels).flatten().cpu().long()
    b = torch.as_tensor(clusters).flatten().cpu().long()
    _, a = torch.unique(a, return_inverse=True)
    _, b = torch.unique(b, return_inverse=True)
    n = a.numel()
    num_b = int(b.max()) + 1
    pairs, joint = torch.unique(a * num_b + b, return_counts=True)
    count_a = torch.bincount(a).to(torch.float64)
    count_b = torch.bincount(b).to(torch.float64)
    if count_a.numel() == count_b.numel() == 1:
        return 1.0
    joint = joint.to(torch.float64)
    mi = (joint / n * (torch.log(joint * n) - torch.log(count_a[pairs // num_b] * count_b[pairs % num_b]))).sum()

    def entropy(counts):
        p = counts / n
        return -(p * torch.log(p)).sum()

    denom = (entropy(count_a) + entropy(count_b)) / 2
    return float(mi / denom) if denom > 0 else 0.0


# ---------------------------------------------------------------------------------------------- S2SD metrics
def embedding_density(embeddings: ArrayLike, labels: ArrayLike, memory_budget: int = 32 * 2**20) -> float:
    """Embedding space density pi_ratio = pi_intra / pi_inter (S2SD supplementary D, Eq. 16-18), in float64.

    ``pi_intra = 1/Z_intra * sum_l sum_{i != j in class l} |x_i - x_j|`` with ``Z_intra = sum_l n_l (n_l - 1)``
    (the mean over all ordered pairs of distinct samples of one class; classes with one sample add nothing);
    ``pi_inter = 1/Z_inter * sum_{l != m} |mu_l - mu_m|`` with ``Z_inter = C (C - 1)`` (the mean over ordered pairs
    of distinct class centres, ``mu_l`` the mean embedding of class l).

    Args:
        embeddings: (N, D) float embeddings.
        labels: (N, ) integer labels.
        memory_budget: bytes of one block of pairwise distances.

    Returns:
        float: pi_ratio; nan without two classes or without a class of two samples, or when every embedding is
        the same point; inf when the class centres coincide but the samples do not.
    """
    x = torch.as_tensor(embeddings).to(torch.float64)
    y = torch.as_tensor(labels).to(x.device).long()
    _, y = torch.unique(y, return_inverse=True)
    counts = torch.bincount(y)
    num_classes = counts.numel()
    z_intra = float((counts * (counts - 1)).sum())
    if num_classes < 2 or z_intra == 0:
        return float('nan')
    order = torch.argsort(y, stable=True)
    offsets = torch.cumsum(counts, 0) - counts
    intra = 0.0
    for size in torch.unique(counts).tolist():
        if size < 2:
            continue
        classes = (counts == size).nonzero().flatten()
        members = order[offsets[classes][:, None] + torch.arange(size, device=x.device)]  # (G, size)
        if 8 * size * max(size, x.shape[1]) <= memory_budget:
            per_block = memory_budget // (8 * size * max(size, x.shape[1]))
            for start in range(0, len(classes), per_block):
                group = x[members[start:start + per_block]]  # (g, size, D)
                intra += float(torch.cdist(group, group, compute_mode='donot_use_mm_for_euclid_dist').sum())
            continue
        rows = max(1, memory_budget // (8 * size * x.shape[1]))  # a large class: its rows in blocks
        for member in members:
            group = x[member]
            for start in range(0, size, rows):
                intra += float(
                    torch.cdist(group[start:start + rows], group, compute_mode='donot_use_mm_for_euclid_dist').sum())
    centres = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device)
    centres.index_add_(0, y, x)
    centres /= counts[:, None].to(torch.float64)
    inter = 0.0
    rows = max(1, memory_budget // (8 * num_classes))
    for start in range(0, num_classes, rows):
        dist = torch.cdist(centres[start:start + rows], centres)
        idx = torch.arange(start, min(num_classes, start + rows), device=x.device)
        dist[idx - start, idx] = 0  # the matrix-product path leaves rounding noise on the diagonal
        inter += float(dist.sum())
    if inter == 0:  # every class centre in one point (collapsed embeddings): no density to speak of
        return float('inf') if intra > 0 else float('nan')
    return (intra / z_intra) / (inter / (num_classes * (num_classes - 1)))


def spectral_decay(embeddings: ArrayLike, spectral_skip: Optional[int] = None) -> float:
    """Spectral decay rho = KL(U_D' || s) (S2SD supplementary D, Eq. 19), in float64.

    ``s``: the singular values of the (N, D) embedding matrix as given (not centred), sorted descending, the
    ``spectral_skip`` largest dropped, the remaining D' = D - spectral_skip normalised to sum to 1;
    ``rho = sum_i 1/D' * log((1/D') / s_i)``. Low rho: a flat spectrum (many directions used).

    Args:
        embeddings: (N, D) float embeddings.
        spectral_skip: the largest singular values to drop; default ``round(10 * D / 128)`` (S2SD drops 10 of 128).

    Returns:
        float: rho; inf if a kept singular value is zero (e.g. N < D).
    """
    x = torch.as_tensor(embeddings).to(torch.float64)
    dim = x.shape[1]
    skip = round(10 * dim / 128) if spectral_skip is None else int(spectral_skip)
    if not 0 <= skip < dim:
        raise ValueError(f'spectral_decay: spectral_skip must be in [0, D = {dim}), got {skip}')
    s = torch.linalg.svdvals(x)
    s = torch.cat([s, s.new_zeros(dim - s.numel())])[skip:]  # N < D: the missing singular values are 0
    if (s <= 0).any():
        return float('inf')
    p = s / s.sum()
    u = 1.0 / p.numel()
    return float((u * (math.log(u) - torch.log(p))).sum())


# ---------------------------------------------------------------------------------------------- metric
@METRICS.register_module()
class RetrievalMetric(BaseMetric):
    """Leave-one-out retrieval metrics of a model's embeddings (:func:`retrieval_metrics`) on a test split, results
    ``retrieval/R@1``, ``retrieval/mAP@R``, ... :

        val_evaluator = dict(type='RetrievalMetric', ks=(1, 2, 4, 8), measures=('recall', 'map_at_r', 'nmi'))

    The data samples must carry ``pred_embedding`` (D, ) and ``gt_label`` (one integer). Embeddings are kept on the
    CPU as predicted; the metrics are computed on the CPU after mmengine has gathered every rank's results.

    Args:
        measures: what to compute: the ``metrics`` of :func:`retrieval_metrics` (a key named ``metrics`` would make
            mmengine's Runner read the evaluator config as a list of metrics to build).
        ks, block_size, nmi_seed, nmi_iters, spectral_skip: as :func:`retrieval_metrics`.
        collect_device, prefix: as :class:`mmengine.evaluator.BaseMetric` (default prefix ``'retrieval'``).
    """
    default_prefix = 'retrieval'

    def __init__(self,
                 ks: Sequence[int] = (1, 2, 4, 8),
                 measures: Sequence[str] = ('recall', 'map_at_r', 'nmi'),
                 block_size: Optional[int] = None,
                 nmi_seed: int = 0,
                 nmi_iters: int = 20,
                 spectral_skip: Optional[int] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        unknown = set(measures) - set(METRIC_NAMES)
        if unknown:
            raise ValueError(f'RetrievalMetric: unknown measures {sorted(unknown)}; expected some of {METRIC_NAMES}')
        self.kwargs = dict(
            ks=tuple(ks),
            metrics=tuple(measures),
            block_size=block_size,
            nmi_seed=nmi_seed,
            nmi_iters=nmi_iters,
            spectral_skip=spectral_skip)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            for key in ('pred_embedding', 'gt_label'):
                if key not in sample:
                    raise KeyError(f"RetrievalMetric: a data sample has no '{key}' (keys: {sorted(sample)}); the "
                                   "model's predict must set pred_embedding (D, ) and the dataset gt_label")
            label = torch.as_tensor(sample['gt_label'])
            if label.numel() != 1:
                raise ValueError(f"RetrievalMetric: 'gt_label' must hold one label, got shape {tuple(label.shape)}")
            self.results.append((torch.as_tensor(sample['pred_embedding']).detach().cpu().flatten(), int(label)))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        embeddings = torch.stack([embedding for embedding, _ in results])
        labels = torch.tensor([label for _, label in results])
        return retrieval_metrics(embeddings, labels, device='cpu', **self.kwargs)
