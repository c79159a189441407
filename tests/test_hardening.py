"""Issue #18: no run is overwritten, bad input fails before any work with a short clear message, and the CLI
ends Ctrl-C and closed pipes with one line.

One test per item of the issue (item 2, the dashboard's login, is tests/ui/test_auth.py; item 5's data and
training halves are in tests/data and tests/distill; item 10's class-count ShapeError in tests/distill), then a
snapshot test running every bad input through the CLI and checking that nothing in the store or on disk changed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from kdlab.cli import main
from kdlab.runs.store import open_store

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "runs"))
from runs_helpers import tiny_spec  # noqa: E402

#: a teacher-free spec that trains in about a second
QUICK = tiny_spec(epochs=1, n_train=200, teacher=None, method={"name": "vanilla"})
#: the 'billion laughs' of YAML: 12 anchors, each list repeating the one before 9 times (9**12 values expanded)
BOMB = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefghijk", "bcdefghijkl",
                                                                                strict=True)])


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh KDLAB_HOME: foreground run folders go to ``home/runs``."""
    monkeypatch.setenv("KDLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KDLAB_MAX_CONCURRENT", raising=False)
    return tmp_path / "home"


def write(path: Path, spec: dict | str | bytes) -> str:
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    else:
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return str(path)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_folders(home: Path) -> list[Path]:
    return sorted((home / "runs").glob("*")) if (home / "runs").is_dir() else []


# ---------------------------------------------------------------------------------- 1. no run overwritten

def test_1_train_refuses_a_folder_that_holds_a_run(home, tmp_path, capsys):
    spec = write(tmp_path / "s.yaml", QUICK)
    folder = tmp_path / "mine"
    assert cli(capsys, "train", spec, "--run-dir", str(folder))[0] == 0
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert folder / "checkpoints" / "best.pt" in before and folder / "results.json" in before
    code, _, err = cli(capsys, "train", spec, "--run-dir", str(folder))
    assert code == 2 and "already holds a run" in err and "--resume" in err and "--replace" in err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    # asked explicitly, it is replaced: new results, no old files left behind
    assert cli(capsys, "train", spec, "--run-dir", str(folder), "--replace")[0] == 0
    assert json.loads((folder / "results.json").read_text()) != json.loads(before[folder / "results.json"])


def test_1_a_store_run_folder_is_never_taken_by_a_foreground_run(home, tmp_path, capsys):
    store = open_store(tmp_path / "store")
    rid = store.create_run(QUICK, status="completed")
    store.update_run(rid, summary={"test/acc": 0.5})
    spec = write(tmp_path / "s.yaml", QUICK)
    for extra in ([], ["--replace"], ["--resume"]):
        code, _, err = cli(capsys, "train", spec, "--run-dir", str(store.run_dir(rid)), *extra)
        assert code == 2 and f"kdlab resume {rid}" in err, err
    assert list(store.run_dir(rid).iterdir()) == []
    assert store.get_run(rid).summary == {"test/acc": 0.5}


# ---------------------------------------------------------------------------------- 3./4. spec files

@pytest.mark.parametrize("content, expected", [
    ("", "is empty"), ("# only a comment\n", "is empty"), ("{}", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "is not a text file"),
    ("[1, 2]", "must be a mapping"), ("a: [1, 2\n", "not valid YAML"),
])
@pytest.mark.parametrize("command", ["train", "launch"])
def test_3_4_empty_binary_and_broken_spec_files_fail_with_a_message(home, tmp_path, capsys, command, content,
                                                                     expected):
    spec = write(tmp_path / "s.yaml", content)
    code, out, err = cli(capsys, command, spec, "--store", str(tmp_path / "store")) if command == "launch" \
        else cli(capsys, command, spec)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert run_folders(home) == [] and not (tmp_path / "store").exists()


def test_4_a_folder_as_spec_is_named_a_folder(home, tmp_path, capsys):
    code, _, err = cli(capsys, "train", str(tmp_path))
    assert code == 2 and "is a folder" in err and "does not exist" not in err


# ---------------------------------------------------------------------------------- 5. NaN in a spec

