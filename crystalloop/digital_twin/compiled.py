"""One batched path for every tree of every ensemble member: flat node arrays and a numba kernel.

An uncertainty ensemble of the twin holds ~100 members, each ``StandardScaler → model`` with a
random forest, gradient boosting or XGBoost model of 10–200 trees. Evaluated member by member
(:func:`~crystalloop.digital_twin.uncertainty.fast_predict`), a prediction pays one library call per
tree or member and one scaled float32 copy of ``X`` per member. :func:`compile_members` instead
lays every node of every tree into flat arrays (feature, threshold, children, leaf value, the
tree's member and weight) and :meth:`CompiledTrees.member_predictions` walks all trees for all
rows in one compiled loop (numba, rows in parallel):

* the scaler is applied on the fly for the one feature a node tests, with the same float64
  operations and the same float32 rounding as ``StandardScaler`` followed by the tree libraries'
  float32 input, so every split goes the same way;
* scikit-learn trees split on ``x <= threshold``, XGBoost on ``x < split_condition``;
* a member's prediction is its offset (0 for a forest, the initial estimate for gradient
  boosting, ``base_score`` for XGBoost) plus the weighted sum of its trees' leaf values (``1 /
  n_trees`` for a forest, the learning rate for gradient boosting, 1 for XGBoost).

Every tree is padded to a complete binary tree of its depth (a leaf above that depth sends every
row left and fills the leaves below it) and walked a fixed number of steps without branches.
Ensembles with trees deeper than :data:`HEAP_DEPTH` (unpruned random forests) and members of other
kinds (SVR, a feature transformer in front) are not compiled; they keep the member-by-member
path. Results equal that path to float rounding (tested).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline

__all__ = ["CompiledTrees", "compile_members", "compiled_prediction"]

_ENABLED = True


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


@dataclass
class CompiledTrees:
    """Every tree of an ensemble's members in flat arrays (see the module docstring)."""

    n_members: int
    n_features: int
    mean: np.ndarray        # (n_members, n_features) scaler mean (0 without one)
    scale: np.ndarray       # (n_members, n_features) scaler scale (1 without one)
    root: np.ndarray        # (n_trees,) first node of each tree
    member: np.ndarray      # (n_trees,) member of each tree
    weight: np.ndarray      # (n_trees,) multiplier of the tree's leaf values
    strict: np.ndarray      # (n_trees,) 1: go left when x < threshold (XGBoost), 0: x <= threshold
    feature: np.ndarray     # (n_nodes,)
    threshold: np.ndarray   # (n_nodes,) float64
    left: np.ndarray        # (n_nodes,) -1 at a leaf
    right: np.ndarray       # (n_nodes,)
    value: np.ndarray       # (n_nodes,) leaf value
    offset: np.ndarray      # (n_members,)

    def __post_init__(self) -> None:
        counts = np.bincount(self.member, minlength=self.n_members)
        if np.any(np.diff(self.member) < 0):
            raise ValueError("trees must be grouped by member")
        self.tree_hi = np.cumsum(counts).astype(np.int64)
        self.tree_lo = (self.tree_hi - counts).astype(np.int64)
        # "x < t" (XGBoost) is "x <= the largest double below t": one comparison for every tree
        thr = np.where(np.repeat(self.strict, np.diff(np.append(self.root, len(self.left)))) == 1,
                       np.nextafter(self.threshold, -np.inf), self.threshold)
        depths, feats, thrs, leaves = [], [], [], []
        for t in range(len(self.root)):
            d, f, h, v = _complete(self.root[t], self.left, self.right, self.feature, thr, self.value)
            depths.append(d)
            feats.append(f)
            thrs.append(h)
            leaves.append(v)
        self.depth = np.array(depths, dtype=np.int64)
        sizes = (1 << self.depth) - 1
        self.node_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.leaf_off = np.concatenate([[0], np.cumsum(sizes + 1)[:-1]]).astype(np.int64)  # first leaf of each tree
        self.feat = np.concatenate(feats).astype(np.int64)
        self.thr = np.concatenate(thrs)
        self.leaf = np.concatenate(leaves)

    @property
    def n_trees(self) -> int:
        return len(self.root)

    def member_predictions(self, X: np.ndarray) -> np.ndarray:
        """Predictions of every member, shape ``(n_members, n_rows)``."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.zeros((self.n_members, X.shape[0]))
        _walk()(X, self.mean, self.scale, self.tree_lo, self.tree_hi, self.depth, self.node_off, self.leaf_off,
                self.weight, self.feat, self.thr, self.leaf, out)
        out += self.offset[:, None]
        return out


_KERNEL = None


#: deepest tree the compiled path takes: trees are padded to complete trees (2**depth leaves) and walked
#: without branches; measured on one core (process time, docs/benchmarks.md) this beats the tree
#: libraries for boosted trees of depth 3 (XGBoost 1.45x, gradient boosting 1.0-1.2x) but not for
#: deep random-forest trees (depth 11: 0.5x, even walking their own nodes), which keep the other path
HEAP_DEPTH = 6


def _depth(root, left, right) -> int:
    stack, best = [(root, 0)], 0
    while stack:
        node, d = stack.pop()
        if left[node] < 0:
            best = max(best, d)
        else:
            stack += [(left[node], d + 1), (right[node], d + 1)]
    return best


def _complete(root, left, right, feature, threshold, value):
    """A tree as a complete binary tree in heap order: (depth, features, thresholds, leaf values).

    A leaf above the full depth becomes a node that sends every row left (threshold +inf), and its
    value fills the leaves below it."""
    D = _depth(root, left, right)
    if D > HEAP_DEPTH:
        raise _TooDeep(D)
    f = np.zeros((1 << D) - 1, dtype=np.int64)
    h = np.full((1 << D) - 1, np.inf)
    v = np.zeros(1 << D)

    def fill(node, k, d):
        if d == D:
            v[k - ((1 << D) - 1)] = value[node]
            return
        if left[node] < 0:  # a leaf above the full depth: every path below it ends at its value
            fill(node, 2 * k + 1, d + 1)
            fill(node, 2 * k + 2, d + 1)
            return
        f[k], h[k] = feature[node], threshold[node]
        fill(left[node], 2 * k + 1, d + 1)
        fill(right[node], 2 * k + 2, d + 1)

    fill(root, 0, 0)
    return D, f, h, v


class _TooDeep(Exception):
    pass


def _walk():
    """The numba kernel, compiled on first use (cached on disk by numba)."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    from numba import njit, prange

    @njit(parallel=True, cache=True, nogil=True)
    def walk(X, mean, scale, tree_lo, tree_hi, depth, node_off, leaf_off, weight, feat, thr, leaf, out):
        # every tree is a complete binary tree of its own depth in heap order (children of k: 2k+1, 2k+2);
        # a row goes right when its scaled value exceeds the threshold: a fixed number of steps, no branch
        n, n_feat = X.shape
        block = 512  # rows per block: a tree's nodes stay in cache while the block's rows walk it
        n_blocks = (n + block - 1) // block
        for b in prange(n_blocks):
            lo = b * block
            hi = min(n, lo + block)
            nb = hi - lo
            z = np.empty((nb, n_feat))
            k = np.empty(nb, dtype=np.int64)
            for m in range(tree_lo.shape[0]):
                for i in range(nb):
                    for f in range(n_feat):
                        z[i, f] = np.float64(np.float32((X[lo + i, f] - mean[m, f]) / scale[m, f]))
                for t in range(tree_lo[m], tree_hi[m]):
                    w = weight[t]
                    base = node_off[t]
                    k[:] = 0
                    for _ in range(depth[t]):
                        for i in range(nb):
                            j = base + k[i]
                            k[i] = 2 * k[i] + 1 + (1 if z[i, feat[j]] > thr[j] else 0)
                    first = leaf_off[t] - ((1 << depth[t]) - 1)
                    for i in range(nb):
                        out[m, lo + i] += w * leaf[first + k[i]]

    _KERNEL = walk
    return walk


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


