"""One batched path for every tree of every ensemble member: flat node arrays and a numba kernel.

An uncertainty ensemble of the twin holds ~100 members, each ``[StandardScaler →] model`` with a
random forest, gradient boosting or XGBoost model of 10–200 trees. Evaluated member by member
(:func:`~crystalloop.digital_twin.uncertainty.fast_predict`), a prediction pays one library call per
tree or member and one scaled float32 copy of ``X`` per member. :func:`compile_members` instead
lays every node of every tree into one flat node array, and
:meth:`CompiledTrees.member_predictions` walks all trees of all members for all rows in one
compiled loop (numba; chunks of rows on ``n_jobs`` threads):

* **No scaling at prediction time.** A member tests ``float32((x - mean) / scale) <= t`` (the
  scaler's float64 operations, then the float32 input of the tree libraries; scikit-learn splits
  on ``<= t``, XGBoost on ``< t``, which is ``<=`` the float32 just below ``t``). That test is
  monotone in the raw value ``x``, so it equals ``x <= T`` for one double ``T`` per node, found
  once by bisection over the doubles. The raw thresholds of all members are merged per feature:
  a node stores the rank ``j`` of its ``T`` among the sorted distinct thresholds ``U`` of its
  feature, and a row is reduced once per call to ranks ``r = #{u in U : u < x}`` (uint16 when they
  fit), so that ``x <= U[j]`` exactly when ``r <= j``. Every split goes the way the library's does.
* **Flat nodes, fixed steps.** Each node is one uint64 packing ``(first child, rank, feature)``
  with its two children next to each other, so a step is one node load, one rank load and
  ``k = child + (r[feature] > rank)`` without a branch; a leaf points to itself and never moves,
  and a tree is walked as many steps as it is deep. Eight rows walk a tree together (eight
  independent chains of loads for the CPU to overlap); the nodes of a member's trees are
  contiguous and rows are taken in blocks of :data:`BLOCK`, so the block's ranks and the tree's
  nodes stay in the L1 cache.
* A member's prediction is its offset (0 for a forest, the initial estimate for gradient boosting,
  ``base_score`` for XGBoost) plus its trees' leaf values in tree order (times the learning rate
  for gradient boosting), divided by the number of trees for a forest, rounded to float32 after
  every addition for XGBoost — the libraries' own order of operations, so the members'
  predictions agree with the libraries' to the last bit (tested).

Members of other kinds (SVR, a feature transformer in front) are not compiled, nor ensembles over
more than 256 features or with 2**24 distinct thresholds of one feature; they keep the
member-by-member path. Without numba, :meth:`CompiledTrees.member_predictions` walks the same
arrays with numpy (same results, slower) and :func:`compile_members` returns ``None`` so that the
twin uses the member-by-member path. Results do not depend on the number of threads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline

from ..errors import ConfigError

__all__ = ["CompiledTrees", "compile_members", "compiled_prediction"]

_ENABLED = True

#: rows per block of the kernel: a block's ranks (BLOCK x n_features uint16) and a tree's nodes stay in L1
BLOCK = 256

#: a node packs ``first_child << 32 | rank << 8 | feature``; a leaf has rank _LEAF_RANK (above every
#: row's rank, so the step stays at the leaf); more features or thresholds than fit are not compiled
_FEATURE_BITS, _RANK_BITS = 8, 24
_LEAF_RANK = (1 << _RANK_BITS) - 1


@contextlib.contextmanager
def compiled_prediction(enabled: bool):
    """Switch the compiled path on or off inside a ``with`` block (benchmarks compare both)."""
    global _ENABLED
    old, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = old


def is_enabled() -> bool:
    return _ENABLED


def have_numba() -> bool:
    """Whether numba imports (the compiled kernel); without it the twin keeps the member-by-member path."""
    return importlib.util.find_spec("numba") is not None


@dataclass
class CompiledTrees:
    """Every tree of an ensemble's members in one flat node array (see the module docstring).

    Trees are grouped by member; a tree's nodes are contiguous, its root first, the two children
    of a node next to each other."""

    n_members: int
    n_features: int
    thresholds: list        # per feature: sorted distinct raw-space thresholds U_f (float64)
    nodes: np.ndarray       # (n_nodes,) uint64: first child << 32 | rank of the threshold in U_f << 8 | feature
    value: np.ndarray       # (n_nodes,) float64: leaf value times the tree's weight (0 inside)
    root: np.ndarray        # (n_trees,) int64 first node of each tree
    depth: np.ndarray       # (n_trees,) int64 steps from the root to its deepest leaf
    tree_lo: np.ndarray     # (n_members,) int64 first tree of each member
    tree_hi: np.ndarray     # (n_members,) int64 one past its last tree
    offset: np.ndarray      # (n_members,) float64 start of the sum
    divisor: np.ndarray     # (n_members,) float64 the sum is divided by it (number of trees of a forest, else 1)
    single: np.ndarray      # (n_members,) bool: the sum is rounded to float32 after every tree (XGBoost)

    @property
    def n_trees(self) -> int:
        return len(self.root)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def ranks(self, X: np.ndarray) -> np.ndarray:
        """Each value's rank among its feature's thresholds, shape ``(n_rows, n_features)``."""
        X = np.asarray(X, dtype=np.float64)
        width = max((len(u) for u in self.thresholds), default=0)
        R = np.empty(X.shape, dtype=np.uint16 if width < np.iinfo(np.uint16).max else np.uint32)
        for f, u in enumerate(self.thresholds):
            R[:, f] = np.searchsorted(u, X[:, f], side="left")
        return R

    def member_predictions(self, X: np.ndarray, *, use_numba: bool | None = None) -> np.ndarray:
        """Predictions of every member, shape ``(n_members, n_rows)``.

        ``X`` holds raw (unscaled) features, shape ``(n_rows, n_features)``. The numba kernel runs
        on ``numba.get_num_threads()`` threads, which take chunks of rows from a queue (a thread
        that shares its core with another process does fewer, instead of holding up the call as a
        fixed split would); ``use_numba=False`` (or numba missing) walks the same arrays with numpy,
        with the same results."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ConfigError(f"X has shape {X.shape}; expected (n_rows, {self.n_features})")
        R = self.ranks(X)
        out = np.empty((self.n_members, X.shape[0]))
        if use_numba is None:
            use_numba = have_numba()
        if use_numba:
            import numba

            kernel = _kernel()
            args = (R, self.nodes, self.value, self.root, self.depth, self.tree_lo, self.tree_hi,
                    self.offset, self.divisor, self.single, out)
            n, threads = len(R), numba.get_num_threads()
            if threads <= 1 or n <= 2 * BLOCK:
                kernel(*args, 0, n)
            else:
                chunk = BLOCK * max(1, n // (BLOCK * threads * 8))  # ~8 chunks per thread
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda lo: kernel(*args, lo, min(n, lo + chunk)), range(0, n, chunk)))
        else:
            _walk_numpy(R, self.nodes, self.value, self.root, self.depth, self.tree_lo, self.tree_hi,
                        self.offset, self.divisor, self.single, out)
        return out


