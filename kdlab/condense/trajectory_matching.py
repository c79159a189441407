"""Trajectory matching: synthetic images whose few training steps retrace long stretches of an expert's training.

- ``mtt`` (Cazenavette et al., "Dataset Distillation by Matching Training Trajectories", CVPR 2022). An expert
  trajectory and a start epoch ``t ~ U[0, max_start_epoch)`` are drawn; a student starts from the expert's
  parameters at ``t`` and takes ``syn_steps`` SGD steps on minibatches of ``batch_syn`` DSA-augmented synthetic
  images with a LEARNABLE learning rate ``syn_lr`` (initialised at ``lr_teacher``); the loss is
  ``||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`` with ``M = expert_epochs``. It back-propagates
  through every student step (``torch.func.functional_call`` on a flat parameter vector) to the images (SGD,
  ``lr_img``, momentum 0.5) and to ``syn_lr`` (SGD, ``lr_lr``, momentum 0.5).
- ``ftd`` (Du et al., "Minimizing the Accumulated Trajectory Error to Improve Dataset Distillation", CVPR 2023):
  MTT on ``flat`` experts (trained with GSAM, see ``kdlab.condense.experts``) and an exponential moving average of
  the synthetic images (``ema_decay``), which is the set returned (and snapshotted).
- ``smooth_mtt`` (AST, Shen et al., 2023, "Enhancing Dataset Distillation via Alignment with Smooth and High-Quality
  Expert Trajectories"): MTT on ``smooth`` experts (clipping loss and gradient penalty), with the paper's
  representative initialisation, balanced inner-loop loss and intermediate matching loss. kdlab's readings (the
  paper's code was not available): representative init = per class, the real images nearest to ``ipc`` k-means
  centroids (pixels of the normalised images); balanced inner loss = every inner minibatch holds the same number of
  images of every class; intermediate matching = the normalised distance is also taken after ``syn_steps * j / M``
  steps against expert epoch ``t + j`` (j = 1..M) and averaged. AST's weight perturbation is left out.

Defaults. The paper's MNIST values (MTT, IPC 10): ``expert_epochs`` 2, ``lr_teacher`` 0.01, ``lr_img`` 100 (images
in normalised, non-ZCA space; ``condense.lr_img`` overrides it), ``lr_lr`` 1e-5 (1e-7 at IPC 1), image momentum
0.5. Reduced for CPU: ``syn_steps`` 10 (paper 30; 50 at IPC 1), ``batch_syn`` 20 (paper: all images),
``max_start_epoch`` 4 (paper 20; 2 at IPC 1), ``n_experts`` 2 x ``expert_epochs_total`` 8 (paper 100 x 50), FTD's
``ema_decay`` 0.99 (paper 0.9995 over 5,000 iterations; at a few hundred iterations 0.9995 would leave the images
at their initialisation). MTT evaluates with the learned ``syn_lr``; kdlab's protocol trains at its own fixed
learning rate, so ``syn_lr`` is reported in ``meta`` only; it is kept >= 0 (MTT leaves it free, and at tiny budgets
it can turn negative, making the student ascend). On resuming from a snapshot ``syn_lr`` (and FTD's average)
restart from their initial values.

One departure that changes results: the image step is limited to a root-mean-square change of ``max_step_rms``
(0.1) normalised-pixel units (the gradient is clipped; 0 switches it off, as in MTT). The unrolled gradient is heavy
tailed: on digits (8x8) single draws gave per-pixel gradients 1,000x the typical ones and one step at MTT's rate
turned the images to noise; on mnist5k (28x28) the typical step at ``lr_img`` 100 is ~0.001 and the limit stays idle.
Keep ``syn_steps`` below the expert's SGD steps in ``expert_epochs`` epochs (``meta["expert_steps_per_epoch"]``):
MTT's students take far fewer steps than their experts (MNIST: 30 against 2 x 235), so ``syn_lr`` grows; a student
that out-steps its expert overshoots the target. On small data sets use a smaller ``expert_batch``.

Viewer data in ``Condensed.extras``: ``expert_path_2d`` / ``student_path_2d`` (E + 1, 2), float64: a 2-D PCA (fit on
both paths) of expert 0's parameters at epochs 0..E and of a student trained on the final synthetic set from the
expert's epoch-0 parameters with the learned ``syn_lr``, ``round(syn_steps / expert_epochs)`` steps per expert
epoch; ``distance_to_expert`` (E + 1,): the L2 distance between the two in parameter space, per epoch;
``syn_lr_history`` and ``start_epochs`` per iteration.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from kdlab.condense import augment
from kdlab.condense.distill import Condensation
from kdlab.condense.experts import ExpertConfig, expert_trajectories
from kdlab.condense.methods import Condensed, register_condenser
from kdlab.errors import ConfigError
from kdlab.registry import Param

LR_IMG = 100.0  # MTT's MNIST image learning rate (normalised, non-ZCA pixels)
LR_MOMENTUM = 0.5  # momentum of the syn_lr optimiser (MTT)
KMEANS_ITERATIONS = 20

PARAMS: dict[str, Param] = {
    "syn_steps": Param(10, "student SGD steps on the synthetic images per iteration (paper 30)", int, 1, 1000),
    "expert_epochs": Param(2, "expert epochs M the student's steps must cover (paper 2)", int, 1, 1000),
    "max_start_epoch": Param(4, "start epochs are drawn from [0, max_start_epoch) (paper 20)", int, 1, 1000),
    "lr_teacher": Param(0.01, "the experts' SGD learning rate, and syn_lr's start (paper 0.01)", float, 0.0, 10.0,
                        low_open=True),
    "lr_lr": Param(1e-5, "SGD learning rate of syn_lr (paper 1e-5; 1e-7 at IPC 1)", float, 0.0, 1.0),
    "batch_syn": Param(20, "synthetic images per student step (0: all, the paper's choice)", int, 0, 100_000),
    "n_experts": Param(2, "expert networks trained on the real data (paper 100)", int, 1, 1000),
    "expert_epochs_total": Param(8, "epochs of every expert (paper 50)", int, 1, 1000),
    "expert_batch": Param(256, "real images per expert SGD step (paper 256)", int, 1, 100_000),
    "max_step_rms": Param(0.1, "largest root-mean-square change of the normalised pixels in one image step "
                                "(the gradient is clipped; 0: no limit, as MTT)", float, 0.0, 1e6),
}
FTD_PARAMS: dict[str, Param] = {
    **PARAMS,
    "rho": Param(0.01, "GSAM radius of the flat experts (FTD 0.01)", float, 0.0, 10.0),
    "alpha": Param(0.4, "GSAM surrogate-gap weight of the flat experts (FTD 0.4)", float, 0.0, 10.0),
    "ema_decay": Param(0.99, "decay of the images' moving average (FTD 0.9995 at 5,000 iterations)", float, 0.0,
                       1.0, high_open=True),
}
SMOOTH_PARAMS: dict[str, Param] = {
    **PARAMS,
    "clip": Param(1.0, "largest expert batch loss: larger ones are scaled down to it (kdlab's default)", float,
                  0.0, 100.0, low_open=True),
    "penalty": Param(0.01, "weight of the experts' squared gradient norm (kdlab's default)", float, 0.0, 100.0),
}


class FlatNet:
    """A network evaluated at a flat parameter vector (its parameters in ``named_parameters`` order)."""

    def __init__(self, net: nn.Module):
        self.net = net
        named = list(net.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]

    def vector(self) -> torch.Tensor:
        """The network's current parameters, flattened (detached)."""
        return nn.utils.parameters_to_vector(self.net.parameters()).detach().clone()

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, self.sizes)
        params = {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}
        return functional_call(self.net, params, (x,))


