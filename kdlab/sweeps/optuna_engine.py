"""The Optuna engine: the sweep job asks Optuna for configurations and runs each as a ``train`` run in the store.

Trials are launched through the job contract (``kdlab.launch``), so they take the store's slots, show on the Runs
page and survive the sweep's own process. The driver reads each trial's epoch rows from the store, reports them to
Optuna and stops a trial its pruner rejects (the run's cancel: it ends ``cancelled``, tagged ``pruned``). A trial
whose worker died (``interrupted``) is resumed from its last checkpoint up to ``retries`` times, then recorded as
interrupted; the sweep goes on. The study lives in ``artifacts/optuna.journal``, so a resumed sweep adopts the
trials still running and continues where it stopped.
"""
from __future__ import annotations

import time
from typing import Any

from kdlab.runs.background import cancel_run, launch, resume_run
from kdlab.runs.executors import get_executor
from kdlab.runs.job import JobContext
from kdlab.runs.scheduler import refresh
from kdlab.runs.store import ACTIVE, TERMINAL
from kdlab.sweeps.result import SweepResult, Trial, save_sweep
from kdlab.sweeps.space import Space, apply_values
from kdlab.sweeps.trials import PRUNED_TAG, Importances, curve_of, objective, trial_name, trial_tags

POLL_S = 0.3


def sampler_of(name: str, seed: int) -> Any:
    import optuna

    if name == "tpe":  # constant liar: trials running in parallel count as bad so the next ask looks elsewhere
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)  # random, and grid (its configurations are enqueued)


def pruner_of(name: str, grace: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=grace - 1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=3)
    return optuna.pruners.NopPruner()


