"""The training loop: per-term telemetry, validation, checkpoints with resume, one code path from CPU to
several GPUs (through accelerate)."""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from kdlab.data.base import ArrayDataset, BatchLoader
from kdlab.distill.base import Distiller, TeacherOutput
from kdlab.distill.evaluate import Evaluation, evaluate, score
from kdlab.distill.optim import OPTIM, build_optimizer, build_schedule
from kdlab.distill.teacher_cache import TeacherCache, cache_bytes
from kdlab.distill.teacher_outputs import OutputFiles
from kdlab.errors import CheckpointError, ConfigError, NonFiniteLossError, ShapeError
from kdlab.models.checkpoints import load_state
from kdlab.models.inference import predict
from kdlab.models.taps import num_logits


def _setting(key: str) -> Any:
    """A ``TrainConfig`` field whose default (read when a config is made) and checks are ``OPTIM[key]``'s."""
    return field(default_factory=lambda: OPTIM[key].default, metadata={"optim": key})


@dataclass
class TrainConfig:
    """Optimisation settings of one training run (the spec's ``optim`` section plus runtime choices).

    The optimisation fields (those with ``metadata["optim"]``; ``optimizer`` is the spec's ``name``) take
    their defaults, bounds and choices from ``kdlab.distill.optim.OPTIM``; a bad value raises ConfigError.
    """

    epochs: int = _setting("epochs")
    batch_size: int = _setting("batch_size")
    optimizer: str = _setting("name")
    lr: float = _setting("lr")
    momentum: float = _setting("momentum")
    weight_decay: float = _setting("weight_decay")
    schedule: str = _setting("schedule")
    grad_clip: float | None = _setting("grad_clip")
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    cache_teacher: bool = True
    cache_limit_mb: float = 1024.0
    teacher_outputs: str | None = None  # a folder keeping the teacher's outputs by content across runs
    log_every: int = 10

    def __post_init__(self) -> None:
        for f in fields(self):
            if "optim" in f.metadata:
                setattr(self, f.name, OPTIM[f.metadata["optim"]].check(getattr(self, f.name), f.name))

    @classmethod
    def from_optim(cls, optim: Any, **runtime: Any) -> TrainConfig:
        """The config of a spec's ``optim`` section (an ``OptimSpec`` or a mapping of ``OPTIM`` keys) plus
        runtime choices (seed, device, amp, ...)."""
        settings: dict[str, Any] = {}
        for f in fields(cls):
            key = f.metadata.get("optim")
            if key is not None and (key in optim if isinstance(optim, Mapping) else hasattr(optim, key)):
                settings[f.name] = optim[key] if isinstance(optim, Mapping) else getattr(optim, key)
        return cls(**settings, **runtime)