def check_functional(net: nn.Module, model: str, in_shape: tuple[int, ...]) -> None:
    """Refuse a network that cannot be trained on a flat parameter vector: one whose forward updates buffers (batch
    norm's running statistics) or whose output does not depend on every parameter (a forward of two blank inputs
    of ``in_shape`` checks both). Names the module path or parameter."""
    prefix = f"condense.model: {model!r} cannot be trained functionally for trajectory matching"
    fix = "use convnet (instancenorm/none) or mlp"
    for path, m in net.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            raise ConfigError(f"{prefix}: {path} ({type(m).__name__}) keeps running statistics; {fix}")
    if not any(p.requires_grad for p in net.parameters()):
        raise ConfigError(f"{prefix}: it has no trainable parameters; {fix}")
    before = {n: b.clone() for n, b in net.named_buffers()}
    out = net.train()(torch.zeros(2, *in_shape))
    for n, b in net.named_buffers():
        if not torch.equal(before[n], b):
            raise ConfigError(f"{prefix}: its forward changes the buffer {n}; {fix}")
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.sum(), [p for p in net.parameters() if p.requires_grad], allow_unused=True)
    unused = [n for n, g in zip(names, grads, strict=True) if g is None]
    if unused:
        raise ConfigError(f"{prefix}: its output does not depend on {unused[0]}"
                          f"{f' (and {len(unused) - 1} more)' if len(unused) > 1 else ''}; {fix}")