class OptunaSweep:
    """One sweep run's driver: keeps ``parallel`` trials in flight until ``n_trials`` have ended."""

    def __init__(self, ctx: JobContext, space: Space, result: SweepResult, p: dict[str, Any]):
        self.ctx, self.space, self.result, self.p = ctx, space, result, p
        self.store = ctx.store
        self.live: dict[int, Any] = {}  # trial number -> optuna trial, while its run is active
        self.by_number = {t.number: t for t in result.trials}
        self.importances = Importances(result, space, p["seed"])

    # -- the study ---------------------------------------------------------------------------------------------
    def study(self) -> Any:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = JournalStorage(JournalFileBackend(str(self.ctx.artifact("optuna.journal"))))
        p = self.p
        study = optuna.create_study(storage=storage, study_name="sweep", direction=p["direction"],
                                    sampler=sampler_of(p["sampler"], p["seed"]),
                                    pruner=pruner_of(p["pruner"], p["grace_epochs"]), load_if_exists=True)
        if p["sampler"] == "grid" and not study.trials:
            for values in self.space.grid()[: self.result.n_trials]:
                study.enqueue_trial(self.space.engine_params(values))
        return study

    # -- one trial ---------------------------------------------------------------------------------------------
    def start(self, study: Any) -> None:
        trial = study.ask()
        values = self.space.suggest(trial)
        spec = apply_values(self.result.base_spec, values)
        handle = launch(spec, store=self.store, name=trial_name(self.result.name, trial.number),
                        tags=trial_tags(self.result.sweep_id, trial.number))
        trial.set_user_attr("run_id", handle.id)
        t = Trial(trial.number, values, "queued", run_id=handle.id, started=time.time())
        self.result.trials.append(t)
        self.by_number[t.number] = t
        self.live[t.number] = trial
        self.ctx.log(f"trial {t.number}: {_shown(values)} -> run {handle.id}")

    def follow(self, study: Any, number: int) -> bool:
        """Bring trial ``number`` up to date; True when it changed."""
        import optuna

        t, trial = self.by_number[number], self.live[number]
        run = self.store.get_run(t.run_id)
        changed = False
        if run.status == "running" and t.state == "queued":
            t.state, changed = "running", True
        curve = curve_of(self.store, t.run_id, self.p["metric"])
        if curve != t.curve:
            reported = {int(e) for e, _ in t.curve}
            t.curve, t.value, changed = curve, objective(curve, self.p["direction"]), True
            for epoch, value in curve:
                if epoch not in reported:
                    trial.report(value, epoch)
            if run.status in ACTIVE and t.state != "pruned" and trial.should_prune():
                self.prune(t, run)
        if run.status not in TERMINAL:
            return changed
        if t.state == "pruned":  # stopped on the pruner's word, however its run ended
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif run.status == "completed" and t.value is not None:
            t.state = "complete"
            study.tell(trial, t.value)
        elif run.status in ("interrupted", "cancelled") and t.attempts <= self.p["retries"]:
            t.attempts += 1
            t.note = f"{run.status} ({run.error or 'no error'}); retried from its last checkpoint"
            self.ctx.log(f"trial {number}: run {t.run_id} {run.status}; resuming it (attempt {t.attempts})",
                         "warning")
            resume_run(self.store, t.run_id)
            t.state = "queued"
            return True
        else:
            t.state = "interrupted" if run.status in ("interrupted", "cancelled") else "failed"
            t.note = f"{run.status}: {run.error or 'no error recorded'}"
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        t.finished = run.finished or time.time()
        del self.live[number]
        if t.state == "complete":
            self.importances.update()
        return True

    def prune(self, t: Trial, run: Any) -> None:
        """Stop the trial's run (it ends ``cancelled``, tagged ``pruned``); the slot frees when it has stopped."""
        t.state = "pruned"
        epoch, value = t.curve[-1]
        t.note = f"pruned after epoch {int(epoch)} ({self.p['metric']} {value:.4f})"
        self.store.tag_run(t.run_id, PRUNED_TAG)
        self.store.log(t.run_id, f"{t.note} by the sweep's {self.p['pruner']} pruner")
        self.store.update_run(t.run_id, cancel_requested=True)
        if run.status == "running":
            get_executor(run.executor).stop(self.store, self.store.get_run(t.run_id))

    # -- the loop ----------------------------------------------------------------------------------------------
    def adopt(self, study: Any) -> None:
        """After a resume: follow again the trials the study still has running (their runs may have ended)."""
        import optuna

        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            run_id = frozen.user_attrs.get("run_id")
            t = self.by_number.get(frozen.number)
            if run_id is None or t is None:  # asked but never launched: nothing ran
                study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                continue
            self.live[frozen.number] = optuna.trial.Trial(study, frozen._trial_id)
            if t.state not in ("pruned",):
                t.state = "queued"
            self.ctx.log(f"resumed sweep: following trial {t.number} (run {run_id}) again")

    def parallel(self) -> int:
        p = self.p["parallel"]
        return max(1, int(p) if p else self.store.max_concurrent or 1)

    def run(self) -> None:
        get_executor("local").use_fork_server()  # trials start in ~0.1 s instead of ~3 s of imports
        study = self.study()
        self.adopt(study)
        n = self.result.n_trials
        try:
            while True:
                self.ctx.check_cancel()
                refresh(self.store)
                changed = False
                for number in list(self.live):
                    changed |= self.follow(study, number)
                while len(self.live) < self.parallel() and len(self.result.trials) < n:
                    self.start(study)
                    changed = True
                if changed:
                    self.save()
                if not self.live and len(self.result.trials) >= n:
                    self.importances.final()
                    break
                time.sleep(POLL_S)
        except BaseException:  # cancelled or failed: the sweep's trials stop with it (resume adopts them again)
            for number in list(self.live):
                run_id = self.by_number[number].run_id
                if self.store.get_run(run_id).status in ACTIVE:
                    cancel_run(self.store, run_id, timeout=5.0)
            self.save()
            raise

    def save(self) -> None:
        counts = self.result.counts()
        ended = sum(counts[s] for s in ("complete", "pruned", "failed", "interrupted"))
        best = self.result.best
        shown = f"; best {self.p['metric']} {best.value:.4f} (trial {best.number})" if best else ""
        self.ctx.progress(ended, self.result.n_trials, f"{ended}/{self.result.n_trials} trials ended "
                          f"({counts['pruned']} pruned){shown}")
        save_sweep(self.result, self.ctx.run_dir)


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.4g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                     for k, v in values.items())