class Callback:
    """Hooks the trainer calls; the run store and the UIs subclass this. All are optional."""

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    """History of epoch metrics, the best (by val accuracy) and last epochs, and where weights are."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    teacher: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    best_checkpoint: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(choice: str = "auto") -> str:
    """``auto`` takes the GPU when there is one; ``cuda`` without a GPU is a clear error."""
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError.at("device", f"{choice!r} was asked for but no GPU is visible on this machine; use "
                             "'auto' or 'cpu'", ("auto", "cpu"))
    if choice.startswith("cuda:") and int(choice[5:]) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError.at("device", f"{choice!r}: this machine has {n} GPU{'s' if n != 1 else ''}; valid: "
                             f"{', '.join(['auto', 'cpu', 'cuda', *(f'cuda:{i}' for i in range(n))])}")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError.at("device", "'mps' was asked for but Apple's MPS is not available here; use 'auto' "
                             "or 'cpu'", ("auto", "cpu"))
    if choice not in ("cpu", "mps") and not choice.startswith("cuda"):
        raise ConfigError(f"device: {choice!r} is not one of ['auto', 'cpu', 'cuda', 'cuda:N', 'mps']")
    return choice


class _TrainStep(torch.nn.Module):
    """Routes ``forward`` to ``forward_train`` so DDP wrapping (accelerate) syncs the right gradients."""

    def __init__(self, distiller: Distiller):
        super().__init__()
        self.distiller = distiller

    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher_out: TeacherOutput | None):
        return self.distiller.forward_train(x, y, teacher_out)


class Trainer:
    """Trains ``distiller``'s student (and adapters) on an ``ArrayDataset``; see ``fit``.

    ``role`` says what this training is in a larger run (``"student"``, or ``"teacher"`` when an experiment
    trains its teacher with the ``vanilla`` method); errors name it.
    """

    def __init__(self, distiller: Distiller, config: TrainConfig | None = None,
                 callbacks: Sequence[Callback] = (), checkpoint_dir: str | Path | None = None,
                 role: str = "student"):
        from accelerate import Accelerator  # lazy: only a Trainer needs accelerate (~50 ms to import)

        self.config = config or TrainConfig()
        device = pick_device(self.config.device)
        precision = ("bf16" if device == "cpu" else "fp16") if self.config.amp else "no"
        self.accelerator = Accelerator(cpu=device == "cpu", mixed_precision=precision)
        self.device = self.accelerator.device
        self.distiller = distiller.to(self.device)
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.role = str(role)
        self.optimizer = build_optimizer(distiller.trainable_parameters(), self.config.optimizer,
                                         self.config.lr, self.config.momentum, self.config.weight_decay)
        self.scheduler = build_schedule(self.optimizer, self.config.schedule, self.config.epochs)
        self.step_module, self.optimizer = self.accelerator.prepare(_TrainStep(distiller), self.optimizer)
        self.epoch = 0
        self.global_step = 0
        self.result = TrainResult()

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _loader(self, data: ArrayDataset, shuffle: bool) -> BatchLoader:
        """Training batches keep the global batch at ``config.batch_size``: with N processes each takes
        ``batch_size // N`` (so N ranks step through exactly the samples one process would, in the same
        order, and the learning rate and the number of steps per epoch stay those of the spec)."""
        acc = self.accelerator
        size = max(1, self.config.batch_size // acc.num_processes) if shuffle else 512
        return BatchLoader(data, size, shuffle=shuffle, seed=self.config.seed,
                           shard=(acc.process_index, acc.num_processes))

    def _teacher_cache(self, train: ArrayDataset) -> TeacherCache | None:
        d, cfg = self.distiller, self.config
        if not (cfg.cache_teacher and d.uses_teacher and d.cacheable and not d.trains_teacher):
            return None
        need = cache_bytes(d, len(train)) / 2**20
        if need > cfg.cache_limit_mb:
            self.result.notes.append(f"teacher cache off: needs {need:.0f} MB > cache_limit_mb")
            return None
        files = self._output_files()
        if files is None:
            return TeacherCache.build(d, train, self.device)
        layers = tuple(getattr(d, "teacher_layers", None) or ())
        out = files.memo(d.teacher, train.x, layers, lambda: TeacherCache.build(d, train, self.device).output)
        return TeacherCache(out.to(self.device))

    def _output_files(self) -> OutputFiles | None:
        folder = self.config.teacher_outputs
        return OutputFiles(folder) if folder and self.config.cache_teacher else None

    def teacher_logits(self, data: ArrayDataset) -> torch.Tensor | None:
        """The teacher's logits on ``data`` (on the CPU; from ``config.teacher_outputs`` when stored there)."""
        teacher = self.distiller.teacher
        if teacher is None:
            return None
        files = self._output_files()
        compute = lambda: TeacherOutput(predict(teacher, data, device=self.device))  # noqa: E731
        return (files.memo(teacher, data.x, (), compute) if files else compute()).logits

    def _reduce(self, ev: Evaluation) -> Evaluation:
        t = torch.tensor([ev.correct, ev.loss_sum, ev.agree, ev.n], dtype=torch.float64, device=self.device)
        if self.accelerator.num_processes > 1:
            t = self.accelerator.reduce(t, reduction="sum")
        return Evaluation(*t.tolist())

    def _emit(self, hook: str, *args: Any) -> None:
        if self.is_main:
            for cb in self.callbacks:
                getattr(cb, hook)(self, *args)

    def _check_classes(self, **splits: ArrayDataset) -> None:
        """ShapeError unless the student (and the teacher) have an output for every class of each split: a
        narrower model would end in torch's "Target 8 is out of bounds" at the first step."""
        d = self.distiller
        models = [("student", int(getattr(d, "num_classes", 0) or num_logits(d.student, d.in_shape)))]
        if d.teacher is not None:
            models.append(("teacher", num_logits(d.teacher, d.in_shape)))
        for split, data in splits.items():
            y = getattr(data, "y", None)
            top = int(y.max()) if y is not None and len(y) else -1
            need = max(int(getattr(data, "num_classes", 0)), top + 1)
            for who, width in models:
                if width < need:
                    name = getattr(data, "name", "")
                    raise ShapeError(
                        f"the {who} model has {width} outputs but the {split} data{f' {name!r}' if name else ''} "
                        f"has {need} classes (largest label {top}): build the {who} for {need} classes, e.g. "
                        f"kdlab.models.create(name, num_classes={need}, in_shape=...), or use data whose labels "
                        f"are below {width}")

    def _non_finite(self, terms: Mapping[str, torch.Tensor], loss: torch.Tensor) -> NonFiniteLossError:
        """The error for a NaN/inf loss: which training (teacher or student), which terms, likely causes, and
        whether a checkpoint is kept (only when one is on disk). At most ~500 characters."""
        values = {k: float(v.detach().float().sum()) for k, v in terms.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        shown = bad or list(values)

        def term(k: str) -> str:
            return f"{k[:24]}={values[k]:.3g}"

        listed = ", ".join(term(k) for k in shown[:4]) + (f" (+{len(shown) - 4} more)" if len(shown) > 4 else "")
        what = (f"non-finite terms {listed}" if bad else
                f"every term is finite but their sum is {float(loss.detach()):.3g} ({listed})")
        optim = "teacher.optim" if self.role == "teacher" else "optim"
        params = (f"{optim}.lr (lower it), {optim}.grad_clip" if self.role == "teacher" else
                  f"method.params (e.g. temperature), {optim}.lr (lower it), {optim}.grad_clip")
        head = (f"{self.role[:20]} training: non-finite loss at epoch {self.epoch + 1}, step {self.global_step}: "
                f"{what}; check the data for NaN/inf and parameters such as {params}; ")
        last = self.checkpoint_dir / "last.pt" if self.checkpoint_dir is not None else None
        if last is not None and last.is_file():
            path, room = str(last), 496 - len(head) - len("the last good checkpoint is kept ()")
            if len(path) > room:
                path = "..." + path[len(path) - max(room - 3, 10):]
            tail = f"the last good checkpoint is kept ({path})"
        else:
            tail = "no checkpoint was written yet"
        return NonFiniteLossError(head + tail)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, name: str = "last.pt") -> Path | None:
        """Write model, optimiser, schedule, RNG and history atomically (tmp file, then rename)."""
        if self.checkpoint_dir is None or not self.is_main:
            return None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / name
        state = {
            "model": self.accelerator.unwrap_model(self.step_module).distiller.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "global_step": self.global_step,
            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.result.history, "best": self.result.best,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything ``save_checkpoint`` wrote; a bad file raises CheckpointError, changing nothing."""
        state = load_state(path)
        try:
            self.distiller.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} does not match this model/optimiser: {e}") from e
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.result.history, self.result.best = list(state["history"]), dict(state["best"])

    # -- the loop --------------------------------------------------------------------------------
    def fit(self, train: ArrayDataset, val: ArrayDataset, resume_from: str | Path | None = None) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing after ``resume_from``'s epoch), validating each."""
        cfg, d = self.config, self.distiller
        self._check_classes(train=train, val=val)
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        else:
            random.seed(cfg.seed)
            torch.manual_seed(cfg.seed)
        cache = self._teacher_cache(train)
        val_loader = self._loader(val, shuffle=False)
        teacher_val = self.teacher_logits(val)
        if teacher_val is not None:
            tev = score(teacher_val, val.y)  # the whole val set on every rank: no reduce
            self.result.teacher = {"val_acc": tev.acc, "val_loss": tev.loss}
        loader = self._loader(train, shuffle=True)
        total_steps = max(1, cfg.epochs * len(loader))
        self._emit("on_fit_start")
        while self.epoch < cfg.epochs:
            loader.set_epoch(self.epoch)
            metrics = self._train_epoch(loader, cache, total_steps)
            ev = self._reduce(evaluate(d, val_loader, self.device, teacher_val))
            metrics.update({"epoch": self.epoch + 1, "val/acc": ev.acc, "val/loss": ev.loss,
                            "lr": self.optimizer.param_groups[0]["lr"]})
            if teacher_val is not None:
                metrics["val/agreement"] = ev.agreement
            self.scheduler.step()
            self.epoch += 1
            self.result.history.append(metrics)
            self.result.last = metrics
            if not self.result.best or metrics["val/acc"] > self.result.best["val/acc"]:
                self.result.best = metrics
                best = self.save_checkpoint("best.pt")
                self.result.best_checkpoint = str(best) if best else None
            last = self.save_checkpoint("last.pt")
            self.result.checkpoint = str(last) if last else None
            self._emit("on_epoch_end", metrics)
        if not self.result.last and self.result.history:
            self.result.last = self.result.history[-1]
        self._emit("on_fit_end", self.result)
        return self.result

    def _train_epoch(self, loader: BatchLoader, cache: TeacherCache | None, total_steps: int) -> dict[str, float]:
        cfg, acc, d = self.config, self.accelerator, self.distiller
        self.step_module.train()
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=self.device)
        seen, t0 = 0, time.perf_counter()
        for x, y, idx in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            d.set_progress(self.global_step / total_steps)
            t_out = cache(idx) if cache is not None else None
            with acc.autocast():
                logits, terms = self.step_module(x, y, t_out)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise self._non_finite(terms, loss)
            self.optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            if cfg.grad_clip:
                acc.clip_grad_norm_(d.trainable_parameters(), cfg.grad_clip)
            self.optimizer.step()
            for k, v in terms.items():
                v = v.detach()
                sums[k] = sums[k] + v if k in sums else v
            sums["loss"] = sums["loss"] + loss.detach() if "loss" in sums else loss.detach()
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            self.global_step += 1
            if cfg.log_every and self.global_step % cfg.log_every == 0 and self.callbacks:
                self._emit("on_step_end", {"step": self.global_step, "epoch": self.epoch + loader_frac(seen, loader),
                                           "train/loss": float(loss.detach())})
        steps = max(1, len(loader))
        elapsed = time.perf_counter() - t0
        world = acc.num_processes
        if world > 1:  # every rank's terms, accuracy and sample count (one all-reduce per epoch)
            keys = sorted(sums)
            t = torch.stack([sums[k].float() for k in keys] + [correct.float(),
                            torch.tensor(float(seen), device=self.device)]).to(torch.float64)
            t = acc.reduce(t, reduction="sum")
            sums = {k: t[i] / world for i, k in enumerate(keys)}
            correct, seen_all = t[-2], float(t[-1])
        else:
            seen_all = float(seen)
        out = {f"train/{k}": float(v) / steps for k, v in sums.items()}
        out["train/acc"] = float(correct) / max(seen_all, 1.0)
        out["throughput"] = seen_all / max(elapsed, 1e-9)  # samples per second over all processes
        out["epoch_time"] = elapsed
        return out


def loader_frac(seen: int, loader: BatchLoader) -> float:
    """Fraction of the epoch done after ``seen`` samples of this process's shard."""
    return seen / max(1, loader.num_samples)