@pytest.mark.parametrize("field, value", [("method.params.temperature", ".nan"), ("method.params.temperature", ".inf"),
                                          ("optim.lr", ".nan"), ("teacher.optim.lr", ".nan")])
def test_5_nan_and_inf_are_refused_naming_the_field(home, tmp_path, capsys, field, value):
    spec = yaml.safe_dump({**QUICK, "teacher": {"name": "mlp"}, "method": {"name": "kd"}})
    doc = yaml.safe_load(spec)
    *parents, key = field.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[key] = "@@"
    text = yaml.safe_dump(doc).replace("'@@'", value)
    code, _, err = cli(capsys, "train", write(tmp_path / "s.yaml", text))
    assert code == 2 and f"{field}: " in err and "finite" in err, err
    assert run_folders(home) == []


# ---------------------------------------------------------------------------------- 6. bounded messages

@pytest.mark.parametrize("where", ["method.params.temperature", "student.params.width", "student.params.depth",
                                   "data.params.n_train", "name", "seed", "tags"])
def test_6_an_alias_bomb_gives_a_short_message_quickly(home, tmp_path, capsys, where):
    *parents, key = where.split(".")
    lines = [BOMB] + [f"{'  ' * i}{p}:" for i, p in enumerate(parents)] + [f"{'  ' * len(parents)}{key}: *l"]
    if parents and parents[0] == "student":
        lines.insert(len([BOMB]) + 1, "  name: torchvision:resnet18")
    t0 = time.perf_counter()
    code, _, err = cli(capsys, "train", write(tmp_path / "s.yaml", "\n".join(lines)))
    assert code == 2 and len(err) < 2000 and time.perf_counter() - t0 < 5, (len(err), err[:300])


def test_6_passthrough_params_are_validated(home, tmp_path, capsys):
    for params, expected in [({"drop_rate": [[1, 2]]}, "not a plain setting"), ({"x" * 10: "y" * 300}, "200"),
                             ({"num classes": 3}, "identifier"), ({"drop_rate": float("nan")}, "finite")]:
        spec = {**QUICK, "student": {"name": "timm:resnet18", "params": params}}
        code, _, err = cli(capsys, "train", write(tmp_path / "s.yaml", spec))
        assert code == 2 and "student.params." in err and expected in err, err


def test_6_messages_of_huge_values_are_shortened(tmp_path):
    from kdlab.errors import ConfigError
    from kdlab.runs.spec import load_spec

    for spec in ({"name": "x" * 5000, "seed": "y" * 100_000}, {"method": {"name": "kd" * 50_000}},
                 {"data": {"name": "mnist5k", "params": {"n_train": "z" * 100_000}}}, {"q" * 100_000: 1}):
        with pytest.raises(ConfigError) as e:
            load_spec(spec)
        assert len(str(e.value)) <= 2000


# ---------------------------------------------------------------------------------- 7. launch errors queue nothing

def test_7_a_bad_max_concurrent_queues_nothing(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "abc")
    code, _, err = cli(capsys, "launch", write(tmp_path / "s.yaml", QUICK), "--store", str(tmp_path / "store"))
    assert code == 2 and "KDLAB_MAX_CONCURRENT" in err
    monkeypatch.delenv("KDLAB_MAX_CONCURRENT")
    store = open_store(tmp_path / "store")
    assert len(store.list_runs()) == 0 and list(store.runs_dir.iterdir()) == []


# ---------------------------------------------------------------------------------- 8. report -o

def test_8_report_output_must_be_a_file_in_an_existing_folder(tmp_path, capsys):
    from kdlab.runs.experiment import run_experiment

    run_experiment(QUICK, run_dir=tmp_path / "run")
    (tmp_path / "out").mkdir()
    code, _, err = cli(capsys, "report", str(tmp_path / "run"), "-o", str(tmp_path / "out"))
    assert code == 2 and "is a folder" in err and list((tmp_path / "out").iterdir()) == []
    assert list(tmp_path.glob("*.tmp")) == []
    code, _, err = cli(capsys, "report", str(tmp_path / "run"), "-o", str(tmp_path / "missing" / "r.html"))
    assert code == 2 and "does not exist" in err and not (tmp_path / "missing").exists()
    assert cli(capsys, "report", str(tmp_path / "run"), "-o", str(tmp_path / "out" / "r.html"))[0] == 0


