"""Source-free adaptation by pseudo-label distillation: a source model adapted on unlabelled target data alone.

Two methods, adapted to image classification on CPU:

- **GLC** (Qu et al., CVPR 2023, "Upcycling Models under Domain and Category Shift"): global one-vs-all
  clustering gives every target sample the class of its nearest positive prototype when that class claims it
  (closer to its positive prototype than to any of its k-means negative prototypes), else "unknown" (-1, trained
  towards the uniform prediction); a local k-nearest-neighbour consensus term pulls each prediction towards its
  neighbours'. The feature extractor trains on both (the source classifier stays frozen, as in GLC);
  pseudo-labels are recomputed every epoch. The normalised entropy of the prediction is the unknown score.
- **LPLD** (Yoon et al., ECCV 2024, low-confidence pseudo-label distillation; detection -> classification here):
  a mean teacher (EMA of the student) labels clean views; confident predictions (>= ``tau_high``) train the
  student on perturbed views with hard cross-entropy, low-confidence ones (``tau_low`` <= conf < ``tau_high``),
  which plain self-training drops, are distilled with KL to the teacher's soft prediction, weighted by the
  teacher-student feature cosine similarity.

Both start by re-estimating batch-norm statistics on the target pool (``target_norm_stats``, AdaBN): not in the
papers, whose backbones adapt over far more steps; the study reports that step alone beside them.
``study_source_free`` adapts the ``mnist`` source to shifted digit targets (closed set) and the ``mnist_0to4``
source to digits 0-9 (open set: classes 5-9 are unknown to it).
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.data import load, shifted
from kdlab.data.base import ArrayDataset, BatchLoader
from kdlab.distill.functional import kl_div, soft_cross_entropy
from kdlab.errors import ConfigError
from kdlab.models.taps import FeatureTaps, declared_layers, num_logits
from kdlab.transfer.teachers import as_vector, embedding_layer, extract
from kdlab.transfer.zoo import SourceZoo, trainable_copy

Progress = Callable[[int, int, str], None]
UNKNOWN = -1
ENTROPY_THRESHOLD = 0.55  # GLC's test-time threshold on the normalised entropy
EvalData = ArrayDataset | tuple[torch.Tensor, torch.Tensor]


# -- validation --------------------------------------------------------------------------------------------------
def _pool(unlabelled: ArrayDataset | torch.Tensor) -> ArrayDataset:
    """The unlabelled target pool as an ``ArrayDataset`` (labels zeroed: never read); empty is refused."""
    x = unlabelled.x if isinstance(unlabelled, ArrayDataset) else torch.as_tensor(unlabelled, dtype=torch.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ConfigError(f"unlabelled: the target pool is empty (shape {tuple(x.shape)}); pass at least one "
                          "unlabelled target sample")
    # ArrayDataset holds images: vectors (N, D) ride as (N, D, 1, 1) (a model for vectors flattens its input)
    x = x.reshape(len(x), x.shape[1], *(x.shape[2:] or (1, 1)))
    return ArrayDataset(x, torch.zeros(len(x), dtype=torch.long), name="unlabelled", classes=["?"])


def _labels(y: torch.Tensor | np.ndarray, field: str) -> torch.Tensor:
    """Integer class labels >= 0; float labels with a fractional part, NaN or negatives are refused."""
    t = torch.as_tensor(np.asarray(y))
    if t.ndim != 1:
        raise ConfigError(f"{field}: labels must be a 1-D vector of class indices, got shape {tuple(t.shape)}")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or bool((t != t.round()).any()):
            raise ConfigError(f"{field}: labels must be integers (class indices), got non-integer values "
                              f"such as {t[~torch.isfinite(t) | (t != t.round())][:3].tolist()}")
    elif t.dtype == torch.bool or t.is_complex():
        raise ConfigError(f"{field}: labels must be integers (class indices), got dtype {t.dtype}")
    t = t.long()
    if len(t) and int(t.min()) < 0:
        raise ConfigError(f"{field}: labels must be >= 0, got {int(t.min())}")
    return t


def _eval_set(eval_data: EvalData, field: str = "eval_data") -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, integer labels) of a labelled evaluation set."""
    if isinstance(eval_data, ArrayDataset):
        x, y = eval_data.x, eval_data.y
    elif isinstance(eval_data, (tuple, list)) and len(eval_data) == 2:
        x, y = torch.as_tensor(eval_data[0], dtype=torch.float32), eval_data[1]
    else:
        raise ConfigError(f"{field}: expected an ArrayDataset or an (inputs, labels) pair, got "
                          f"{type(eval_data).__name__}")
    y = _labels(y, field)
    if len(x) != len(y) or len(y) == 0:
        raise ConfigError(f"{field}: {len(x)} inputs and {len(y)} labels; need the same non-zero number")
    return x, y


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    """Classes the source model predicts; fewer than 2 is refused (nothing to adapt or call unknown)."""
    c = num_logits(model, x.shape[1:])
    if c < 2:
        raise ConfigError(f"model: the source predicts {c} class; source-free adaptation needs a source with "
                          ">= 2 classes")
    return c