class Minibatches:
    """Index batches of ``size`` over labels ``y``: MTT's (shuffle, split, pop; reshuffle when used up) or balanced
    (``max(1, size // K)`` images of every class per batch, each class walked through in shuffled order)."""

    def __init__(self, y: torch.Tensor, size: int, generator: torch.Generator, balanced: bool = False):
        self.y, self.g, self.balanced = y, generator, balanced
        self.size = size if size > 0 else len(y)
        self.classes = [(y == c).nonzero().flatten() for c in range(int(y.max()) + 1)]
        self.per = max(1, self.size // len(self.classes))
        self.queue: list[torch.Tensor] = []
        self.pending = [m[:0] for m in self.classes]

    def next(self) -> torch.Tensor:
        if not self.balanced:
            if not self.queue:
                self.queue = list(torch.split(torch.randperm(len(self.y), generator=self.g), self.size))
            return self.queue.pop()
        out = []
        for c, members in enumerate(self.classes):
            while len(self.pending[c]) < self.per:
                self.pending[c] = torch.cat([self.pending[c], members[torch.randperm(len(members),
                                                                                     generator=self.g)]])
            out.append(self.pending[c][:self.per])
            self.pending[c] = self.pending[c][self.per:]
        return torch.cat(out)


def student_path(fn: FlatNet, theta0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor | float,
                 steps: int, batches: Minibatches, ops: tuple[str, ...] = (), generator: torch.Generator | None = None,
                 create_graph: bool = True) -> list[torch.Tensor]:
    """``steps`` SGD steps ``theta <- theta - lr * grad CE(fn(theta, aug(x[b])), y[b])`` from ``theta0``; every
    parameter vector on the way (steps + 1). With ``create_graph`` the path stays differentiable in ``x`` and
    ``lr``; without it each step is detached (for replaying a learned set)."""
    theta = theta0.detach().clone().requires_grad_(True)
    path = [theta]
    for _ in range(steps):
        idx = batches.next()
        xb = x[idx]
        if ops:
            xb = augment.apply(xb, augment.sample(len(xb), ops, generator))
        with torch.enable_grad():
            loss = F.cross_entropy(fn(theta, xb), y[idx])
            (grad,) = torch.autograd.grad(loss, theta, create_graph=create_graph)
        theta = theta - lr * grad
        if not create_graph:
            theta = theta.detach().requires_grad_(True)
        path.append(theta)
    return path


def matching_loss(theta_n: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MTT's normalised parameter distance ``||theta_N - target||^2 / ||start - target||^2``."""
    return ((theta_n - target) ** 2).sum() / ((start - target) ** 2).sum()


def pca_2d(*paths: torch.Tensor) -> list[np.ndarray]:
    """Each path (T_i, P) projected on the two leading principal axes of all their points together (at least two
    points, P >= 2; float64); each axis's sign makes its largest loading positive."""
    pts = torch.cat([p.double() for p in paths])
    centred = pts - pts.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * signs
    z = centred @ axes.T
    return [a.numpy() for a in torch.split(z, [len(p) for p in paths])]


def kmeans_representatives(x: torch.Tensor, k: int, generator: torch.Generator,
                           iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Indices of the ``k`` distinct rows of ``x`` nearest to the centroids of a k-means (Lloyd, float64, started
    from ``k`` random rows) of ``x`` flattened."""
    f = x.double().flatten(1)
    centres = f[torch.randperm(len(f), generator=generator)[:k]].clone()
    for _ in range(iterations):
        assign = torch.cdist(f, centres).argmin(1)
        for j in range(k):
            members = f[assign == j]
            if len(members):
                centres[j] = members.mean(0)
    dist = torch.cdist(centres, f)
    chosen: list[int] = []
    for j in range(k):  # nearest unused row to each centroid
        d = dist[j].clone()
        if chosen:
            d[chosen] = float("inf")
        chosen.append(int(d.argmin()))
    return torch.tensor(chosen, dtype=torch.long)


def _check_params(p: dict[str, Any]) -> None:
    last = p["max_start_epoch"] - 1 + p["expert_epochs"]
    if last > p["expert_epochs_total"]:
        raise ConfigError(f"condense.method_params.max_start_epoch: start epochs up to {p['max_start_epoch'] - 1} plus "
                          f"expert_epochs {p['expert_epochs']} reach epoch {last}, beyond expert_epochs_total "
                          f"{p['expert_epochs_total']}; valid: max_start_epoch <= "
                          f"{p['expert_epochs_total'] - p['expert_epochs'] + 1}")


def _match(job: Condensation, p: dict[str, Any], expert_config: ExpertConfig, ema_decay: float = 0.0,
           smooth: bool = False) -> Condensed:
    """The trajectory-matching loop shared by mtt, ftd and smooth_mtt (``smooth``: AST's distillation changes)."""
    cfg = job.cfg
    _check_params(p)
    net = job.new_net()
    check_functional(net, cfg.model, job.train.in_shape)
    fn = FlatNet(net)
    experts = expert_trajectories(job.real, job.train.y, cfg.model, cfg.model_params, job.k, expert_config,
                                  job.ops, cfg.seed)
    traj = experts.params
    m, steps = p["expert_epochs"], p["syn_steps"]
    if job.start is None and smooth and cfg.init == "real":
        idx = torch.cat([members[kmeans_representatives(job.real[members], cfg.ipc, job.g)]
                         for members in job.members])
        start, first = job.real[idx].clone(), 1
    else:
        start, first = job.start_images()
    syn = start.clone().requires_grad_(True)
    syn_lr = torch.tensor(float(p["lr_teacher"]), requires_grad=True)
    lr_img = cfg.lr_img if cfg.lr_img is not None else LR_IMG
    opt_img = torch.optim.SGD([syn], lr=lr_img, momentum=cfg.momentum_img)
    opt_lr = torch.optim.SGD([syn_lr], lr=p["lr_lr"], momentum=LR_MOMENTUM)
    kept = syn.detach().clone() if ema_decay else syn  # FTD returns (and snapshots) the moving average
    lr_history: list[float] = []
    starts: list[int] = []
    checkpoints = [round(steps * j / m) for j in range(1, m + 1)] if smooth else [steps]

    def step(_it: int) -> dict[str, float]:
        e = int(torch.randint(traj.shape[0], (1,), generator=job.g))
        t = int(torch.randint(p["max_start_epoch"], (1,), generator=job.g))
        batches = Minibatches(job.y_syn, p["batch_syn"], job.g, balanced=smooth)  # fresh every iteration, as MTT
        path = student_path(fn, traj[e, t], syn, job.y_syn, syn_lr, steps, batches, job.ops, job.g)
        targets = [t + m] if not smooth else [t + j for j in range(1, m + 1)]
        loss = torch.stack([matching_loss(path[c], traj[e, t], traj[e, s]) for c, s in
                            zip(checkpoints, targets, strict=True)]).mean()
        opt_img.zero_grad(set_to_none=True)
        opt_lr.zero_grad(set_to_none=True)
        loss.backward()
        if p["max_step_rms"] > 0:  # a step of lr_img * grad at most max_step_rms per pixel (root mean square)
            nn.utils.clip_grad_norm_([syn], p["max_step_rms"] * syn.numel() ** 0.5 / lr_img)
        opt_img.step()
        opt_lr.step()
        with torch.no_grad():
            syn_lr.clamp_(min=0.0)  # MTT leaves it free; a negative rate would make the student ascend
        if ema_decay:
            with torch.no_grad():
                kept.mul_(ema_decay).add_(syn.detach(), alpha=1 - ema_decay)
        lr_history.append(float(syn_lr.detach()))
        starts.append(t)
        return {"loss": float(loss.detach()), "syn_lr": lr_history[-1], "start_epoch": float(t),
                "expert": float(e)}

    x = job.learn(kept, first, step)
    extras = _viewer_extras(fn, traj[0], x, job, float(syn_lr.detach()), max(1, round(steps / m)),
                            p["batch_syn"], smooth)
    extras.update(syn_lr_history=np.asarray(lr_history, dtype=np.float64),
                  start_epochs=np.asarray(starts, dtype=np.int64))
    meta = {"syn_lr": float(syn_lr.detach()), "expert_key": experts.key, "expert_variant": expert_config.variant,
            "experts_trained": experts.trained, "expert_final_loss": experts.loss[:, -1].tolist(), "lr_img": lr_img,
            "stored_images": int(len(x)), "expert_steps_per_epoch": -(-len(job.real) // p["expert_batch"])}
    if ema_decay:
        meta["ema_decay"] = ema_decay
    return Condensed(x, job.y_syn.clone(), meta=meta, extras=extras)


def _viewer_extras(fn: FlatNet, expert: torch.Tensor, x: torch.Tensor, job: Condensation, lr: float,
                   steps_per_epoch: int, batch_syn: int, balanced: bool) -> dict[str, np.ndarray]:
    """A student trained on the final set from the expert's epoch 0 (``steps_per_epoch`` per expert epoch), both
    paths in 2-D and their distance per epoch."""
    batches = Minibatches(job.y_syn, batch_syn, job.g, balanced=balanced)
    theta, student = expert[0], [expert[0]]
    for _ in range(len(expert) - 1):
        theta = student_path(fn, theta, x, job.y_syn, lr, steps_per_epoch, batches, job.ops, job.g,
                             create_graph=False)[-1].detach()
        student.append(theta)
    student_t = torch.stack(student)
    e2d, s2d = pca_2d(expert, student_t)
    dist = torch.linalg.vector_norm(student_t.double() - expert.double(), dim=1).numpy()
    return {"expert_path_2d": e2d, "student_path_2d": s2d, "distance_to_expert": dist}


def _expert_config(p: dict[str, Any], variant: str, **extra: float) -> ExpertConfig:
    return ExpertConfig(n_experts=p["n_experts"], epochs=p["expert_epochs_total"], lr=p["lr_teacher"],
                        batch_size=p["expert_batch"], variant=variant, **extra)


@register_condenser("mtt", params=PARAMS, learned=True, family="trajectory matching")
def mtt(job: Condensation, params: dict[str, Any]) -> Condensed:
    """Matching training trajectories (Cazenavette et al., CVPR 2022): unrolled student steps match expert epochs."""
    return _match(job, params, _expert_config(params, "plain"))


@register_condenser("ftd", params=FTD_PARAMS, learned=True, family="trajectory matching")
def ftd(job: Condensation, params: dict[str, Any]) -> Condensed:
    """Flat trajectory distillation (Du et al., CVPR 2023): MTT on GSAM-trained experts, with EMA images."""
    return _match(job, params, _expert_config(params, "flat", rho=params["rho"], alpha=params["alpha"]),
                  ema_decay=params["ema_decay"])


@register_condenser("smooth_mtt", params=SMOOTH_PARAMS, learned=True, family="trajectory matching")
def smooth_mtt(job: Condensation, params: dict[str, Any]) -> Condensed:
    """AST (Shen et al., 2023): smooth experts, representative init, balanced inner loss, intermediate matching."""
    return _match(job, params, _expert_config(params, "smooth", clip=params["clip"], penalty=params["penalty"]),
                  smooth=True)