def _walk_numpy(R, nodes, value, root, depth, tree_lo, tree_hi, offset, divisor, single, out):
    """The kernel's arithmetic with numpy, all rows at once (the fallback without numba)."""
    rows = np.arange(R.shape[0])
    R = R.astype(np.int64)
    for m in range(len(tree_lo)):
        acc = np.full(R.shape[0], offset[m])
        for t in range(tree_lo[m], tree_hi[m]):
            k = np.full(R.shape[0], root[t], dtype=np.uint64)
            for _ in range(depth[t]):
                nd = nodes[k]
                k = (nd >> 32) + (R[rows, nd & 0xFF] > ((nd >> 8) & 0xFFFFFF))
            acc += value[k]
            if single[m]:
                acc = acc.astype(np.float32).astype(np.float64)
        out[m] = acc / divisor[m]


_KERNEL = None


def _kernel():
    """The numba kernel, compiled on first use (cached on disk by numba)."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    from numba import njit

    @njit(inline="always", cache=True)
    def step(nd, R, a):
        # nd packs first child << 32 | rank << 8 | feature (see _FEATURE_BITS, _RANK_BITS); unsigned
        # node and row indices spare numba's negative-index fix-up (1.5x faster, measured)
        go_right = R[a, nd & np.uint64(0xFF)] > ((nd >> np.uint64(8)) & np.uint64(0xFFFFFF))
        return (nd >> np.uint64(32)) + (np.uint64(1) if go_right else np.uint64(0))

    @njit(cache=True, nogil=True)
    def walk(R, nodes, value, root, depth, tree_lo, tree_hi, offset, divisor, single, out, row_lo, row_hi):
        # rows row_lo..row_hi-1 into out[:, row_lo:row_hi]; threads call it on disjoint row ranges
        block = BLOCK
        n_blocks = (row_hi - row_lo + block - 1) // block
        for b in range(n_blocks):
            lo = row_lo + b * block
            nb = min(row_hi, lo + block) - lo
            acc = np.empty(nb)
            for m in range(tree_lo.shape[0]):
                for i in range(nb):
                    acc[i] = offset[m]
                for t in range(tree_lo[m], tree_hi[m]):
                    r0 = np.uint64(root[t])
                    d = depth[t]
                    i = 0
                    while i + 8 <= nb:  # eight rows at once: independent load chains
                        a = np.uint64(lo + i)
                        k0 = k1 = k2 = k3 = k4 = k5 = k6 = k7 = r0
                        for _ in range(d):
                            k0 = step(nodes[k0], R, a)
                            k1 = step(nodes[k1], R, a + np.uint64(1))
                            k2 = step(nodes[k2], R, a + np.uint64(2))
                            k3 = step(nodes[k3], R, a + np.uint64(3))
                            k4 = step(nodes[k4], R, a + np.uint64(4))
                            k5 = step(nodes[k5], R, a + np.uint64(5))
                            k6 = step(nodes[k6], R, a + np.uint64(6))
                            k7 = step(nodes[k7], R, a + np.uint64(7))
                        acc[i] += value[k0]
                        acc[i + 1] += value[k1]
                        acc[i + 2] += value[k2]
                        acc[i + 3] += value[k3]
                        acc[i + 4] += value[k4]
                        acc[i + 5] += value[k5]
                        acc[i + 6] += value[k6]
                        acc[i + 7] += value[k7]
                        i += 8
                    while i < nb:
                        k = r0
                        for _ in range(d):
                            k = step(nodes[k], R, np.uint64(lo + i))
                        acc[i] += value[k]
                        i += 1
                    if single[m]:  # XGBoost adds in float32: a double sum of two floats rounded once is that sum
                        for i in range(nb):
                            acc[i] = np.float32(acc[i])
                dv = divisor[m]
                for i in range(nb):
                    out[m, lo + i] = acc[i] / dv

    _KERNEL = walk
    return walk


# ---------------------------------------------------------------------------------------- building


def _unwrap(member):
    while type(member).__name__ == "WeightedERMRegressor" and hasattr(member, "estimator_"):
        member = member.estimator_
    mean = scale = None
    if isinstance(member, Pipeline):
        steps = [st for _, st in member.steps[:-1] if st is not None and st != "passthrough"]
        if len(steps) > 1 or (steps and type(steps[0]).__name__ != "StandardScaler"):
            return None
        if steps:
            sc = steps[0]
            mean = sc.mean_ if sc.with_mean else None
            scale = sc.scale_ if sc.with_std else None
        member = member.steps[-1][1]
    return mean, scale, member


def _below32(t: np.ndarray) -> np.ndarray:
    """The largest float32 not above each double of ``t``: ``float32 z <= t`` iff ``z <= _below32(t)``."""
    with np.errstate(over="ignore"):
        f = t.astype(np.float32)
    return np.where(f.astype(np.float64) > t, np.nextafter(f, np.float32(-np.inf)), f)


def _sk_tree(tree):
    """A scikit-learn tree: (feature, float32 threshold for ``z <= thr``, left, right, leaf value)."""
    t = tree.tree_
    left = t.children_left.astype(np.int64)
    thr = _below32(t.threshold.astype(np.float64))
    return (t.feature.astype(np.int64), thr, left, t.children_right.astype(np.int64),
            t.value[:, 0, 0].astype(np.float64))


def _xgb_trees(booster):
    doc = json.loads(bytes(booster.save_raw("json")))
    learner = doc["learner"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree" or int(learner["learner_model_param"].get("num_target", "1")) != 1:
        return None
    base = float(np.float32(str(learner["learner_model_param"]["base_score"]).strip("[]")))
    trees = []
    for tr in gb["model"]["trees"]:
        left = np.asarray(tr["left_children"], dtype=np.int64)
        cond = np.asarray(tr["split_conditions"], dtype=np.float32)
        leaf = left < 0
        # XGBoost goes left when the float32 value is < cond: <= the float32 just below it
        below = np.nextafter(cond, np.float32(-np.inf))
        trees.append((np.asarray(tr["split_indices"], dtype=np.int64), np.where(leaf, 0.0, below.astype(np.float64)),
                      left, np.asarray(tr["right_children"], dtype=np.int64),
                      np.where(leaf, cond.astype(np.float64), 0.0)))
    return base, trees


def _key(d: np.ndarray) -> np.ndarray:
    """Doubles to int64 keys in the same order (-0.0 and 0.0 share a key)."""
    b = d.view(np.int64)
    return np.where(b >= 0, b, -(b & np.int64(0x7FFFFFFFFFFFFFFF)))


def _unkey(k: np.ndarray) -> np.ndarray:
    return np.where(k >= 0, k, (-k) | np.int64(-0x8000000000000000)).view(np.float64)


def _raw_thresholds(thr32: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The largest double ``x`` with ``float32((x - mean) / scale) <= thr32``, per node (bisection).

    The test is monotone in ``x`` (every step rounds monotonically, ``scale > 0``), so it equals
    ``x <= T``; ``T`` is ``-inf`` when no finite value passes and ``+inf`` when all do."""

    def passes(x):
        with np.errstate(over="ignore", invalid="ignore"):
            return ((x - mean) / scale).astype(np.float32) <= thr32

    lo = np.full(len(thr32), _key(np.array([-np.inf]))[0])
    hi = np.full(len(thr32), _key(np.array([np.inf]))[0])
    top = passes(np.full(len(thr32), np.inf))
    todo = ~top
    while True:
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        open_ = todo & (mid > lo)
        if not open_.any():
            break
        ok = passes(_unkey(mid))
        lo = np.where(open_ & ok, mid, lo)
        hi = np.where(open_ & ~ok, mid, hi)
    return np.where(top, np.inf, _unkey(lo))