def _share(value: float, field: str) -> float:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{field}: must be in (0, 1), got {value}")
    return float(value)


# -- shared pieces ---------------------------------------------------------------------------------------------------
def _forward(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(embedding (N, D), logits) in one forward with gradients (the tap leaves ``forward`` untouched)."""
    with FeatureTaps(model, [layer], clone=False, detach=False) as taps:
        logits = model(x)
        return as_vector(taps.pop()[layer]), logits


def normalised_entropy(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """Entropy of each row of ``probs`` divided by log(K): 0 = one-hot, 1 = uniform (GLC's unknown score)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(1) / math.log(p.shape[1])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Class probabilities (float64) of ``model`` in eval mode."""
    return extract(model, x)[1]


def _score_point(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int) -> float:
    """The curve's value: top-1 accuracy on a closed-set target, the H-score when it holds unknown classes."""
    probs = _predict(model, x)
    if int(y.max()) < classes:
        return float((probs.argmax(1) == y.numpy()).mean())
    return open_set_metrics(probs, y)["hscore"]


def _prepare(model: nn.Module, unlabelled: ArrayDataset | torch.Tensor, eval_data: EvalData | None,
             epochs: int) -> tuple[ArrayDataset, nn.Module, int, tuple[torch.Tensor, torch.Tensor] | None]:
    """What both adaptations start from, validated: the pool, a trainable copy of ``model``, its class count and
    the evaluation set (or None)."""
    pool = _pool(unlabelled)
    copy_ = trainable_copy(model)
    classes = _num_classes(copy_, pool.x)
    ev = _eval_set(eval_data) if eval_data is not None else None
    if epochs < 1:
        raise ConfigError(f"epochs: need >= 1, got {epochs}")
    return pool, copy_, classes, ev


def _freeze_head(model: nn.Module) -> None:
    """Freeze the classifier the model declares as its ``logits`` tap (GLC, like SHOT, adapts the extractor)."""
    for p in model.get_submodule(declared_layers(model, "logits")[0]).parameters():
        p.requires_grad_(False)


@torch.no_grad()
def target_norm_stats(model: nn.Module, pool: ArrayDataset, batch_size: int = 256) -> None:
    """Re-estimate every batch-norm layer's running statistics on the target pool (AdaBN), in place: the source
    statistics misplace shifted inputs, and both methods label the pool in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    saved = [(m.momentum, m.training) for m in norms]
    was = model.training
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pool
        m.train()
    for x, _, _ in BatchLoader(pool, batch_size):
        model(x)
    for m, (momentum, training) in zip(norms, saved, strict=True):
        m.momentum, m.training = momentum, training
    model.train(was)


# -- GLC ---------------------------------------------------------------------------------------------------------
def glc_pseudo_labels(features: np.ndarray, probs: np.ndarray, pos_share: float | None = None,
                      n_neg: int | None = None, rho: float = 0.75, centre: bool = True, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """GLC's global one-vs-all clustering: (labels with -1 = unknown, known-ness margin per sample).

    For every source class c the ``pos_share`` * N samples of highest p(c) (default N / C) form c's positive
    prototype (their mean unit feature); the rest are k-means-clustered into ``n_neg`` (default C) negative
    prototypes. Class c claims a sample when its cosine to the positive prototype, scaled by the prior
    rho + (1 - rho) * mean top-share p(c), is at least its cosine to every negative prototype. A sample's label is
    the class of its nearest positive prototype, kept only when that class claims it, else unknown. The margin is
    that class's scaled positive cosine minus its best negative cosine (>= 0: known).
    """
    f = np.asarray(features, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if f.ndim != 2 or p.ndim != 2 or len(f) != len(p) or len(f) == 0:
        raise ConfigError(f"features/probs: expected (N, D) and (N, C) with the same N > 0, got "
                          f"{f.shape} and {p.shape}")
    n, classes = p.shape
    if classes < 2:
        raise ConfigError(f"probs: the source predicts {classes} class; need >= 2")
    f = _unit(f - f.mean(0) if centre else f)
    if not 0.0 <= rho <= 1.0:
        raise ConfigError(f"rho: the prior's floor must be in [0, 1], got {rho}")
    share = _share(pos_share, "pos_share") if pos_share is not None else 1.0 / classes
    top = min(max(1, int(share * n)), n)
    k_neg = n_neg if n_neg is not None else classes
    if k_neg < 1:
        raise ConfigError(f"n_neg: need >= 1 negative prototype per class, got {k_neg}")
    from scipy.cluster.vq import kmeans2  # scipy's submodules take a while to import: only here

    rng = np.random.default_rng(seed)
    pos_sim, claim_margin = np.empty((n, classes)), np.empty((n, classes))
    for c in range(classes):
        order = np.argsort(-p[:, c], kind="stable")
        pos, neg = order[:top], order[top:]
        prior = rho + (1.0 - rho) * p[pos, c].mean()
        pos_sim[:, c] = f @ _unit(f[pos].mean(0))
        best_neg = np.full(n, -np.inf)  # no negatives: every sample is claimed
        if len(neg):
            k = min(k_neg, len(np.unique(f[neg], axis=0)))
            if k > 1:
                with warnings.catch_warnings():  # an emptied cluster keeps its seed point: still a valid prototype
                    warnings.filterwarnings("ignore", "One of the clusters is empty")
                    centres, _ = kmeans2(f[neg], k, minit="++", seed=rng)
            else:
                centres = f[neg].mean(0, keepdims=True)
            best_neg = (f @ _unit(centres).T).max(1)
        claim_margin[:, c] = prior * pos_sim[:, c] - best_neg
    nearest = pos_sim.argmax(1)
    margin = claim_margin[np.arange(n), nearest]
    return np.where(margin >= 0, nearest, UNKNOWN), margin


def glc_targets(labels: np.ndarray | torch.Tensor, classes: int) -> torch.Tensor:
    """GLC's soft targets: one-hot for a known pseudo-label, uniform over the source classes for unknown (-1), so
    cross-entropy pushes unknowns towards high entropy, the test-time unknown score."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    out = torch.full((len(y), classes), 1.0 / classes)
    known = y >= 0
    out[known] = F.one_hot(y[known], classes).float()
    return out


def knn_consensus(query: torch.Tensor, bank: torch.Tensor, bank_probs: torch.Tensor, k: int,
                  query_index: torch.Tensor | None = None) -> torch.Tensor:
    """Mean prediction of each query's ``k`` nearest bank entries by cosine (GLC's local clustering); the query's
    own bank row (``query_index``) is never its own neighbour."""
    if k < 1 or k >= len(bank) + (query_index is None):
        raise ConfigError(f"k: need 1 <= k < the pool size ({len(bank)}), got {k}")
    sim = F.normalize(query, dim=1) @ F.normalize(bank, dim=1).T
    if query_index is not None:
        sim[torch.arange(len(query)), query_index] = -math.inf
    nearest = sim.topk(k, dim=1).indices
    return bank_probs[nearest].mean(1)


def adapt_glc(model: nn.Module, unlabelled: ArrayDataset | torch.Tensor, epochs: int = 5, batch_size: int = 64,
              lr: float = 0.001, k: int = 4, psd_weight: float = 0.3, knn_weight: float = 1.0,
              pos_share: float | None = None, n_neg: int | None = None, rho: float = 0.75, unknown_weight: float = 1.0,
              adabn: bool = True, seed: int = 0, eval_data: EvalData | None = None, layer: str | None = None
              ) -> tuple[nn.Module, list[float]]:
    """GLC on a deep copy of ``model``: (adapted model in eval mode, curve). Loss = ``psd_weight`` * CE to the
    global pseudo-targets (``glc_targets``, recomputed every epoch; the uniform targets of unknowns weighted by
    ``unknown_weight``) + ``knn_weight`` * CE to the ``k``-neighbour consensus; SGD (nesterov, GLC's
    (1 + 10 t/T)^-0.75 decay, ``lr`` = GLC's backbone rate) on the extractor, classifier frozen. The curve holds
    the evaluation score (accuracy, or H-score on an open-set ``eval_data``) of the source and after every epoch;
    empty without ``eval_data``. ``adabn`` first re-estimates batch-norm statistics on the pool."""
    pool, model, classes, ev = _prepare(model, unlabelled, eval_data, epochs)
    if not 1 <= k < len(pool):
        raise ConfigError(f"k: need 1 <= k < the pool size ({len(pool)}) neighbours, got {k}")
    layer = embedding_layer(model, layer)
    curve = [_score_point(model, *ev, classes)] if ev else []
    if adabn:
        target_norm_stats(model, pool)
    _freeze_head(model)
    torch.manual_seed(seed)
    loader = BatchLoader(pool, batch_size, shuffle=True, seed=seed)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                          weight_decay=1e-3, nesterov=True)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: (1 + 10 * t / total) ** -0.75)
    for epoch in range(epochs):
        feats, probs = extract(model, pool, layer)
        labels, _ = glc_pseudo_labels(feats, probs, pos_share, n_neg, rho, seed=seed + epoch)
        targets = glc_targets(labels, classes)
        bank, bank_probs = torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(probs, dtype=torch.float32)
        model.train()
        loader.set_epoch(epoch)
        for x, _, idx in loader:
            feat, logits = _forward(model, x, layer)
            consensus = knn_consensus(feat.detach(), bank, bank_probs, k, idx)
            t = targets[idx]
            rows = torch.where(t.max(1).values < 1.0, unknown_weight, 1.0)  # uniform target rows: unknowns
            psd = -(rows * (t * F.log_softmax(logits, 1)).sum(1)).mean()
            loss = psd_weight * psd + knn_weight * soft_cross_entropy(logits, consensus)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bank[idx], bank_probs[idx] = feat.detach(), F.softmax(logits.detach(), 1)
        if ev:
            curve.append(_score_point(model, *ev, classes))
    return model.eval(), curve


