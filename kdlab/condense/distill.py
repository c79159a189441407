"""``condense(train, config)``: distil a training set into ``ipc`` synthetic images per class.

The methods are registered in ``kdlab.condense.methods`` (``CONDENSERS``); this module holds the first wave:
``dm`` (distribution matching), ``datadam`` (attention matching), ``dc`` (gradient matching), and the selection
baselines ``random`` and ``herding``; DSA augmentation and the FYI flip are switches. A ``Condensation`` is one
distillation in progress, the contract every method works through. Everything is drawn from ``seed`` (a private
generator and a forked global RNG), so the same seed gives the same synthetic set. Work happens in normalised
space (per-channel mean/std of the real data).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.condense import augment
from kdlab.condense.baselines import check_ipc, herding, random_real
from kdlab.condense.evaluate import CONVNET_PARAMS, EvalConfig, train_network
from kdlab.condense.matching import (
    attention,
    channels_last_copy,
    dam_loss,
    dm_loss,
    embed,
    gradient_distance,
    per_class_means,
    stage_paths,
    stages_and_embedding,
)
from kdlab.condense.methods import CONDENSERS, Condensed, is_learned, register_condenser
from kdlab.condense.synthetic import SyntheticSet
from kdlab.data.base import ArrayDataset
from kdlab.errors import ConfigError
from kdlab.models import MODELS, create

INITS = ("real", "noise")
LABELS = ("hard", "soft")
HERDING_FEATURES = ("convnet", "pixel")
DEFAULT_LR_IMG = {"dm": 1.0, "datadam": 1.0, "dc": 0.1, "krr_st": 1e-3}

# progress(iteration, metrics, snapshot or None); called after every iteration (and at 0 with the start)
Progress = Callable[[int, dict[str, float], "SyntheticSet | None"], None]


@dataclass
class CondenseConfig:
    """Settings of one distillation (defaults follow the reference code; ``batch_real`` sized for CPU)."""

    method: str = "dm"
    ipc: int = 10
    iterations: int = 400
    init: str = "real"
    labels: str = "hard"
    batch_real: int = 64
    lr_img: float | None = None  # None: the method's default (DEFAULT_LR_IMG; 1.0 for methods it does not list)
    momentum_img: float = 0.5
    dsa: bool = True
    dsa_strategy: str = augment.DEFAULT_STRATEGY
    fyi: bool = False
    model: str = "convnet"
    model_params: dict[str, Any] = field(default_factory=lambda: dict(CONVNET_PARAMS))
    attention_p: float = 4.0
    attention_weight: float = 0.01
    dc_outer_loop: int | None = None  # None: 1 at IPC 1, 10 otherwise (the reference's choice)
    dc_inner_loop: int | None = None  # None: 1 at IPC 1, 50 otherwise
    dc_lr_net: float = 0.01
    dc_batch_train: int = 256
    herding_features: str = "convnet"
    reference_epochs: int = 5  # training of the ConvNet used for herding features and soft labels
    soft_temperature: float = 1.0
    snapshot_every: int = 50
    method_params: dict[str, Any] = field(default_factory=dict)  # the method's own declared parameters
    seed: int = 0

    def __post_init__(self) -> None:
        CONDENSERS.entry(self.method, where="condense.method")
        self.method_params = CONDENSERS.validate(self.method, self.method_params, where="condense.method_params")
        for name, choices in (("init", INITS), ("labels", LABELS),
                              ("herding_features", HERDING_FEATURES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"condense.{name}: {getattr(self, name)!r} is not one of {list(choices)}")
        for name, low in (("ipc", 1), ("iterations", 0), ("batch_real", 1), ("dc_batch_train", 1),
                          ("reference_epochs", 1), ("snapshot_every", 0), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"condense.{name}: expected a whole number >= {low}, got {v!r}")
        for name in ("dc_outer_loop", "dc_inner_loop"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"condense.{name}: expected a whole number >= 1 or None, got {v!r}")
        if self.lr_img is not None and not self.lr_img > 0:
            raise ConfigError(f"condense.lr_img: must be > 0, got {self.lr_img!r}")
        if not 0 <= self.momentum_img < 1:
            raise ConfigError(f"condense.momentum_img: must be in [0, 1), got {self.momentum_img!r}")
        if not self.attention_p > 0 or self.attention_weight < 0 or not self.soft_temperature > 0:
            raise ConfigError("condense: attention_p and soft_temperature must be > 0, attention_weight >= 0")
        MODELS.entry(self.model, where="condense.model")
        self.model_params = MODELS.validate(self.model, dict(self.model_params), where="condense.model_params")
        augment.parse_strategy(self.dsa_strategy)

    @property
    def ops(self) -> tuple[str, ...]:
        """DSA operations used while matching (FYI flips explicitly, so 'flip' is dropped with it)."""
        if not self.dsa:
            return ()
        ops = augment.parse_strategy(self.dsa_strategy)
        return tuple(o for o in ops if o != "flip") if self.fyi else ops

    @property
    def step_lr(self) -> float:
        return self.lr_img if self.lr_img is not None else DEFAULT_LR_IMG.get(self.method, 1.0)

    def dc_loops(self) -> tuple[int, int]:
        outer = self.dc_outer_loop or (1 if self.ipc == 1 else 10)
        inner = self.dc_inner_loop or (1 if self.ipc == 1 else 50)
        return outer, inner

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images (N, C, H, W), in float64 (std floored at 1e-6)."""
    xd = x.double().transpose(0, 1).flatten(1)
    return tuple(xd.mean(1).tolist()), tuple(xd.std(1).clamp_min(1e-6).tolist())