def _layout(trees):
    """All trees in one array, each contiguous and in breadth-first order with siblings adjacent.

    ``trees``: per tree ``(feature, threshold, left, right, value)`` with its own node numbers (-1:
    no child). Returns ``(feature, threshold, first child, value, inner, size, depth)`` over the
    new node order (a leaf is its own first child, numbered globally) and per tree its node count
    and depth. Numpy, one level of all trees at a time."""
    size = np.array([len(t[0]) for t in trees], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    tree = np.repeat(np.arange(len(trees)), size)
    shift = start[tree]
    feature, thr, left, right, value = (np.concatenate([t[k] for t in trees]) for k in range(5))
    inner = left >= 0
    gl, gr = left[inner] + shift[inner], right[inner] + shift[inner]
    n = len(tree)
    parent = np.full(n, -1, dtype=np.int64)
    side = np.zeros(n, dtype=np.int64)
    parent[gl], parent[gr], side[gr] = np.flatnonzero(inner), np.flatnonzero(inner), 1
    bfs = np.full(n, -1, dtype=np.int64)  # index inside its tree in the new order
    level = start.copy()  # the roots
    bfs[level] = 0
    filled = np.ones(len(trees), dtype=np.int64)  # nodes numbered so far per tree
    depth = np.zeros(len(trees), dtype=np.int64)
    d = 0
    while True:
        nxt = np.concatenate([gl[np.isin(np.flatnonzero(inner), level)], gr[np.isin(np.flatnonzero(inner), level)]])
        if not len(nxt):
            break
        d += 1
        nxt = nxt[np.lexsort((side[nxt], bfs[parent[nxt]], tree[nxt]))]
        t = tree[nxt]
        first_of = np.concatenate([[True], t[1:] != t[:-1]])
        group_start = np.maximum.accumulate(np.where(first_of, np.arange(len(nxt)), 0))
        bfs[nxt] = filled[t] + np.arange(len(nxt)) - group_start
        np.add.at(filled, t, 1)
        depth[np.unique(t)] = d
        level = nxt
    order = np.empty(n, dtype=np.int64)
    pos = shift + bfs  # new global position of every old node
    order[pos] = np.arange(n)
    first = np.arange(n, dtype=np.int64)  # at the old node numbers: a leaf is its own first child
    first[np.flatnonzero(inner)] = pos[gl]
    first = np.where(inner, first, pos)
    inner_o = inner[order]
    return (np.where(inner_o, feature[order], 0), np.where(inner_o, thr[order], np.inf), first[order],
            np.where(inner_o, 0.0, value[order]), inner_o, size, depth)


def compile_members(estimators, n_features: int) -> CompiledTrees | None:
    """Flatten the trees of ``estimators`` (fitted ensemble members); ``None`` when a member is not a
    ``[StandardScaler →]`` random forest, gradient boosting or XGBoost model, or numba is missing."""
    if not have_numba():
        return None
    return _compile(estimators, n_features)


def _compile(estimators, n_features: int) -> CompiledTrees | None:
    n_m = len(estimators)
    offset = np.zeros(n_m)
    divisor = np.ones(n_m)
    single = np.zeros(n_m, dtype=np.bool_)
    trees: list[tuple] = []  # (member, weight, (feature, thr32, left, right, value))
    means, scales = np.zeros((n_m, n_features)), np.ones((n_m, n_features))
    for m, est in enumerate(estimators):
        plan = _unwrap(est)
        if plan is None:
            return None
        mu, sc, model = plan
        if mu is not None:
            means[m] = mu
        if sc is not None:
            scales[m] = sc
        name = type(model).__name__
        if name in ("RandomForestRegressor", "ExtraTreesRegressor") and model.n_outputs_ == 1:
            divisor[m] = len(model.estimators_)
            trees += [(m, 1.0, _sk_tree(t)) for t in model.estimators_]
        elif name == "GradientBoostingRegressor":
            offset[m] = float(np.asarray(model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))).ravel()[0])
            trees += [(m, float(model.learning_rate), _sk_tree(t)) for t in model.estimators_[:, 0]]
        elif name == "XGBRegressor":
            res = _xgb_trees(model.get_booster())
            if res is None:
                return None
            offset[m], xt = res
            single[m] = True
            trees += [(m, 1.0, tr) for tr in xt]
        else:
            return None
    if not trees:
        return None
    feat, thr32, first, value, inner, sizes, depth = _layout([tr for _, _, tr in trees])
    root = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    member = np.repeat(np.array([m for m, _, _ in trees], dtype=np.int64), sizes)
    feat = feat.astype(np.int64)
    value = value * np.repeat(np.array([w for _, w, _ in trees]), sizes)  # the libraries' lr * value, once per leaf
    raw = _raw_thresholds(thr32[inner], means[member[inner], feat[inner]], scales[member[inner], feat[inner]])
    rank = np.full(len(feat), _LEAF_RANK, dtype=np.int64)
    thresholds = []
    fi = feat[inner]
    rank_inner = np.empty(len(raw), dtype=np.int64)
    for f in range(n_features):
        sel = fi == f
        u = np.unique(raw[sel])
        thresholds.append(u)
        rank_inner[sel] = np.searchsorted(u, raw[sel])
    rank[inner] = rank_inner
    if (n_features > 1 << _FEATURE_BITS or max((len(u) for u in thresholds), default=0) >= _LEAF_RANK
            or len(feat) >= 1 << 31):
        return None  # does not fit the packed nodes
    counts = np.bincount([m for m, _, _ in trees], minlength=n_m)
    tree_hi = np.cumsum(counts).astype(np.int64)
    return CompiledTrees(
        n_members=n_m, n_features=n_features, thresholds=thresholds,
        nodes=((first << 32) | (rank << _FEATURE_BITS) | feat).astype(np.uint64),
        value=value, root=root, depth=depth,
        tree_lo=(tree_hi - counts).astype(np.int64), tree_hi=tree_hi, offset=offset, divisor=divisor,
        single=single,
    )
