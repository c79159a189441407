"""The Ray Tune engine (``executor: ray``): the same space searched by Tune's Optuna searcher, trials stopped by
ASHA (``pruner: halving``), the median stopping rule (``median``) or never (``none``).

Each Tune trial is still a ``train`` run in the store: the trainable records it (through the store actor of
``kdlab.runs.ray_executor``, so Tune's workers never open the SQLite file), trains it with the worker body every
Ray run uses, and reports its epoch rows to Tune. When Tune stops a trial, the trainable asks its run to cancel
(it ends ``cancelled``, tagged ``pruned``). A callback in the sweep's process keeps ``sweep.json`` up to date. A
resumed Ray sweep keeps its ended trials and runs the rest, with the searcher told their results.
"""
from __future__ import annotations

import functools
import threading
import time
from typing import Any

from kdlab.runs.job import JobContext
from kdlab.sweeps.optuna_engine import sampler_of
from kdlab.sweeps.result import SweepResult, Trial, save_sweep
from kdlab.sweeps.space import Space, apply_values
from kdlab.sweeps.trials import PRUNED_TAG, Importances, curve_of, objective, trial_name, trial_tags

POLL_S = 0.3
STOP_WAIT_S = 6.0  # how long a stopped trial's worker gets to record its cancel (it checks every heartbeat, 2 s)
SCORE = "score"  # the metric name reported to Tune


def trial_run_id(sweep_id: str, trial_id: str) -> str:
    """The store id of a Tune trial's run (Tune's trial id is unique within the sweep)."""
    return f"{sweep_id}-{trial_id}"[:64]


def _trainable(config: dict[str, Any], *, setup: dict[str, Any]) -> None:
    """One Tune trial: record a train run, train it in a thread, report its epochs; cancel it when Tune stops."""
    from ray import tune

    from kdlab.runs.ray_executor import StoreProxy, run_task

    space: Space = setup["space"]
    values = space.values_of(config)
    trial_id = tune.get_context().get_trial_id()
    sink, root = setup["sink"], setup["root"]
    proxy = StoreProxy(sink, root)
    run_id = trial_run_id(setup["sweep_id"], trial_id)
    proxy.create_run(apply_values(setup["base"], values), f"{setup['name']} {trial_id}", executor="ray",
                     tags=trial_tags(setup["sweep_id"], None), options={"log_every": 10},
                     status="running", run_id=run_id)
    proxy.update_run(run_id, started=time.time(), attempt=1)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(status=run_task(run_id, sink, root, setup["node"])),
                              daemon=True, name=f"kdlab-trial-{trial_id}")
    worker.start()
    seen: set[int] = set()
    try:
        while True:
            alive = worker.is_alive()
            for epoch, value in curve_of(proxy, run_id, setup["metric"]):
                if epoch not in seen:
                    seen.add(epoch)
                    tune.report({SCORE: value, "epoch": epoch})
            if not alive:
                break
            time.sleep(POLL_S)
    except BaseException:  # Tune stopped the trial (SystemExit in report); the sweep's callback records it
        if worker.is_alive():
            proxy.update_run(run_id, cancel_requested=True)
        raise
    if outcome.get("status") != "completed":
        run = proxy.get_run(run_id)
        raise RuntimeError(f"trial run {run_id} {run.status}: {run.error}")


def _define(space: Space, trial: Any) -> None:
    """Tune's define-by-run space: the same draws as the Optuna engine's."""
    space.suggest(trial)


class RaySweep:
    """A sweep run's Ray Tune driver (``Tuner.fit`` in the sweep's own process)."""

    def __init__(self, ctx: JobContext, space: Space, result: SweepResult, p: dict[str, Any]):
        self.ctx, self.space, self.result, self.p = ctx, space, result, p
        self.lock = threading.Lock()
        self.importances = Importances(result, space, p["seed"])

    def scheduler(self) -> Any:
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

        epochs = int(self.result.base_spec.get("optim", {}).get("epochs", 10))
        grace = self.p["grace_epochs"]
        if self.p["pruner"] == "halving":
            return ASHAScheduler(time_attr="epoch", max_t=max(epochs, grace), grace_period=grace, reduction_factor=3)
        if self.p["pruner"] == "median":
            return MedianStoppingRule(time_attr="epoch", grace_period=grace, min_samples_required=5)
        return FIFOScheduler()

    def searcher(self, done: list[Trial]) -> Any:
        """Tune's Optuna searcher over the same space, told the results of the trials already ended; a grid
        search evaluates the grid's remaining configurations in order."""
        from ray.tune.search.optuna import OptunaSearch

        points = [self.space.engine_params(t.params) for t in done]
        common = {"space": functools.partial(_define, self.space), "metric": SCORE, "mode": self._mode()}
        if self.p["sampler"] == "grid":
            grid = [self.space.engine_params(v) for v in self.space.grid()]
            todo = [g for g in grid if g not in points]
            return OptunaSearch(**common, points_to_evaluate=todo, sampler=sampler_of("random", self.p["seed"]))
        return OptunaSearch(**common, sampler=sampler_of(self.p["sampler"], self.p["seed"]),
                            points_to_evaluate=points or None, evaluated_rewards=[t.value for t in done] or None)

    def _mode(self) -> str:
        return "max" if self.p["direction"] == "maximize" else "min"

    def run(self) -> None:
        import ray
        from ray import tune

        from kdlab.runs.executors import get_executor
        from kdlab.runs.ray_executor import connect

        connect()
        done = [t for t in self.result.trials if t.state in ("complete", "pruned", "failed", "interrupted")]
        self.result.trials = done  # a resumed sweep keeps what ended; unfinished trials run again as new ones
        self.offset = max((t.number for t in done), default=-1) + 1
        todo = self.result.n_trials - len(done)
        if todo <= 0:
            return
        root = str(self.ctx.store.root)
        setup = {"space": self.space, "base": self.result.base_spec, "sweep_id": self.result.sweep_id,
                 "name": self.result.name, "metric": self.p["metric"], "root": root,
                 "sink": get_executor("ray").sink(root), "node": ray.get_runtime_context().get_node_id(),
                 "offset": self.offset}
        cpus = float(self.result.base_spec.get("resources", {}).get("cpus", 1.0))
        trainable = tune.with_resources(tune.with_parameters(_trainable, setup=setup), {"cpu": cpus})
        parallel = self.p["parallel"] or max(1, self.ctx.store.max_concurrent)
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
            search_alg=self.searcher(done), scheduler=self.scheduler(), num_samples=todo, metric=SCORE,
            mode=self._mode(), max_concurrent_trials=parallel),
            run_config=tune.RunConfig(storage_path=str(self.ctx.run_dir / "ray_tune"), name="tune", verbose=0,
                                      callbacks=[_Follow(self)]))
        tuner.fit()
        self.importances.final()
        self.save()

    def save(self) -> None:
        with self.lock:
            counts = self.result.counts()
            ended = sum(counts[s] for s in ("complete", "pruned", "failed", "interrupted"))
            self.ctx.progress(ended, self.result.n_trials, f"{ended}/{self.result.n_trials} trials ended "
                              f"({counts['pruned']} pruned)")
            save_sweep(self.result, self.ctx.run_dir)


