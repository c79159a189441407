"""A sweep survives killed workers: a SIGKILLed trial is resumed from its checkpoint while the others go on, and
a SIGKILLed sweep process resumes by following the trials it had launched (none launched twice)."""
from __future__ import annotations

import os
import signal

import pytest
from runs_helpers import tiny_spec, wait_for

import kdlab

pytestmark = pytest.mark.slow


def test_killed_trial_and_killed_sweep(store):
    h = kdlab.sweep(tiny_spec(epochs=12, n_train=1500), {"method.params.temperature": {"low": 1.0, "high": 8.0}},
                    trials=4, store=store, pruner="none", parallel=2)
    victim = {}

    def kill_trial_one() -> bool:
        r = h.result()
        t = next((t for t in (r.trials if r else []) if t.number == 1), None)
        if t is None or len(store.history(t.run_id)) < 2:
            return False
        os.killpg(store.get_run(t.run_id).pid, signal.SIGKILL)
        victim["id"] = t.run_id
        return True

    wait_for(kill_trial_one, timeout=120, poll=0.02)
    wait_for(lambda: h.result().trials[1].attempts == 2, timeout=60)  # the sweep saw it and resumed it
    os.killpg(h.record.pid, signal.SIGKILL)  # now the sweep's own process
    wait_for(lambda: h.status == "interrupted", timeout=60)
    launched = {r.id for r in store.records() if f"sweep:{h.id}" in r.tags}
    h.resume()
    assert h.wait(timeout=240) == "completed", h.record.error
    result = h.result()
    runs = [r for r in store.records() if f"sweep:{h.id}" in r.tags]
    assert len(runs) == 4 and launched <= {r.id for r in runs}  # followed again, not launched again
    assert [t.number for t in result.trials] == [0, 1, 2, 3]
    assert all(t.state == "complete" and t.value == max(store.history(t.run_id)["val/acc"]) for t in result.trials)
    killed = next(t for t in result.trials if t.run_id == victim["id"])
    assert killed.attempts == 2 and "interrupted" in killed.note
    rec = store.get_run(victim["id"])
    assert rec.status == "completed" and rec.attempt == 2
    assert list(store.history(victim["id"]).index) == list(range(1, 13))  # continued: no epoch twice, none lost
    assert all(store.get_run(t.run_id).attempt == 1 for t in result.trials if t is not killed)
