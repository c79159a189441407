"""Meta-DMoE (Zhong et al., NeurIPS 2022): adapt a student to an unseen domain by meta-distillation from a
mixture of frozen domain experts.

One expert per source domain; a small transformer ``Aggregator`` reads the K experts' *logits* for a sample
(one token per expert) and returns aggregated logits, the knowledge the student is distilled towards. Meta-
training (MAML-style, second order): each step samples one source domain, masks that domain's expert (so
the aggregator learns to serve a domain none of its experts has seen), adapts the student by ``inner_steps``
gradient steps of KL(aggregator || student) on an unlabelled support batch, and updates the student's
initial weights and the aggregator with the cross-entropy of the adapted student on a labelled query batch.
At test time ``adapt`` runs the same inner loop on an unlabelled batch of the target domain.

Departures from the paper, for a small CPU setting: the aggregator reads logits, not pre-classifier features
(the experts and the student then share one output space and need no projection; this is why every expert
must predict the same classes); its output is a residual on the experts' uniform mixture (zero-initialised,
so it starts as that mixture); student and aggregator get a supervised warm start before meta-training.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from kdlab.data.base import ArrayDataset
from kdlab.distill.functional import kl_div
from kdlab.errors import ConfigError
from kdlab.models.taps import num_logits
from kdlab.transfer.harness import make_student
from kdlab.transfer.zoo import SourceZoo

Progress = Callable[[int, int, str], None]

#: The default zoo's single-shift 10-class sources: one domain and its expert each.
DOMAINS: tuple[str, ...] = ("mnist", "mnist_rot90", "mnist_invert", "mnist_blur", "mnist_edge", "mnist_noise")
METHODS: tuple[str, ...] = ("best expert (source val)", "best expert (oracle, by test)", "uniform mixture",
                            "ERM student", "aggregator (teacher)", "Meta-DMoE (no TTA)", "Meta-DMoE (TTA)")


def uniform_mixture(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the experts' class probabilities, (K, N, C) logits -> (N, C) probabilities; ``mask`` (K,)
    True drops that expert."""
    probs = F.softmax(logits, dim=2)
    if mask is not None:
        probs = probs[~mask]
    return probs.mean(0)