def _sk_tree(tree):
    t = tree.tree_
    left = t.children_left.astype(np.int64)
    return (t.feature.astype(np.int64), t.threshold.astype(np.float64), left,
            t.children_right.astype(np.int64), t.value[:, 0, 0].astype(np.float64))


def _xgb_trees(booster):
    doc = json.loads(bytes(booster.save_raw("json")))
    learner = doc["learner"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree" or int(learner["learner_model_param"].get("num_target", "1")) != 1:
        return None
    base = float(str(learner["learner_model_param"]["base_score"]).strip("[]"))
    trees = []
    for tr in gb["model"]["trees"]:
        left = np.asarray(tr["left_children"], dtype=np.int64)
        cond = np.asarray(tr["split_conditions"], dtype=np.float32).astype(np.float64)
        leaf = left < 0
        trees.append((np.asarray(tr["split_indices"], dtype=np.int64), np.where(leaf, 0.0, cond), left,
                      np.asarray(tr["right_children"], dtype=np.int64), np.where(leaf, cond, 0.0)))
    return base, trees


def compile_members(estimators, n_features: int) -> CompiledTrees | None:
    """Flatten the trees of ``estimators`` (fitted ensemble members); ``None`` when a member is not a
    ``[StandardScaler →]`` random forest, gradient boosting or XGBoost model."""
    n_m = len(estimators)
    mean = np.zeros((n_m, n_features))
    scale = np.ones((n_m, n_features))
    parts: list[tuple] = []  # (member, weight, strict, (feature, threshold, left, right, value))
    offset = np.zeros(n_m)
    for m, est in enumerate(estimators):
        plan = _unwrap(est)
        if plan is None:
            return None
        mu, sc, model = plan
        if mu is not None:
            mean[m] = mu
        if sc is not None:
            scale[m] = sc
        name = type(model).__name__
        if name in ("RandomForestRegressor", "ExtraTreesRegressor") and model.n_outputs_ == 1:
            w = 1.0 / len(model.estimators_)
            parts += [(m, w, 0, _sk_tree(t)) for t in model.estimators_]
        elif name == "GradientBoostingRegressor":
            offset[m] = float(np.asarray(model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))).ravel()[0])
            parts += [(m, float(model.learning_rate), 0, _sk_tree(t)) for t in model.estimators_[:, 0]]
        elif name == "XGBRegressor":
            res = _xgb_trees(model.get_booster())
            if res is None:
                return None
            offset[m], trees = res
            parts += [(m, 1.0, 1, tr) for tr in trees]
        else:
            return None
    if not parts:
        return None
    try:
        return _assemble(parts, n_m, n_features, mean, scale, offset)
    except _TooDeep:
        return None


def _assemble(parts, n_m, n_features, mean, scale, offset) -> CompiledTrees:
    sizes = np.array([len(p[3][0]) for p in parts])
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cat = [np.concatenate([p[3][k] for p in parts]) for k in range(5)]
    shift = np.repeat(start, sizes)
    left = np.where(cat[2] >= 0, cat[2] + shift, -1)
    right = np.where(cat[3] >= 0, cat[3] + shift, -1)
    feature = np.where(cat[2] >= 0, cat[0], 0)
    return CompiledTrees(
        n_members=n_m, n_features=n_features, mean=mean, scale=scale,
        root=start.astype(np.int64), member=np.array([p[0] for p in parts], dtype=np.int64),
        weight=np.array([p[1] for p in parts], dtype=np.float64), strict=np.array([p[2] for p in parts], dtype=np.int64),
        feature=feature.astype(np.int64), threshold=cat[1], left=left.astype(np.int64), right=right.astype(np.int64),
        value=cat[4], offset=offset,
    )