class Condensation:
    """One distillation in progress, what every method works through: the normalised real data (``real``, its
    per-class positions ``members``), the private generator ``g``, fresh networks, siamese augmentation, progress
    reporting and the pixel-learning loop (``learn``). ``start``: a snapshot to continue from (learned methods)."""

    def __init__(self, train: ArrayDataset, cfg: CondenseConfig, progress: Progress | None,
                 start: SyntheticSet | None = None):
        self.cfg, self.progress, self.start = cfg, progress, start
        self.params = cfg.method_params
        self.members = check_ipc(train, cfg.ipc)
        self.k = train.num_classes
        self.train = train
        self.mean, self.std = channel_stats(train.x)
        self.m = torch.tensor(self.mean).view(1, -1, 1, 1)
        self.s = torch.tensor(self.std).view(1, -1, 1, 1)
        self.real = (train.x - self.m) / self.s
        self.g = torch.Generator().manual_seed(cfg.seed)
        self.b = min(cfg.batch_real, min(len(m) for m in self.members))
        self.y_syn = torch.arange(self.k).repeat_interleave(cfg.ipc)
        self.ops = cfg.ops
        self.history: list[float] = []
        self.times: list[float] = []

    # -- helpers --------------------------------------------------------------------------------
    def new_net(self, model: str | None = None, **params: Any) -> nn.Module:
        """A freshly initialised network: the config's model (and its params), or ``model`` with ``params``."""
        if model is None:
            return create(self.cfg.model, self.k, self.train.in_shape, **self.cfg.model_params)
        return create(model, self.k, self.train.in_shape, **params)

    def real_batch(self) -> torch.Tensor:
        """``b`` random real images of every class, class-major (K * b, C, H, W)."""
        idx = torch.cat([m[torch.randperm(len(m), generator=self.g)[:self.b]] for m in self.members])
        return self.real[idx]

    def with_flips(self, syn: torch.Tensor) -> torch.Tensor:
        """FYI: each class's synthetic images followed by their horizontal flips (class-major)."""
        if not self.cfg.fyi:
            return syn
        v = syn.view(self.k, self.cfg.ipc, *syn.shape[1:])
        return torch.cat([v, v.flip(-1)], 1).flatten(0, 1)

    def augment_pair(self, xr: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Siamese DSA: one operation per class; synthetic image j of class c copies real sample j's draw."""
        if not self.ops:
            return xr, xs
        k = self.k
        per_r, per_s = len(xr) // k, len(xs) // k
        p = augment.sample(len(xr), self.ops, self.g, torch.arange(k).repeat_interleave(per_r))
        j = torch.arange(per_s) % per_r
        take = (torch.arange(k).view(-1, 1) * per_r + j.view(1, -1)).flatten()
        return augment.apply(xr, p), augment.apply(xs, p.take(take))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """DSA on one batch (a fresh draw per sample), or ``x`` when augmentation is off."""
        return augment.apply(x, augment.sample(len(x), self.ops, self.g)) if self.ops else x

    def snapshot(self, syn: torch.Tensor, it: int) -> SyntheticSet:
        return SyntheticSet(syn.detach() * self.s + self.m, self.y_syn.clone(), list(self.train.classes),
                            self.mean, self.std, meta={"iteration": it})

    def report(self, it: int, metrics: dict[str, float], syn: torch.Tensor, last: bool = False) -> None:
        if self.progress is None:
            return
        every = self.cfg.snapshot_every
        snap = it == 0 or last or (every > 0 and it % every == 0)
        self.progress(it, metrics, self.snapshot(syn, it) if snap else None)

    def init_syn(self) -> torch.Tensor:
        """The starting images: ``ipc`` random real ones per class (``init: real``) or Gaussian noise."""
        if self.cfg.init == "real":
            return self.real[random_real(self.train, self.cfg.ipc, self.g)].clone()
        return torch.randn(self.k * self.cfg.ipc, *self.train.in_shape, generator=self.g)

    def start_images(self) -> tuple[torch.Tensor, int]:
        """The images to learn from and the first iteration: ``init_syn()`` and 1, or the snapshot ``start``
        (its images and its iteration + 1; the random stream restarts from ``seed + first``)."""
        if self.start is None:
            return self.init_syn(), 1
        if self.start.x.shape != (self.k * self.cfg.ipc, *self.train.in_shape):
            raise ConfigError(f"start: a snapshot of {tuple(self.start.x.shape)} images does not fit IPC "
                              f"{self.cfg.ipc} of {self.k} classes of {self.train.in_shape}")
        first = int(self.start.meta.get("iteration", 0)) + 1
        self.g.manual_seed(self.cfg.seed + first)  # a fresh, reproducible stream for the rest
        return (self.start.x - self.m) / self.s, first

    def learn(self, syn: torch.Tensor, first: int, step: Callable[[int], float | dict[str, float]]) -> torch.Tensor:
        """Run ``step(it)`` for iterations ``first..iterations`` (it updates ``syn`` in place), timing each one and
        reporting its metrics (a float is the loss; a dict must hold ``loss``); snapshots of ``syn`` as configured."""
        if first == 1:
            self.report(0, {"loss": float("nan"), "time_s": 0.0}, syn, last=self.cfg.iterations == 0)
        for it in range(first, self.cfg.iterations + 1):
            t0 = time.perf_counter()
            out = step(it)
            metrics = dict(out) if isinstance(out, dict) else {"loss": float(out)}
            self.times.append(time.perf_counter() - t0)
            self.history.append(float(metrics["loss"]))
            self.report(it, {**metrics, "time_s": self.times[-1]}, syn, last=it == self.cfg.iterations)
        return syn.detach()

    def frozen_net(self) -> nn.Module:
        net = self.new_net().train()
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def reference_net(self) -> nn.Module:
        """A ConvNet trained on the real data (herding features, soft labels)."""
        net = self.new_net()
        cfg = EvalConfig(models=(self.cfg.model,), epochs=self.cfg.reference_epochs, lr=0.01, dsa=False,
                         batch_size=256)
        return train_network(net, self.real, self.train.y, cfg, self.g).eval()


def _learn_pixels(job: Condensation, step: Callable[[torch.Tensor, torch.optim.Optimizer], float]) -> Condensed:
    """The loop of DM, DataDAM and DC: SGD with momentum on the images, ``step(syn, opt)`` per iteration."""
    start, first = job.start_images()
    syn = start.clone().requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=job.cfg.step_lr, momentum=job.cfg.momentum_img)
    return Condensed(job.learn(syn, first, lambda _it: step(syn, opt)), job.y_syn.clone())