def _follow_base() -> type:
    from ray.tune import Callback

    return Callback


class _Follow(_follow_base()):  # type: ignore[misc]
    """Tune callback in the sweep's process: mirrors Tune's trials into ``sweep.json``."""

    def __init__(self, sweep: RaySweep):
        self.sweep = sweep
        self.trials: dict[str, Trial] = {}

    def __getstate__(self) -> dict[str, Any]:  # Tune saves its experiment state; this callback is not part of it
        return {}

    def _trial(self, trial: Any) -> Trial:
        if trial.trial_id not in self.trials:  # numbered in the order Tune starts them
            number = self.sweep.offset + len(self.trials)
            t = Trial(number, self.sweep.space.values_of(trial.config), "running",
                      run_id=trial_run_id(self.sweep.result.sweep_id, trial.trial_id), started=time.time())
            self.trials[trial.trial_id] = t
            self.sweep.result.trials.append(t)
        return self.trials[trial.trial_id]

    def _name(self, t: Trial) -> None:
        """Give the trial's run its sweep name and number (the trainable does not know the number)."""
        store = self.sweep.ctx.store
        store.rename_run(t.run_id, trial_name(self.sweep.result.name, t.number))
        store.tag_run(t.run_id, f"trial:{t.number}")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial(trial)
        self.sweep.save()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        t = self._trial(trial)
        if not t.curve:
            self._name(t)
        t.curve.append([int(result["epoch"]), float(result[SCORE])])
        t.value = objective(t.curve, self.sweep.p["direction"])
        self.sweep.save()

    def _end(self, trial: Any, state: str) -> None:
        t = self._trial(trial)
        store = self.sweep.ctx.store
        try:
            run = store.get_run(t.run_id)
        except KeyError:  # the trial failed before its trainable recorded the run
            run = None
        if run is not None:
            self._name(t)
            if state == "complete" and run.status == "running":  # Tune stopped it early
                run = self._stop(t)
                state = "pruned" if run.status == "cancelled" else state  # or it finished meanwhile
            t.curve = curve_of(store, t.run_id, self.sweep.p["metric"]) or t.curve
            t.value = objective(t.curve, self.sweep.p["direction"])
            if state == "pruned":
                t.note = f"stopped by Ray Tune's {self.sweep.p['pruner']} scheduler after epoch {len(t.curve)}"
            elif run.status == "completed":
                state = "complete"
            elif state != "complete":
                t.note = f"{run.status}: {run.error or ''}"
        t.state, t.finished = state, time.time()
        if state == "complete":
            self.sweep.importances.update()
        self.sweep.save()

    def _stop(self, t: Trial) -> Any:
        """Stop a trial Tune stopped: its worker sees the cancel at its next heartbeat and records it; a worker
        whose actor is already gone is recorded here."""
        store = self.sweep.ctx.store
        store.update_run(t.run_id, cancel_requested=True)
        deadline = time.monotonic() + STOP_WAIT_S
        while (run := store.get_run(t.run_id)).status == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        if run.status == "running":
            store.set_status(t.run_id, "cancelled", expect=("running",),
                             error="stopped early by Ray Tune; its worker was gone before it recorded the stop")
            run = store.get_run(t.run_id)
        if run.status == "cancelled":
            store.tag_run(t.run_id, PRUNED_TAG)
            store.log(t.run_id, f"stopped early by Ray Tune's {self.sweep.p['pruner']} scheduler")
        return run

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "complete")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "failed")
