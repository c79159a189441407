"""Centered kernel alignment (CKA): how similar two sets of representations of the same samples are.

Estimators (Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019;
Nguyen et al., "Do Wide and Deep Networks Learn the Same Things?", ICLR 2021):

- ``linear_cka`` (feature-space form, no N x N matrix) and ``cka`` on Gram matrices (example-space form,
  any kernel: ``gram_linear``, ``gram_rbf``); ``debiased=True`` uses the unbiased HSIC estimator, which
  removes the upward bias that makes biased CKA approach 1 when samples are few relative to features;
- ``minibatch_cka`` / ``MinibatchCKA``: the unbiased HSIC_1 summed over batches, so no matrix larger
  than batch x batch is ever built;
- ``cka_matrix``: every (layer of model A, layer of model B) pair in one streaming pass over the data.

All maths runs in float64 unless a ``dtype`` says otherwise; features are centred per batch before
Gram matrices are formed (HSIC_1 is unchanged by it, and float32 then stays close to float64). ``cka_matrix``
forms its products in float32 by default and sums them in float64 (within 1e-6 of all-float64).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from kdlab.analysis.gram import LayerBatch
from kdlab.data.base import ArrayDataset, BatchLoader
from kdlab.errors import ConfigError, ShapeError
from kdlab.models.taps import FeatureTaps

POOLS = ("flatten", "mean")
Progress = Callable[[int, int, str], None]
BatchHook = Callable[[Any, Any, dict[str, torch.Tensor], dict[str, torch.Tensor]], None]


# ------------------------------------------------------------------------------------------ inputs

def as_matrix(x: Any, name: str = "x", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``x`` (array or tensor, (N, ...)) as an (N, D) tensor of ``dtype``; trailing dims are flattened."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if t.ndim < 2:
        raise ShapeError(f"{name}: expected (samples, features...), got shape {tuple(t.shape)}")
    return t.reshape(t.shape[0], -1).to(dtype)


def _pair(x: Any, y: Any, min_n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_matrix(x, "x"), as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"x and y must hold the same samples: {x.shape[0]} rows vs {y.shape[0]}")
    if x.shape[0] < min_n:
        raise ShapeError(f"x, y: need at least {min_n} samples, got {x.shape[0]}")
    return x, y


def pool_features(t: torch.Tensor, pool: str = "flatten") -> torch.Tensor:
    """A layer's output (N, ...) as (N, D): ``flatten`` keeps every unit; ``mean`` averages conv maps
    (N, C, H, W) over space and token sequences (N, L, D) over tokens (2-D outputs are left as they are)."""
    if pool not in POOLS:
        raise ConfigError(f"pool: {pool!r} is not one of {list(POOLS)}")
    if pool == "mean" and t.ndim == 4:
        return t.mean(dim=(2, 3))
    if pool == "mean" and t.ndim == 3:
        return t.mean(dim=1)
    return t.reshape(t.shape[0], -1)


# ------------------------------------------------------------------------------------------ kernels

def gram_linear(x: Any) -> torch.Tensor:
    """Linear kernel Gram matrix X X^T (float64)."""
    x = as_matrix(x)
    return x @ x.T


def gram_rbf(x: Any, threshold: float = 1.0) -> torch.Tensor:
    """RBF Gram matrix exp(-|xi - xj|^2 / (2 s^2)), bandwidth s = ``threshold`` x the median distance
    (the median of the squared distances, diagonal included, as in Kornblith et al.'s code)."""
    if not threshold > 0:
        raise ConfigError(f"threshold: must be > 0 (a fraction of the median distance), got {threshold}")
    x = as_matrix(x)
    dot = x @ x.T
    sq = torch.diagonal(dot)
    d2 = (sq[:, None] + sq[None, :] - 2 * dot).clamp_min(0)
    median = float(np.median(d2.numpy()))  # the mean of the two middle values (torch.median takes the lower)
    return torch.exp(-d2 / (2 * threshold ** 2 * median))


def center_gram(gram: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """H K H (biased), or the U-centring of Szekely et al. whose inner products give the unbiased HSIC
    of Song et al. (2012) up to the factor 1 / (n (n - 3)) (diagonal zeroed)."""
    g = torch.as_tensor(gram, dtype=torch.float64) if not isinstance(gram, torch.Tensor) else gram.clone()
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ShapeError(f"gram: expected a square matrix, got shape {tuple(g.shape)}")
    n = g.shape[0]
    if unbiased:
        if n < 4:
            raise ShapeError(f"gram: the unbiased estimator needs at least 4 samples, got {n}")
        g.fill_diagonal_(0)
        means = g.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
    else:
        means = g.mean(0)
        means = means - means.mean() / 2
    g = g - means[:, None] - means[None, :]
    if unbiased:
        g.fill_diagonal_(0)
    return g


def _ratio(xy: float, xx: float, yy: float) -> float:
    den = xx * yy
    return float(xy / math.sqrt(den)) if den > 0 else float("nan")


def cka(gram_x: Any, gram_y: Any, debiased: bool = False) -> float:
    """CKA of two Gram matrices (example-space form; any kernel). NaN when a representation is constant."""
    gx = center_gram(torch.as_tensor(gram_x, dtype=torch.float64), debiased)
    gy = center_gram(torch.as_tensor(gram_y, dtype=torch.float64), debiased)
    if gx.shape != gy.shape:
        raise ShapeError(f"gram_x {tuple(gx.shape)} and gram_y {tuple(gy.shape)} must describe the same samples")
    return _ratio(float((gx * gy).sum()), float((gx * gx).sum()), float((gy * gy).sum()))


def hsic1(gram_x: Any, gram_y: Any) -> float:
    """The unbiased HSIC estimator (Song et al. 2012, eq. 5; Nguyen et al. 2021's HSIC_1) of two Gram
    matrices of n >= 4 samples."""
    gx = center_gram(torch.as_tensor(gram_x, dtype=torch.float64), unbiased=True)
    gy = center_gram(torch.as_tensor(gram_y, dtype=torch.float64), unbiased=True)
    n = gx.shape[0]
    return float((gx * gy).sum()) / (n * (n - 3))


def linear_cka(x: Any, y: Any, debiased: bool = False) -> float:
    """Linear CKA in the feature-space form (D x D' products only; equals ``cka(gram_linear(x),
    gram_linear(y))``). ``debiased`` needs at least 4 samples."""
    x, y = _pair(x, y, 4 if debiased else 2)
    x, y = x - x.mean(0), y - y.mean(0)
    xy = float((y.T @ x).square().sum())
    xx = float((x.T @ x).square().sum())
    yy = float((y.T @ y).square().sum())
    if not debiased:
        return _ratio(xy, xx, yy)
    n = x.shape[0]
    rx, ry = x.square().sum(1), y.square().sum(1)  # squared row norms = diagonals of the Grams
    nx, ny = float(rx.sum()), float(ry.sum())

    def unbiased(dot: float, ra: torch.Tensor, rb: torch.Tensor, na: float, nb: float) -> float:
        return dot - n / (n - 2) * float(ra @ rb) + na * nb / ((n - 1) * (n - 2))

    return _ratio(unbiased(xy, rx, ry, nx, ny), unbiased(xx, rx, rx, nx, nx), unbiased(yy, ry, ry, ny, ny))


def rbf_cka(x: Any, y: Any, threshold: float = 1.0, debiased: bool = False) -> float:
    """CKA with RBF kernels of bandwidth ``threshold`` x the median distance of each representation."""
    x, y = _pair(x, y, 4 if debiased else 2)
    return cka(gram_rbf(x, threshold), gram_rbf(y, threshold), debiased)


def few_samples_warning(n_samples: int, n_features: int) -> str | None:
    """A warning when biased CKA is unreliable: with fewer samples than features, even independent random
    features give CKA near 1 (50 samples of 1,000 features: about 0.95); the debiased estimator does not."""
    if n_features > n_samples:
        return (f"{n_samples} samples for {n_features} features: biased CKA is inflated towards 1 when samples "
                "are few relative to features; use the debiased / minibatch estimator or more samples")
    return None


# ------------------------------------------------------------------------------------------ minibatch

def _narrow_pairs(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """<U(K_i), U(L_j)> of every pair of narrow layers in the feature-space form, from one float64 product of their
    centred features side by side: ||X_i^T Y_j||^2 - n/(n-2) r_i.r_j + |X_i|^2 |Y_j|^2 / ((n-1)(n-2)), r = the
    squared row norms (the Grams' diagonals). Float64 because the last two terms cancel most of the first."""
    def side(fs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = torch.cat(list(fs), 1).to(torch.float64)
        f = f - f.mean(0)  # the form needs exactly centred columns (a float32 mean is off by its rounding)
        seg = torch.repeat_interleave(torch.arange(len(fs), device=f.device),
                                      torch.tensor([g.shape[1] for g in fs], device=f.device))
        rows = torch.zeros(len(fs), n, dtype=torch.float64, device=f.device).index_add_(0, seg, f.square().T)
        return f, seg, rows

    x, seg_x, rx = side(xs)
    y, seg_y, ry = (x, seg_x, rx) if ys is xs else side(ys)  # a side with itself: prepared once
    sq = (x.T @ y).square()
    blocks = torch.zeros(len(xs), sq.shape[1], dtype=torch.float64, device=sq.device).index_add_(0, seg_x, sq)
    blocks = torch.zeros(len(xs), len(ys), dtype=torch.float64, device=sq.device).index_add_(1, seg_y, blocks)
    return blocks - n / (n - 2) * (rx @ ry.T) + rx.sum(1)[:, None] * ry.sum(1)[None, :] / ((n - 1) * (n - 2))


def _narrow(dims_a: Sequence[int], dims_b: Sequence[int], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which layers take the feature-space form: those narrower than the batch (D < N), when the products of all
    their pairs (N Da Db in float64) cost less than Gram matrices of them (N^2 D / 2, a symmetric rank-k update)
    and their inner products (N^2 per pair); otherwise none."""
    na = torch.tensor([d < n for d in dims_a], dtype=torch.bool)
    nb = torch.tensor([d < n for d in dims_b], dtype=torch.bool)
    sa = sum(d for d in dims_a if d < n)
    sb = sum(d for d in dims_b if d < n)
    if 2 * n * sa * sb >= n * n * ((sa + sb) / 2 + int(na.sum()) * int(nb.sum())):
        return torch.zeros_like(na), torch.zeros_like(nb)
    return na, nb


class _Side:
    """One model's layers in one batch: the Gram triangles (float64, one row per layer) and row sums of the layers
    that need them (all but narrow layers paired only with narrow ones), and the narrow layers' centred features."""

    def __init__(self, items: Sequence[LayerBatch], narrow: torch.Tensor, other_all_narrow: bool,
                 buffer: torch.Tensor | None = None):
        self.wide = ~narrow
        self.has_gram = self.wide | (not other_all_narrow)  # a narrow layer paired with a wide one needs its Gram
        rows = [it.with_gram() for it, g in zip(items, self.has_gram.tolist(), strict=True) if g]
        self.grams = self.sums = None
        if rows:
            n, dev = rows[0].n, rows[0].upper.device
            if buffer is None or buffer.shape != (len(rows), n * n) or buffer.device != dev:
                buffer = torch.empty(len(rows), n * n, dtype=torch.float64, device=dev)
            for out, r in zip(buffer, rows, strict=True):
                out.view(n, n).copy_(r.upper)  # to float64, into the buffer the last batch used
            self.grams, self.sums = buffer, torch.stack([r.sums for r in rows])
        self.narrow = [it.feats for it, w in zip(items, narrow.tolist(), strict=True) if w]

    def self_terms(self, n: int) -> torch.Tensor:
        """<U(K), U(K)> of each layer (feature-space form for a narrow one, else from its Gram)."""
        out = torch.zeros(len(self.wide), dtype=torch.float64)
        if self.grams is not None:
            out[self.has_gram] = _gram_pairs(self, self, n, diagonal=True).cpu()
        if self.narrow:
            pairs = [_narrow_pairs(one, one, n)[0, 0] for one in ([f] for f in self.narrow)]
            out[~self.wide] = torch.stack(pairs).cpu()
        return out


def _gram_pairs(a: _Side, b: _Side, n: int, diagonal: bool = False) -> torch.Tensor:
    """<U(K_i), U(L_j)> from zero-diagonal Grams K~, L~ (Song et al. 2012, eq. 5, times n (n - 3)):
    tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1, with tr(K~ L~) = 2 <upper(K), upper(L)>;
    all pairs of the two sides, or (``diagonal``) each layer of ``a`` with itself."""
    ta, tb = a.sums.sum(1), b.sums.sum(1)
    if diagonal:
        return (2 * (a.grams @ a.grams.T).diagonal() + ta * ta / ((n - 1) * (n - 2))
                - 2 / (n - 2) * a.sums.square().sum(1))
    return (2 * (a.grams @ b.grams.T) + ta[:, None] * tb[None, :] / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (a.sums @ b.sums.T))


class MinibatchCKA:
    """Accumulates HSIC_1 over batches for every (A layer, B layer) pair (Nguyen et al. 2021, eq. 3).

    ``update(feats_a, feats_b)`` takes one batch per layer, as outputs or as ``LayerBatch`` (centred features, and
    the Gram of a layer at least as wide as the batch, formed once: product in ``dtype``, every later sum in
    float64); all Gram pairs come from one product of the stacked triangles. Pairs of layers narrower than the
    batch (e.g. logits) take the feature-space form when it is cheaper, all from one product of their features
    side by side. Batches of fewer than 4 samples (where HSIC_1 is undefined) are skipped and counted in
    ``skipped``. ``value()`` is the (A, B) CKA matrix (float64).
    """

    def __init__(self, n_a: int, n_b: int, dtype: torch.dtype = torch.float64):
        self.dtype = dtype
        self._buffers: dict[str, torch.Tensor | None] = {}  # float64 Gram rows, refilled batch after batch
        self.xy = torch.zeros(n_a, n_b, dtype=torch.float64)
        self.xx = torch.zeros(n_a, dtype=torch.float64)
        self.yy = torch.zeros(n_b, dtype=torch.float64)
        self.batches = self.samples = self.skipped = 0

    def update(self, feats_a: Sequence[torch.Tensor | LayerBatch],
               feats_b: Sequence[torch.Tensor | LayerBatch] | None = None) -> None:
        """Add one batch (``feats_b=None`` compares A's layers with themselves)."""
        sizes = [f.n if isinstance(f, LayerBatch) else f.shape[0] for f in [*feats_a, *(feats_b or [])]]
        n = sizes[0]
        if any(m != n for m in sizes):
            raise ShapeError("every layer's features must hold the same batch of samples")
        if n < 4:
            self.skipped += n
            return
        prep = lambda fs: [f if isinstance(f, LayerBatch) else LayerBatch.of(f, self.dtype) for f in fs]  # noqa: E731
        fa = prep(feats_a)
        fb = fa if feats_b is None else prep(feats_b)
        na, nb = _narrow([f.d for f in fa], [f.d for f in fb], n)
        a = _Side(fa, na, bool(nb.all()), self._buffers.get("a"))
        b = a if feats_b is None else _Side(fb, nb, bool(na.all()), self._buffers.get("b"))
        self._buffers = {"a": a.grams, "b": b.grams}
        xy = torch.zeros(len(fa), len(fb), dtype=torch.float64)
        if a.grams is not None:  # then b has Grams too: of its wide layers, or of all when a has a wide one
            xy[a.has_gram[:, None] & b.has_gram[None, :]] = _gram_pairs(a, b, n).flatten().cpu()
        if a.narrow and b.narrow:
            xy[na[:, None] & nb[None, :]] = _narrow_pairs(a.narrow, b.narrow, n).flatten().cpu()
        scale = 1.0 / (n * (n - 3))
        self.xy += xy * scale
        self.xx += a.self_terms(n) * scale
        self.yy += b.self_terms(n) * scale
        self.batches += 1
        self.samples += n

    def value(self) -> torch.Tensor:
        if not self.batches:
            raise ShapeError(f"no batch of at least 4 samples was seen ({self.skipped} samples skipped)")
        den = self.xx[:, None] * self.yy[None, :]
        out = self.xy / den.clamp_min(1e-300).sqrt()
        return torch.where(den > 0, out, torch.full_like(out, float("nan")))


def minibatch_cka(x: Any, y: Any, batch_size: int = 256) -> float:
    """Linear CKA from HSIC_1 summed over consecutive batches of ``batch_size`` samples. A last batch of
    fewer than 4 samples joins the one before; one batch over all samples gives debiased linear CKA."""
    x, y = _pair(x, y, 4)
    if batch_size < 4:
        raise ConfigError(f"batch_size: must be >= 4 (HSIC_1 needs 4 samples), got {batch_size}")
    n = x.shape[0]
    edges = list(range(0, n, batch_size)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] < 4:
        edges.pop(-2)
    acc = MinibatchCKA(1, 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        acc.update([x[lo:hi]], [y[lo:hi]])
    return float(acc.value()[0, 0])


# ------------------------------------------------------------------------------------------ models

def _batches(data: Any, batch_size: int) -> Iterable[torch.Tensor]:
    """Input batches from an ArrayDataset, a BatchLoader, a tensor or an iterable of batches/(x, y, ...)."""
    if isinstance(data, ArrayDataset):
        data = BatchLoader(data, batch_size)
    if isinstance(data, torch.Tensor):
        return (data[i:i + batch_size] for i in range(0, len(data), batch_size))
    return ((b[0] if isinstance(b, (tuple, list)) else b) for b in data)


def _num_batches(data: Any, batch_size: int) -> int:
    try:
        return -(-len(data) // batch_size) if isinstance(data, torch.Tensor) or hasattr(data, "x") else len(data)
    except TypeError:
        return 0


class _Tapped:
    """One model on a batch: its output, its layers' centred CKA features and the raw outputs of kept layers."""

    def __init__(self, stack: ExitStack, model: nn.Module, paths: Sequence[str], keep: Sequence[str],
                 prep: Callable[[torch.Tensor], LayerBatch]):
        self.model = model
        self.taps = stack.enter_context(FeatureTaps(model, paths, detach=True, transform=prep))
        self.kept = stack.enter_context(FeatureTaps(model, keep, detach=True)) if keep else None

    def __call__(self, x: torch.Tensor) -> tuple[Any, dict[str, LayerBatch], dict[str, torch.Tensor]]:
        out = self.model(x)
        return out, self.taps.pop(), self.kept.pop() if self.kept else {}


@torch.no_grad()
def cka_matrix(model_a: nn.Module, model_b: nn.Module, data: Any, layers_a: Sequence[str],
               layers_b: Sequence[str], batch_size: int = 256, pool: str = "flatten",
               dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
               max_samples: int | None = None, progress: Progress | None = None,
               on_batch: BatchHook | None = None, keep_a: Sequence[str] = (),
               keep_b: Sequence[str] = ()) -> pd.DataFrame:
    """Minibatch linear CKA of every (``layers_a`` x ``layers_b``) pair in one pass over ``data``.

    Each batch runs both models once (in eval mode, under no_grad; a model compared with itself runs
    once) with feature taps that pool and centre each output as it is made (a copy, so later in-place ops cannot
    alter it); all pairs are updated from that batch; the hooks are removed afterwards. Unknown layer names fail
    up front. ``pool`` says how layer outputs become vectors (``flatten`` or spatial/token ``mean``). ``dtype``
    is the precision of the Gram / feature products (float32: within 1e-6 of float64 on centred features, at
    about half the cost); every sum over them is float64. Each output becomes, in its forward hook (still in
    cache), what CKA keeps of it: an N x N float64 Gram triangle (batch 250: 0.5 MB), or the centred features of a
    layer narrower than the batch; that is all the memory it needs beyond the models'.
    ``on_batch(out_a, out_b, kept_a, kept_b)`` sees each batch's model outputs and the raw outputs of the
    ``keep_a`` / ``keep_b`` layers of the same forward passes, so other analyses of these samples need no pass of
    their own. Returns a DataFrame (rows: ``layers_a``, columns: ``layers_b``) whose ``attrs`` record the
    estimator, pool, samples and skipped samples.
    """
    if pool not in POOLS:
        raise ConfigError(f"pool: {pool!r} is not one of {list(POOLS)}")
    if batch_size < 4:
        raise ConfigError(f"batch_size: must be >= 4 (HSIC_1 needs 4 samples per batch), got {batch_size}")
    if dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"dtype: {dtype} is not one of [torch.float32, torch.float64]")
    layers_a, layers_b, keep_a, keep_b = list(layers_a), list(layers_b), list(keep_a), list(keep_b)
    for name, layers in (("layers_a", layers_a), ("layers_b", layers_b)):
        if not layers:
            raise ConfigError(f"{name}: give at least one layer path")
    same = model_a is model_b
    dev = torch.device(device) if device is not None else next(model_a.parameters()).device
    modes = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    total = _num_batches(data, batch_size)
    prep = lambda t: LayerBatch.of(pool_features(t, pool), dtype)  # noqa: E731  (in the hook: output in cache)
    try:
        with ExitStack() as stack:
            stack.enter_context(threadpool_limits(1, user_api="blas"))  # syrk on one thread (gram.gram_upper)
            run_a = _Tapped(stack, model_a, list(dict.fromkeys(layers_a + layers_b)) if same else layers_a,
                            list(dict.fromkeys(keep_a + keep_b)) if same else keep_a, prep)
            run_b = run_a if same else _Tapped(stack, model_b, layers_b, keep_b, prep)
            acc = MinibatchCKA(len(layers_a), len(layers_b), dtype)
            for i, x in enumerate(_batches(data, batch_size)):
                if max_samples is not None and acc.samples + acc.skipped >= max_samples:
                    break
                if max_samples is not None:
                    x = x[:max_samples - acc.samples - acc.skipped]
                x = x.to(dev)
                out_a, fa, ka = run_a(x)
                out_b, fb, kb = (out_a, fa, ka) if same else run_b(x)
                acc.update([fa[p] for p in layers_a], [fb[p] for p in layers_b])
                if on_batch is not None:
                    on_batch(out_a, out_b, {p: ka[p] for p in keep_a}, {p: kb[p] for p in keep_b})
                if progress is not None:
                    progress(i + 1, total, f"batch {i + 1}/{total or '?'}")
    finally:
        model_a.train(modes[0])
        model_b.train(modes[1])
    df = pd.DataFrame(acc.value().numpy(), index=pd.Index(layers_a, name="a"),
                      columns=pd.Index(layers_b, name="b"))
    df.attrs.update(estimator="minibatch linear CKA (unbiased HSIC_1)", pool=pool, n_samples=acc.samples,
                    skipped=acc.skipped, batch_size=batch_size, batches=acc.batches)
    return df


def matched_diagonal(df: pd.DataFrame) -> pd.Series:
    """CKA of matched stages: the i-th A layer with the i-th B layer, stages aligned at the end (deepest with
    deepest) when the counts differ, as distillers pair them."""
    n = min(df.shape)
    rows, cols = df.index[-n:], df.columns[-n:]
    return pd.Series([float(df.loc[r, c]) for r, c in zip(rows, cols, strict=True)],
                     index=[f"{r} ~ {c}" for r, c in zip(rows, cols, strict=True)], name="cka")