@register_condenser("dm", learned=True, family="distribution matching")
def dm(job: Condensation, params: dict[str, Any]) -> Condensed:
    """Distribution matching (Zhao & Bilen, WACV 2023): class-mean embeddings of random networks."""

    def step(syn: torch.Tensor, opt: torch.optim.Optimizer) -> float:
        net = job.frozen_net()
        xr, xs = job.augment_pair(job.real_batch(), job.with_flips(syn))
        with torch.no_grad():
            fast = channels_last_copy(net)
            real_means = per_class_means(lambda x: embed(fast, x), xr, job.k)
        loss = dm_loss(real_means, embed(net, xs), job.k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return _learn_pixels(job, step)


@register_condenser("datadam", learned=True, family="distribution matching")
def datadam(job: Condensation, params: dict[str, Any]) -> Condensed:
    """DataDAM (Sajedi et al., ICCV 2023): spatial attention maps of every stage plus the DM term."""

    def step(syn: torch.Tensor, opt: torch.optim.Optimizer) -> float:
        net = job.frozen_net()
        paths, p = stage_paths(net), job.cfg.attention_p
        xr, xs = job.augment_pair(job.real_batch(), job.with_flips(syn))
        with torch.no_grad():
            fast = channels_last_copy(net)

            def maps(x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
                feats, emb = stages_and_embedding(fast, x, paths)
                return [attention(f, p) for f in feats], emb

            real = per_class_means(maps, xr, job.k)
        feats, emb = stages_and_embedding(net, xs, paths)
        loss = dam_loss(real, ([attention(f, p) for f in feats], emb), job.k, job.cfg.attention_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return _learn_pixels(job, step)


@register_condenser("dc", learned=True, family="gradient matching")
def dc(job: Condensation, params: dict[str, Any]) -> Condensed:
    """Dataset condensation by gradient matching (Zhao et al., ICLR 2021); with DSA when ``dsa`` is on."""
    cfg = job.cfg

    def step(syn: torch.Tensor, opt: torch.optim.Optimizer) -> float:
        net = job.new_net().train()
        net_params = [p for p in net.parameters() if p.requires_grad]
        net_opt = torch.optim.SGD(net_params, lr=cfg.dc_lr_net)
        outer, inner = cfg.dc_loops()
        total = 0.0
        for ol in range(outer):
            xr_all, xs_all = job.augment_pair(job.real_batch(), job.with_flips(syn))
            per_r, per_s = len(xr_all) // job.k, len(xs_all) // job.k
            loss = syn.new_zeros(())
            for c in range(job.k):
                xr, xs = xr_all[c * per_r:(c + 1) * per_r], xs_all[c * per_s:(c + 1) * per_s]
                lr_ = F.cross_entropy(net(xr), torch.full((len(xr),), c))
                g_real = [g.detach() for g in torch.autograd.grad(lr_, net_params)]
                ls = F.cross_entropy(net(xs), torch.full((len(xs),), c))
                g_syn = torch.autograd.grad(ls, net_params, create_graph=True)
                loss = loss + gradient_distance(g_real, g_syn)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            if ol == outer - 1:
                break
            x_fixed = job.with_flips(syn.detach())
            y_fixed = torch.arange(job.k).repeat_interleave(len(x_fixed) // job.k)
            for _ in range(inner):
                idx = torch.randperm(len(x_fixed), generator=job.g)[:cfg.dc_batch_train]
                step_loss = F.cross_entropy(net(job.augment(x_fixed[idx])), y_fixed[idx])
                net_opt.zero_grad(set_to_none=True)
                step_loss.backward()
                net_opt.step()
        return total / outer

    return _learn_pixels(job, step)


@register_condenser("random", learned=False, family="selection")
def random_selection(job: Condensation, params: dict[str, Any]) -> Condensed:
    """Random real images of each class (the field's baseline)."""
    return Condensed(job.real[random_real(job.train, job.cfg.ipc, job.g)].clone(), job.y_syn.clone())


@register_condenser("herding", learned=False, family="selection")
def herding_selection(job: Condensation, params: dict[str, Any]) -> Condensed:
    """Herding (Welling, ICML 2009) on the features of a ConvNet trained briefly on the data (or on pixels)."""
    ref = job.reference_net() if job.cfg.herding_features == "convnet" else None
    idx = herding(ArrayDataset(job.real, job.train.y, classes=list(job.train.classes)), job.cfg.ipc,
                  embed=(lambda x: embed(ref, x)) if ref is not None else None)
    return Condensed(job.real[idx].clone(), job.y_syn.clone(), meta={"reference": ref})


def condense(train: ArrayDataset, config: CondenseConfig | None = None, progress: Progress | None = None,
             teacher: nn.Module | None = None, start: SyntheticSet | None = None, **overrides: Any) -> SyntheticSet:
    """Distil ``train`` into a ``SyntheticSet`` of ``ipc`` images per class.

    ``config`` or keyword overrides of ``CondenseConfig``. ``progress(it, metrics, snapshot)`` is called
    after every iteration, with a snapshot every ``snapshot_every`` iterations (and at 0 and the end).
    ``teacher`` (a network on normalised inputs) gives soft labels when ``labels='soft'`` and the method made
    none; without one, a ConvNet is trained on ``train`` for ``reference_epochs``. ``start`` (a snapshot of a
    learned method) continues from its images after its iteration: the image optimiser's momentum and the random
    stream start afresh, so the result is not bit-identical to an uninterrupted run.
    """
    if config is not None and overrides:
        raise ConfigError("condense: pass either a CondenseConfig or keyword overrides, not both")
    cfg = config or CondenseConfig(**overrides)
    if not isinstance(train, ArrayDataset):
        raise ConfigError(f"train: expected a kdlab ArrayDataset, got {type(train).__name__}")
    learned = is_learned(cfg.method)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        job = Condensation(train, cfg, progress, start if learned else None)
        out = CONDENSERS.get(cfg.method)(job, cfg.method_params)
        ref = out.meta.pop("reference", None)
        if not learned:
            job.report(0, {"loss": float("nan"), "time_s": 0.0}, out.x, last=True)
        soft = out.soft
        if soft is None and cfg.labels == "soft":
            teacher = teacher or ref or job.reference_net()
            with torch.no_grad():
                teacher.eval()
                soft = F.softmax(teacher(out.x) / cfg.soft_temperature, 1)
    elapsed = time.perf_counter() - t0
    n_it = cfg.iterations if learned else 0
    meta = {"method": cfg.method, "ipc": cfg.ipc, "iterations": n_it, "seed": cfg.seed, "time_s": elapsed,
            "time_per_iteration_s": statistics.median(job.times) if job.times else None,
            "time_per_iteration_s_all": job.times,
            "loss": job.history, "config": cfg.to_dict(), "data": train.name, **out.meta}
    return SyntheticSet(out.x.detach() * job.s + job.m, out.y.clone(), list(train.classes), job.mean, job.std, soft,
                        meta, extras=dict(out.extras))