# -- LPLD --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Mean-teacher step: teacher <- momentum * teacher + (1 - momentum) * student (float buffers too)."""
    for t, s in zip(teacher.state_dict().values(), student.state_dict().values(), strict=True):
        if t.is_floating_point():
            t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
        else:
            t.copy_(s)


def lpld_partition(teacher_probs: torch.Tensor, tau_low: float, tau_high: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) masks: teacher confidence >= ``tau_high`` (hard labels) and in [``tau_low``, ``tau_high``)
    (the low-confidence pseudo-labels LPLD distils instead of dropping)."""
    if not 0.0 <= tau_low < tau_high <= 1.0:
        raise ConfigError(f"tau_low/tau_high: need 0 <= tau_low < tau_high <= 1, got {tau_low} and {tau_high}")
    conf = teacher_probs.max(1).values
    return conf >= tau_high, (conf >= tau_low) & (conf < tau_high)


def lpld_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, student_feat: torch.Tensor,
              teacher_feat: torch.Tensor, tau_low: float = 0.5, tau_high: float = 0.9) -> dict[str, torch.Tensor]:
    """LPLD's two terms, each summed over its samples and divided by the batch size: ``hard`` = cross-entropy to
    the teacher's argmax on confident samples; ``soft`` = KL(teacher || student) on low-confidence samples,
    each weighted by max(0, cosine(student feature, teacher feature))."""
    t_probs = F.softmax(teacher_logits.detach(), 1)
    high, low = lpld_partition(t_probs, tau_low, tau_high)
    b = len(student_logits)
    ce = F.cross_entropy(student_logits, t_probs.argmax(1), reduction="none")
    kl = kl_div(student_logits, teacher_logits.detach(), 1.0, reduction="none").sum(1)
    weight = F.cosine_similarity(student_feat, teacher_feat.detach(), dim=1).clamp(min=0.0).detach()
    return {"hard": (ce * high).sum() / b, "soft": (weight * kl * low).sum() / b}


def perturb(x: torch.Tensor, noise: float, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """A strong view: Gaussian noise of std ``noise``; images (N, C, H, W) are also translated by up to
    ``max_shift`` pixels per sample (wrapping round) and clamped to [0, 1]."""
    out = x + noise * torch.randn(x.shape, generator=generator)
    if x.ndim == 4 and x.shape[-1] > 1 and max_shift > 0:
        shifts = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=generator).tolist()
        out = torch.stack([torch.roll(o, (dy, dx), (1, 2)) for o, (dy, dx) in zip(out, shifts, strict=True)])
        out = out.clamp(0.0, 1.0)
    return out


def adapt_lpld(model: nn.Module, unlabelled: ArrayDataset | torch.Tensor, epochs: int = 5, batch_size: int = 64,
               lr: float = 0.01, tau_low: float = 0.5, tau_high: float = 0.9, momentum: float = 0.9,
               soft_weight: float = 1.0, noise: float = 0.1, max_shift: int = 2, adabn: bool = True,
               seed: int = 0, eval_data: EvalData | None = None, layer: str | None = None
               ) -> tuple[nn.Module, list[float]]:
    """LPLD on deep copies of ``model``: (the mean teacher, eval mode; curve). The curve holds the score (accuracy,
    or H-score on an open-set ``eval_data``) of the source, then of the teacher after every epoch. ``adabn``
    first re-estimates batch-norm statistics on the pool (``target_norm_stats``)."""
    pool, student, classes, ev = _prepare(model, unlabelled, eval_data, epochs)
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"momentum: the EMA momentum must be in [0, 1), got {momentum}")
    lpld_partition(torch.ones(1, 2) / 2, tau_low, tau_high)  # validates the thresholds before any work
    layer = embedding_layer(student, layer)
    curve = [_score_point(student, *ev, classes)] if ev else []
    if adabn:
        target_norm_stats(student, pool)
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3, nesterov=True)
    loader = BatchLoader(pool, batch_size, shuffle=True, seed=seed)
    student.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, _, _ in loader:
            with torch.no_grad():
                t_feat, t_logits = _forward(teacher, x, layer)
            s_feat, s_logits = _forward(student, perturb(x, noise, max_shift, gen), layer)
            terms = lpld_loss(s_logits, t_logits, s_feat, t_feat, tau_low, tau_high)
            loss = terms["hard"] + soft_weight * terms["soft"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema_update(teacher, student, momentum)
        if ev:
            curve.append(_score_point(teacher, *ev, classes))
    return teacher.eval(), curve


# -- open-set evaluation -----------------------------------------------------------------------------------------
def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` mask (Mann-Whitney U; ties count half);
    NaN unless both classes are present."""
    s, pos = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def open_set_metrics(probs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                     threshold: float = ENTROPY_THRESHOLD, scores: np.ndarray | None = None) -> dict[str, float]:
    """Open-set scores of predictions ``probs`` (N, K) over the K known classes; ``labels`` >= K are unknown.

    A sample is called unknown when its unknown score (default: normalised entropy) exceeds ``threshold``.
    ``known_acc``: class-averaged accuracy over the known classes present (calling one unknown is an error);
    ``unknown_recall``: share of unknown samples called unknown; ``hscore``: their harmonic mean (GLC's H-score;
    0 when both are 0, NaN when either is undefined); ``auroc``: of the unknown score, unknown = positive (NaN
    without both kinds); ``closed_acc``: plain top-1 on the known samples.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = _labels(labels, "labels").numpy()
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ConfigError(f"probs/labels: expected (N, K) probabilities and N labels, got {p.shape} and {y.shape}")
    k = p.shape[1]
    if k < 2:
        raise ConfigError(f"probs: the source predicts {k} class; need >= 2 known classes")
    score = normalised_entropy(p) if scores is None else np.asarray(scores, dtype=np.float64)
    if score.shape != y.shape:
        raise ConfigError(f"scores: expected one unknown score per sample ({len(y)}), got shape {score.shape}")
    pred = np.where(score > threshold, UNKNOWN, p.argmax(1))
    unknown = y >= k
    known_classes = [c for c in range(k) if (y == c).any()]
    known_acc = float(np.mean([(pred[y == c] == c).mean() for c in known_classes])) if known_classes else math.nan
    unknown_recall = float((pred[unknown] == UNKNOWN).mean()) if unknown.any() else math.nan
    total = known_acc + unknown_recall
    hscore = math.nan if math.isnan(total) else 2 * known_acc * unknown_recall / total if total > 0 else 0.0
    closed = float((p.argmax(1)[~unknown] == y[~unknown]).mean()) if (~unknown).any() else math.nan
    return {"known_acc": known_acc, "unknown_recall": unknown_recall, "hscore": float(hscore),
            "auroc": auroc(score, unknown), "closed_acc": closed}


# -- study -------------------------------------------------------------------------------------------------------
BLUR_NOISE = (("blur", 0.5), ("noise", 0.25))
ROTATE = (("rotate", 0.3),)


def _targets(seed: int) -> list[tuple[str, str, ArrayDataset, ArrayDataset]]:
    """(target name, source, unlabelled pool split, evaluation split) of the study."""
    digits = {s: load("digits", split=s, seed=seed, size=28) for s in ("train", "test")}
    mnist = {sh: {s: shifted("mnist5k", list(sh), split=s, seed=seed) for s in ("train", "test")}
             for sh in (BLUR_NOISE, ROTATE)}
    return [("digits", "mnist", digits["train"], digits["test"]),
            ("mnist5k blur+noise", "mnist", mnist[BLUR_NOISE]["train"], mnist[BLUR_NOISE]["test"]),
            ("mnist5k rotate 0.3", "mnist", mnist[ROTATE]["train"], mnist[ROTATE]["test"]),
            ("digits open-set (0-4 known)", "mnist_0to4", digits["train"], digits["test"])]


def study_source_free(zoo: SourceZoo, seed: int = 0, scale: float = 1.0, progress: Progress | None = None) -> dict:
    """Source-free adaptation of zoo sources to unlabelled shifted targets by GLC and LPLD.

    Targets: ``mnist`` -> digits 28x28 (a real domain shift), mnist5k test-domain images under blur + noise and
    under rotation 0.3 (closed set); ``mnist_0to4`` -> digits 0-9 (open set, 5-9 unknown). Each method adapts a
    deep copy of the source on ``round(400 * scale)`` unlabelled training-split images (at most the split) for
    ``max(2, round(4 * scale))`` epochs; it is evaluated on the target's test split (up to ``round(500 * scale)``).

    Returns ``{"study": "source_free", "seed", "scale", "sizes": {target: {"pool", "eval", "epochs"}},
    "table": [{"target", "source", "method" ("AdaBN only" | "GLC" | "LPLD"), "before", "after", "gain",
    "known_acc", "unknown_recall", "hscore", "auroc", "seconds"}] (fractions; the open-set columns are None except
    for GLC/LPLD on the open-set target, where "before"/"after" are H-scores; "AdaBN only" re-estimates the
    batch-norm statistics on the pool, the untrained first step of both methods), "curves": {target: {method:
    [score per epoch, epoch 0 = the source]}}, "curve_metric": {target: "accuracy" | "H-score"}, "open_set":
    {"source" | method: open_set_metrics dict}, "summary": {"closed_gain_adabn", "closed_gain_glc",
    "closed_gain_lpld" (mean over the closed targets), "open_hscore_source", "open_hscore_glc", "open_hscore_lpld",
    "open_auroc_glc", "open_auroc_lpld"}}``.
    """
    if scale <= 0:
        raise ConfigError(f"scale: must be > 0, got {scale}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    epochs = max(2, round(4 * scale))
    targets = _targets(seed)
    total, done = 2 * len(targets), 0
    rows, curves, metric, sizes, open_set = [], {}, {}, {}, {}
    for name, source, train, test in targets:
        model = zoo.load(source)
        classes = zoo.card(source).classes
        pool = train.subset(np.sort(rng.permutation(len(train))[:min(len(train), round(400 * scale))]))
        ev = test.subset(np.sort(rng.permutation(len(test))[:min(len(test), round(500 * scale))]))
        is_open = int(ev.y.max()) >= classes
        sizes[name] = {"pool": len(pool), "eval": len(ev), "epochs": epochs}
        metric[name] = "H-score" if is_open else "accuracy"
        curves[name] = {}
        if is_open:
            open_set["source"] = open_set_metrics(_predict(model, ev.x), ev.y)
        normed = copy.deepcopy(model)
        target_norm_stats(normed, pool)  # the part of both methods that needs no training, reported on its own
        before, after = _score_point(model, ev.x, ev.y, classes), _score_point(normed, ev.x, ev.y, classes)
        rows.append({"target": name, "source": source, "method": "AdaBN only", "before": before, "after": after,
                     "gain": after - before, "known_acc": None, "unknown_recall": None, "hscore": None,
                     "auroc": None, "seconds": 0.0})
        for method, adapt in (("GLC", adapt_glc), ("LPLD", adapt_lpld)):
            if progress:
                progress(done, total, f"{method} on {name}")
            t0 = time.perf_counter()
            adapted, curve = adapt(model, pool, epochs=epochs, seed=seed, eval_data=ev)
            seconds = time.perf_counter() - t0
            curves[name][method] = [float(v) for v in curve]
            row = {"target": name, "source": source, "method": method, "before": curve[0], "after": curve[-1],
                   "gain": curve[-1] - curve[0], "known_acc": None, "unknown_recall": None, "hscore": None,
                   "auroc": None, "seconds": seconds}
            if is_open:
                m = open_set_metrics(_predict(adapted, ev.x), ev.y)
                open_set[method] = m
                row.update({key: m[key] for key in ("known_acc", "unknown_recall", "hscore", "auroc")})
            rows.append(row)
            done += 1
    if progress:
        progress(total, total, "done")
    closed = [r for r in rows if metric[r["target"]] == "accuracy"]
    summary = {f"closed_gain_{m.split()[0].lower()}": float(np.mean([r["gain"] for r in closed if r["method"] == m]))
               for m in ("AdaBN only", "GLC", "LPLD")}
    summary["open_hscore_source"] = open_set["source"]["hscore"]
    for m in ("GLC", "LPLD"):
        summary[f"open_hscore_{m.lower()}"] = open_set[m]["hscore"]
        summary[f"open_auroc_{m.lower()}"] = open_set[m]["auroc"]
    return {"study": "source_free", "seed": seed, "scale": scale, "sizes": sizes, "table": rows, "curves": curves,
            "curve_metric": metric, "open_set": open_set, "summary": summary}