@torch.no_grad()
def expert_logits(experts: Sequence[nn.Module], x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Every expert's logits on ``x`` stacked as (K, N, C) (experts in eval mode, no gradients)."""
    out = []
    for e in experts:
        was = e.training
        e.eval()
        out.append(torch.cat([e(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]))
        e.train(was)
    return torch.stack(out)


class Aggregator(nn.Module):
    """One transformer encoder layer over the experts' log-probabilities (a token each, plus an expert-slot
    embedding and a summary token); returns log(uniform mixture) + a learned correction read off the summary
    token. Masked experts are hidden from attention and left out of the mixture."""

    def __init__(self, num_experts: int, num_classes: int, width: int = 32, heads: int = 4):
        super().__init__()
        self.num_experts, self.num_classes = num_experts, num_classes
        self.embed = nn.Linear(num_classes, width)
        self.slot = nn.Parameter(0.02 * torch.randn(num_experts, width))
        self.summary = nn.Parameter(torch.zeros(1, 1, width))
        self.encoder = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0,
                                                  batch_first=True)
        self.out = nn.Linear(width, num_classes)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        k, n, c = logits.shape
        if (k, c) != (self.num_experts, self.num_classes):
            raise ConfigError(f"logits: expected ({self.num_experts}, N, {self.num_classes}) expert logits, "
                              f"got {tuple(logits.shape)}")
        mask = torch.zeros(k, dtype=torch.bool) if mask is None else mask
        if bool(mask.all()):
            raise ConfigError("mask: every expert is masked; at least one must stay visible")
        tokens = self.embed(F.log_softmax(logits, 2).transpose(0, 1)) + self.slot  # (N, K, W)
        seq = torch.cat([self.summary.expand(n, 1, -1), tokens], 1)
        pad = torch.cat([torch.zeros(1, dtype=torch.bool), mask]).expand(n, -1)
        h = self.encoder(seq, src_key_padding_mask=pad)[:, 0]
        return uniform_mixture(logits, mask).clamp_min(1e-12).log() + self.out(h)


@dataclass
class MetaConfig:
    """Meta-DMoE's optimisation settings."""

    batch_size: int = 32        # support and query batch each
    inner_steps: int = 1
    inner_lr: float = 0.01
    temperature: float = 1.0    # of the inner-loop distillation loss
    lr: float = 3e-3            # Adam, outer loop and warm start
    first_order: bool = False   # True: the inner gradient is detached (then the aggregator learns nothing)

    def __post_init__(self) -> None:
        for name in ("batch_size", "inner_steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("inner_lr", "temperature", "lr"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")


class MetaDMoE:
    """Frozen domain ``experts`` (named by their domains in ``names``), a ``student`` and an ``Aggregator``.

    ``warm_start(domains, steps)`` trains student and aggregator on labels (and sets the student's batch-norm
    statistics, which meta-training and adaptation keep); ``meta_train(domains, steps)`` meta-distils on
    labelled source domains; ``adapt(x)`` returns a copy of the student adapted on an unlabelled target batch;
    ``predict(x, adapt=True)`` adapts on ``x`` and predicts.
    """

    def __init__(self, experts: Sequence[nn.Module], student: nn.Module, names: Sequence[str] | None = None,
                 in_shape: Sequence[int] = (1, 28, 28), config: MetaConfig | None = None, width: int = 32):
        self.experts = list(experts)
        if not self.experts:
            raise ConfigError("experts: Meta-DMoE needs at least one domain expert")
        self.names = list(names) if names is not None else [f"expert{i}" for i in range(len(self.experts))]
        if len(self.names) != len(self.experts) or len(set(self.names)) != len(self.names):
            raise ConfigError(f"names: need {len(self.experts)} distinct expert names, got {self.names}")
        self.in_shape = tuple(in_shape)
        classes = {n: num_logits(e, self.in_shape) for n, e in zip(self.names, self.experts, strict=True)}
        student_classes = num_logits(student, self.in_shape)
        if any(c != student_classes for c in classes.values()):
            raise ConfigError(
                f"experts: class counts {classes} differ from the student's {student_classes}; the aggregator "
                f"mixes the experts' predictions over one label space, so every expert must predict the "
                f"student's classes. Compatible: {[n for n, c in classes.items() if c == student_classes]}")
        for e in self.experts:
            e.eval()
            e.requires_grad_(False)
        self.student = student
        self.num_classes = student_classes
        self.config = config or MetaConfig()
        self.aggregator = Aggregator(len(self.experts), student_classes, width)

    # -- pieces ----------------------------------------------------------------------------------
    def mask_for(self, domain: str | None) -> torch.Tensor:
        """(K,) bool: True at the expert of ``domain`` (hidden while meta-training on that domain)."""
        return torch.tensor([n == domain for n in self.names], dtype=torch.bool)

    def distill_loss(self, params: Mapping[str, torch.Tensor], x: torch.Tensor,
                     target: torch.Tensor) -> torch.Tensor:
        """The inner-loop loss: KL(aggregated || student) of the student with ``params`` on ``x``."""
        return kl_div(functional_call(self.student, dict(params), (x,)), target, self.config.temperature)

    def inner_loop(self, x: torch.Tensor, target: torch.Tensor, create_graph: bool) -> dict[str, torch.Tensor]:
        """The student's parameters after ``inner_steps`` gradient-descent steps of ``distill_loss`` on ``x``."""
        params = dict(self.student.named_parameters())
        for _ in range(self.config.inner_steps):
            loss = self.distill_loss(params, x, target)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            params = {k: p - self.config.inner_lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
        return params

    def meta_loss(self, domain: str, xs: torch.Tensor, ls: torch.Tensor, xq: torch.Tensor,
                  yq: torch.Tensor) -> torch.Tensor:
        """Outer loss of one task: CE on (xq, yq) of the student adapted on support ``xs`` (expert logits
        ``ls`` (K, B, C)) towards the aggregator, with ``domain``'s expert masked. The student runs in eval
        mode: its batch-norm statistics stay the warm start's, so meta-training, adaptation and prediction
        normalise alike and a single-domain batch does not shift them."""
        self.student.eval()
        target = self.aggregator(ls, self.mask_for(domain))
        params = self.inner_loop(xs, target, create_graph=not self.config.first_order)
        return F.cross_entropy(functional_call(self.student, params, (xq,)), yq)

    # -- training --------------------------------------------------------------------------------
    def _check_domains(self, domains: Mapping[str, ArrayDataset],
                       logits: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        if not domains:
            raise ConfigError("domains: meta-training needs at least one labelled source domain")
        out = {}
        for name, ds in domains.items():
            if len(ds) < 2 * self.config.batch_size:
                raise ConfigError(f"domains[{name!r}]: {len(ds)} samples, need >= 2 x batch_size "
                                  f"= {2 * self.config.batch_size} (a support and a query batch)")
            if ds.num_classes != self.num_classes:
                raise ConfigError(f"domains[{name!r}]: {ds.num_classes} classes, the experts predict "
                                  f"{self.num_classes}")
            lg = logits[name] if logits is not None and name in logits else expert_logits(self.experts, ds.x)
            if tuple(lg.shape) != (len(self.experts), len(ds), self.num_classes):
                raise ConfigError(f"logits[{name!r}]: expected {(len(self.experts), len(ds), self.num_classes)},"
                                  f" got {tuple(lg.shape)}")
            out[name] = lg
        return out

    def warm_start(self, domains: Mapping[str, ArrayDataset], steps: int, seed: int = 0,
                   logits: Mapping[str, torch.Tensor] | None = None) -> None:
        """Supervised warm start: per step the student's CE on a batch of the pooled domains (train mode, so
        its batch-norm statistics become the sources' pooled ones) plus the aggregator's CE on one domain's
        batch with that domain's expert masked."""
        lg = self._check_domains(domains, logits)
        opt = torch.optim.Adam([*self.student.parameters(), *self.aggregator.parameters()], lr=self.config.lr)
        rng = np.random.default_rng(seed)
        names, b = list(domains), self.config.batch_size
        x_all = torch.cat([ds.x for ds in domains.values()])
        y_all = torch.cat([ds.y for ds in domains.values()])
        self.student.train()
        for _ in range(steps):
            pooled = torch.as_tensor(rng.choice(len(x_all), b, replace=False))
            d = names[rng.integers(len(names))]
            idx = torch.as_tensor(rng.choice(len(domains[d]), b, replace=False))
            loss = (F.cross_entropy(self.student(x_all[pooled]), y_all[pooled])
                    + F.cross_entropy(self.aggregator(lg[d][:, idx], self.mask_for(d)), domains[d].y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.student.eval()

    def meta_train(self, domains: Mapping[str, ArrayDataset], steps: int, seed: int = 0,
                   logits: Mapping[str, torch.Tensor] | None = None) -> list[float]:
        """``steps`` meta-steps on the labelled source ``domains`` (``logits[name]``: the experts' (K, N, C)
        logits on that domain, computed when absent); returns the outer losses."""
        lg = self._check_domains(domains, logits)
        opt = torch.optim.Adam([*self.student.parameters(), *self.aggregator.parameters()], lr=self.config.lr)
        rng = np.random.default_rng(seed)
        names, b, losses = list(domains), self.config.batch_size, []
        for _ in range(steps):
            d = names[rng.integers(len(names))]
            idx = torch.as_tensor(rng.choice(len(domains[d]), 2 * b, replace=False))
            s, q = idx[:b], idx[b:]
            loss = self.meta_loss(d, domains[d].x[s], lg[d][:, s], domains[d].x[q], domains[d].y[q])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    # -- test time -------------------------------------------------------------------------------
    def adapt(self, x_unlabelled: torch.Tensor) -> nn.Module:
        """A copy of the student adapted by the inner loop on an unlabelled target batch (eval mode)."""
        if tuple(x_unlabelled.shape[1:]) != self.in_shape or len(x_unlabelled) == 0:
            raise ConfigError(f"x_unlabelled: need a non-empty unlabelled batch of shape (N, *{self.in_shape}), got "
                              f"{tuple(x_unlabelled.shape)}")
        with torch.no_grad():
            target = self.aggregator(expert_logits(self.experts, x_unlabelled))
        adapted = copy.deepcopy(self.student)
        self.student.eval()
        with torch.enable_grad():
            params = self.inner_loop(x_unlabelled, target, create_graph=False)
        with torch.no_grad():
            for k, p in adapted.named_parameters():
                p.copy_(params[k])
        return adapted.eval()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, adapt: bool = True) -> torch.Tensor:
        """Student logits on ``x``, after adapting on ``x`` itself when ``adapt``."""
        return (self.adapt(x) if adapt else self.student.eval())(x)


def train_erm(student: nn.Module, domains: Mapping[str, ArrayDataset], steps: int, batch_size: int,
              lr: float, seed: int = 0) -> nn.Module:
    """The ERM baseline: Adam on cross-entropy over batches drawn from the pooled source domains."""
    x = torch.cat([d.x for d in domains.values()])
    y = torch.cat([d.y for d in domains.values()])
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    student.train()
    for _ in range(steps):
        idx = torch.as_tensor(rng.choice(len(x), batch_size, replace=False))
        loss = F.cross_entropy(student(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student.eval()


@torch.no_grad()
def _accuracy(logits_or_probs: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of scores (N, C) against labels."""
    return float((logits_or_probs.argmax(1) == y).double().mean())


@dataclass
class DomainData:
    """One domain for the study: labelled pool, val and test splits and every expert's logits on each
    (``logits[split]``: (E, N, C), experts in the study's order)."""

    pool: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    logits: dict[str, torch.Tensor]


@dataclass
class StudySizes:
    """How much the study trains at a given scale."""

    warmup: int
    meta_steps: int
    adapt_batch: int
    config: MetaConfig

    @classmethod
    def at(cls, scale: float) -> StudySizes:
        return cls(warmup=max(1, round(80 * scale)), meta_steps=max(1, round(25 * scale)), adapt_batch=128,
                   config=MetaConfig())


def leave_one_out(held: str, data: Mapping[str, DomainData], experts: Sequence[nn.Module],
                  names: Sequence[str], sizes: StudySizes, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Every method on held-out domain ``held``: its expert and its labels are never read (only its test
    split and unlabelled images from its pool). Returns (table rows, per-expert rows)."""
    src = [n for n in names if n != held]
    keep = [names.index(n) for n in src]
    sources = {n: data[n].pool for n in src}
    target = data[held]
    y_test = target.test.y
    rows: list[dict] = []
    expert_rows = []
    for n, k in zip(src, keep, strict=True):
        val = float(np.mean([_accuracy(data[m].logits["val"][k], data[m].val.y) for m in src if m != n]))
        expert_rows.append({"held_out": held, "expert": n, "source_val_accuracy": val,
                            "test_accuracy": _accuracy(target.logits["test"][k], y_test)})
    picked = max(expert_rows, key=lambda r: r["source_val_accuracy"])
    oracle = max(expert_rows, key=lambda r: r["test_accuracy"])
    rows.append({"held_out": held, "method": METHODS[0], "accuracy": picked["test_accuracy"],
                 "detail": picked["expert"]})
    rows.append({"held_out": held, "method": METHODS[1], "accuracy": oracle["test_accuracy"],
                 "detail": oracle["expert"]})
    rows.append({"held_out": held, "method": METHODS[2],
                 "accuracy": _accuracy(uniform_mixture(target.logits["test"][keep]), y_test), "detail": ""})

    cfg = sizes.config
    torch.manual_seed(seed)
    erm = train_erm(make_student(target.test.num_classes, target.test.in_shape), sources,
                    sizes.warmup + 2 * sizes.meta_steps, cfg.batch_size, cfg.lr, seed)
    with torch.no_grad():
        rows.append({"held_out": held, "method": METHODS[3], "accuracy": _accuracy(erm(target.test.x), y_test),
                     "detail": f"{sizes.warmup + 2 * sizes.meta_steps} steps"})

    torch.manual_seed(seed)
    model = MetaDMoE([experts[k] for k in keep], make_student(target.test.num_classes, target.test.in_shape), src,
                     target.test.in_shape, cfg)
    logits = {n: data[n].logits["pool"][keep] for n in src}
    model.warm_start(sources, sizes.warmup, seed, logits)
    model.meta_train(sources, sizes.meta_steps, seed + 1, logits)
    with torch.no_grad():
        rows.append({"held_out": held, "method": METHODS[4],
                     "accuracy": _accuracy(model.aggregator(target.logits["test"][keep]), y_test), "detail": ""})
        rows.append({"held_out": held, "method": METHODS[5],
                     "accuracy": _accuracy(model.predict(target.test.x, adapt=False), y_test), "detail": ""})
    rng = np.random.default_rng(seed + 2)
    batch = target.pool.x[torch.as_tensor(rng.choice(len(target.pool), min(sizes.adapt_batch, len(target.pool)),
                                                     replace=False))]
    with torch.no_grad():
        acc = _accuracy(model.adapt(batch)(target.test.x), y_test)
    rows.append({"held_out": held, "method": METHODS[6], "accuracy": acc,
                 "detail": f"adapted on {len(batch)} unlabelled target images"})
    return rows, expert_rows


def check_domains(zoo: SourceZoo, domains: Sequence[str]) -> list[str]:
    """``domains`` validated: built-in sources of ``zoo`` with one shared class count, at least three."""
    domains = zoo.check(list(domains))
    missing = [d for d in domains if d not in zoo.defs]
    if missing:
        raise ConfigError(f"domains: {missing} have no built-in domain data; choose from {list(zoo.defs)}")
    classes = {d: zoo.card(d).classes for d in domains}
    counts = list(classes.values())
    main = max(set(counts), key=counts.count)
    bad = {d: c for d, c in classes.items() if c != main}
    if bad:
        compatible = [n for n in zoo.defs if zoo.card(n).classes == main]
        raise ConfigError(f"domains: {bad} predict a different number of classes than the others ({main}); "
                          f"Meta-DMoE's aggregator mixes the experts' predictions over one label space. "
                          f"Compatible sources: {compatible}")
    if len(domains) < 3:
        raise ConfigError(f"domains: need >= 3 domains (one held out, two or more sources), got {domains}")
    return domains


def domain_data(zoo: SourceZoo, domains: Sequence[str], experts: Sequence[nn.Module], n_pool: int, n_val: int,
                n_test: int, seed: int = 0, progress: Progress | None = None) -> dict[str, DomainData]:
    """Each domain's random pool / val / test subsets (``seed``) and every expert's logits on them."""
    g = torch.Generator().manual_seed(seed)
    data = {}
    for i, d in enumerate(domains):
        if progress:
            progress(i, len(domains), f"expert logits on {d}")
        train, val, test = zoo.splits(zoo.defs[d])
        pool = train.subset(torch.randperm(len(train), generator=g)[:n_pool])
        val = val.subset(torch.randperm(len(val), generator=g)[:n_val])
        test = test.subset(torch.randperm(len(test), generator=g)[:n_test])
        data[d] = DomainData(pool, val, test, {s: expert_logits(experts, ds.x)
                                               for s, ds in (("pool", pool), ("val", val), ("test", test))})
    return data


def study_meta_dmoe(zoo: SourceZoo, seed: int = 0, scale: float = 1.0, progress: Progress | None = None,
                    domains: Sequence[str] | None = None, held_out: Sequence[str] | None = None) -> dict:
    """Leave-one-domain-out Meta-DMoE on the zoo's domains (default ``DOMAINS``): for each held-out domain
    the other domains' experts and labelled data only, tested on the held-out domain's test split.

    Returns ``{"study": "meta_dmoe", "seed", "scale", "domains", "held_out", "sizes", "table": [{held_out,
    method, accuracy, detail}], "experts": [{held_out, expert, source_val_accuracy, test_accuracy}],
    "summary": {method: mean accuracy over held-out domains, "gain_vs_best_expert", "gain_vs_uniform"},
    "time_s"}``; the gains are Meta-DMoE (TTA) minus the val-picked best expert / the uniform mixture.
    """
    t0 = time.perf_counter()
    if not scale > 0:
        raise ConfigError(f"scale: must be > 0, got {scale}")
    domains = check_domains(zoo, DOMAINS if domains is None else domains)
    held_out = list(domains if held_out is None else held_out)
    if not held_out or any(h not in domains for h in held_out):
        raise ConfigError(f"held_out: choose among the domains {domains}, got {held_out}")
    sizes = StudySizes.at(scale)
    n_pool = max(4 * sizes.config.batch_size, round(400 * scale))
    n_val, n_test = min(500, max(50, round(100 * scale))), min(1000, max(50, round(300 * scale)))
    total = len(domains) + len(held_out)
    experts = [zoo.load(d) for d in domains]
    data = domain_data(zoo, domains, experts, n_pool, n_val, n_test, seed,
                       (lambda i, n, m: progress(i, total, m)) if progress else None)
    table, expert_rows = [], []
    for i, h in enumerate(held_out):
        if progress:
            progress(len(domains) + i, total, f"held out {h}")
        rows, ex = leave_one_out(h, data, experts, domains, sizes, seed)
        table += rows
        expert_rows += ex
    if progress:
        progress(total, total, "done")
    summary = {m: float(np.mean([r["accuracy"] for r in table if r["method"] == m])) for m in METHODS}
    summary["gain_vs_best_expert"] = summary[METHODS[6]] - summary[METHODS[0]]
    summary["gain_vs_uniform"] = summary[METHODS[6]] - summary[METHODS[2]]
    return {"study": "meta_dmoe", "seed": seed, "scale": scale, "domains": domains, "held_out": held_out,
            "sizes": {"pool_per_domain": n_pool, "val_per_domain": n_val,
                      "test_per_domain": n_test, "warmup_steps": sizes.warmup, "meta_steps": sizes.meta_steps,
                      "batch_size": sizes.config.batch_size, "inner_steps": sizes.config.inner_steps,
                      "inner_lr": sizes.config.inner_lr, "adapt_batch": sizes.adapt_batch},
            "table": table, "experts": expert_rows, "summary": summary, "time_s": time.perf_counter() - t0}