# ---------------------------------------------------------------------------------- 9. Ctrl-C, closed pipes

def _kdlab(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "kdlab.cli", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_9_ctrl_c_on_train_ends_with_one_line_and_keeps_the_checkpoint(home, tmp_path):
    from kdlab.runs.background import check_checkpoint

    # 5,000 epochs of ~5 ms: a busy machine may wake this test well after the first checkpoint, and 200 epochs
    # could then end before the Ctrl-C (exit 0); interrupted, the run ends at once
    spec = write(tmp_path / "s.yaml", {**QUICK, "optim": {"epochs": 5000, "batch_size": 64}})
    folder = tmp_path / "run"
    p = _kdlab("train", spec, "--run-dir", str(folder))
    last = folder / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 90
    while not last.is_file() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().count("\n") == 0 and err.startswith("kdlab: interrupted") and "--resume" in err, err
    assert int(check_checkpoint(last)["epoch"]) >= 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt, printed
def test_9_ctrl_c_that_python_drops_still_ends_training(tmp_path):
    """SIGINT arriving while a destructor runs: Python prints "Exception ignored" and trains on; with CtrlC (what
    ``kdlab train`` installs) the run ends at the next epoch."""
    from kdlab.distill.trainer import Callback
    from kdlab.runs.experiment import run_experiment
    from kdlab.runs.interrupt import CtrlC

    class Bomb:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here; its KeyboardInterrupt is dropped

    class AtEpoch(Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, trainer, metrics):
            self.epochs += 1
            if self.epochs == 1:
                Bomb()

    spec = {**QUICK, "optim": {"epochs": 4, "batch_size": 64}}
    plain = AtEpoch()
    run_experiment(spec, run_dir=tmp_path / "plain", callbacks=[plain])  # the default handler: interrupt lost
    assert plain.epochs == 4
    guarded = AtEpoch()
    with CtrlC() as ctrl_c, pytest.raises(KeyboardInterrupt):
        run_experiment(spec, run_dir=tmp_path / "guarded", callbacks=[guarded, ctrl_c])
    assert ctrl_c.hit and guarded.epochs == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_9_a_closed_pipe_ends_with_one_line(tmp_path):
    store = open_store(tmp_path / "store")
    for _ in range(3):
        store.create_run(QUICK, status="completed")
    p = _kdlab("runs", "--store", str(tmp_path / "store"))
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode == 141 and err.strip().splitlines() == ["kdlab: output closed early (broken pipe)"], err


# ---------------------------------------------------------------------------------- 10. fail early

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_10_cuda_without_a_gpu_fails_before_a_folder_or_row(home, tmp_path, capsys):
    spec = write(tmp_path / "s.yaml", {**QUICK, "device": "cuda"})
    for argv in (["train", spec], ["launch", spec, "--store", str(tmp_path / "store")]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and "device: 'cuda'" in err and "no GPU" in err, err
    assert run_folders(home) == [] and len(open_store(tmp_path / "store").list_runs()) == 0


def test_10_a_missing_checkpoint_fails_before_a_folder_or_row(home, tmp_path, capsys):
    spec = write(tmp_path / "s.yaml", {**QUICK, "teacher": {"name": "mlp", "checkpoint": "nowhere/last.pt"},
                                       "method": {"name": "kd"}})
    for argv in (["train", spec], ["launch", spec, "--store", str(tmp_path / "store")]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and "teacher.checkpoint: nowhere/last.pt does not exist" in err, err
    assert run_folders(home) == [] and len(open_store(tmp_path / "store").list_runs()) == 0


def test_10_n_train_beyond_the_data_names_its_full_path(home, tmp_path, capsys):
    spec = write(tmp_path / "s.yaml", {**QUICK, "data": {"name": "digits", "params": {"n_train": 5000}}})
    code, _, err = cli(capsys, "train", spec)
    assert code == 2 and "data.params.n_train: 5000 is more than the 1257 training samples" in err, err
    assert run_folders(home) == []


def test_10_a_failed_train_leaves_no_empty_run_folder(home, tmp_path, capsys, monkeypatch):
    import kdlab.runs.experiment as experiment

    def broken(*a, **k):
        raise experiment.CheckpointError("the data went away")

    monkeypatch.setattr(experiment, "load_splits", broken)  # a failure after validation, before any file
    code, _, err = cli(capsys, "train", write(tmp_path / "s.yaml", QUICK))
    assert code == 2 and "the data went away" in err and run_folders(home) == []


def test_10_unknown_fields_list_the_valid_names(tmp_path, capsys):
    code, _, err = cli(capsys, "train", write(tmp_path / "s.yaml", {**QUICK, "optim": {"epoch": 3}}))
    assert code == 2 and "optim.epoch: unknown field (did you mean 'epochs'?); valid: name, lr, momentum" in err, err


@pytest.mark.parametrize("field, value", [("seed", "3"), ("optim.epochs", "3"), ("optim.lr", "0.1"),
                                          ("resources.cpus", "2"), ("amp", "true"), ("method.params.temperature", "4")])
def test_10_strings_are_not_numbers(field, value):
    from kdlab.errors import ConfigError
    from kdlab.runs.spec import load_spec

    *parents, key = field.split(".")
    spec = {"method": {"name": "kd"}}
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    node[key] = value
    with pytest.raises(ConfigError) as e:
        load_spec(spec)
    assert f"{field}: " in str(e.value) and repr(value) in str(e.value)


# ---------------------------------------------------------------------------------- nothing changes

def _snapshot(root: Path) -> dict:
    """Every file under ``root`` (size and mtime) and every row of its run store."""
    files = {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
             for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("store.sqlite")}
    store = open_store(root / "store")
    return {"files": files, "runs": store.list_runs().to_dict("records"),
            "events": [store.logs(r.id).to_dict("records") for r in store.records()]}


def test_bad_inputs_through_the_cli_change_nothing(home, tmp_path, capsys, monkeypatch):
    """Every bad input above, through `train`, `launch` and `report`: exit 2, and the store, its run folders
    and the foreground run folders are exactly as before."""
    store = open_store(home / "store")
    done = store.create_run(QUICK, status="completed")
    from kdlab.runs.experiment import run_experiment

    run_experiment(QUICK, run_dir=store.run_dir(done))
    mine = home / "mine"
    assert main(["train", write(tmp_path / "ok.yaml", QUICK), "--run-dir", str(mine)]) == 0
    (home / "a-folder").mkdir()
    bad = {"empty": "", "binary": b"\xff\xfe\x00\x01", "bomb": BOMB + "\nname: *l\n", "nan": "method: {name: kd, "
           "params: {temperature: .nan}}", "cuda": {**QUICK, "device": "cuda:7"}, "ckpt": {**QUICK, "student": {
           "name": "mlp", "checkpoint": "gone.pt"}}, "n_train": {**QUICK, "data": {"params": {"n_train": 10 ** 6}}},
           "unknown": {**QUICK, "studnt": {}}, "string": {**QUICK, "seed": "3"}}
    specs = [write(tmp_path / f"{k}.yaml", v) for k, v in bad.items()] + [str(home / "a-folder")]
    before = _snapshot(home)
    s = ["--store", str(home / "store")]
    commands = [[c, spec, *s] if c == "launch" else [c, spec] for spec in specs for c in ("train", "launch")]
    commands += [["train", str(tmp_path / "ok.yaml"), "--run-dir", str(mine)],
                 ["train", str(tmp_path / "ok.yaml"), "--run-dir", str(store.run_dir(done)), "--replace"],
                 ["report", str(mine), "-o", str(home / "a-folder")],
                 ["report", str(mine), "-o", str(home / "no" / "r.html")]]
    for argv in commands:
        assert main(argv) == 2, argv
    monkeypatch.setenv("KDLAB_MAX_CONCURRENT", "abc")
    assert main(["launch", str(tmp_path / "ok.yaml"), *s]) == 2
    capsys.readouterr()
    assert _snapshot(home) == before


def test_1_a_run_dir_that_cannot_be_created_is_a_message(home, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    spec = write(tmp_path / "s.yaml", QUICK)
    code, _, err = cli(capsys, "train", spec, "--run-dir", str(tmp_path / "a-file" / "run"))
    assert code == 2 and "cannot create the run folder" in err and "Traceback" not in err, err
