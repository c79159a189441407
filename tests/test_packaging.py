"""Packaging: environment.yml and pyproject list the same runtime packages; the CLI answers."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject_runtime_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = {_name(r) for r in project["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_side = {CONDA_NAMES.get(_name(d), _name(d)) for d in env["dependencies"] if isinstance(d, str)}
    conda_side -= {"python", "pip"}
    assert pip_side == conda_side


def _kdlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdlab.cli", *args], capture_output=True, text=True,
                          timeout=120)


def _kdlab_each(*commands: str) -> dict[str, subprocess.CompletedProcess]:
    """``kdlab <command>`` for each command, all started at once (each spends ~2 s importing torch)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(commands)) as pool:
        return dict(zip(commands, pool.map(_kdlab, commands), strict=True))


def test_cli_help_and_listings():
    out = _kdlab_each("--help", "methods", "models", "datasets")
    assert out["--help"].returncode == 0
    for cmd in ("demo", "train", "models", "datasets", "methods"):
        assert cmd in out["--help"].stdout
    methods = out["methods"]
    assert methods.returncode == 0 and "dkd" in methods.stdout and "taid" in methods.stdout
    models = out["models"]
    assert "resnet32x4" in models.stdout and "vit_tiny" in models.stdout
    data = out["datasets"]
    assert "mnist5k" in data.stdout and "digits" in data.stdout


def test_cli_bad_spec_is_a_clear_error_not_a_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("method:\n  name: kd\n  params:\n    temperature: -3\n")
    out = _kdlab("train", str(spec))
    assert out.returncode == 2
    assert "method.params.temperature" in out.stderr.replace(": params", ".params") or \
        "params.temperature" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_train_runs_a_spec_file_and_writes_results(tmp_path):
    spec = {
        "name": "cli-tiny", "data": {"name": "mnist5k", "params": {"n_train": 400}},
        "teacher": {"name": "mlp", "params": {"width": 32}, "optim": {"epochs": 1, "batch_size": 64}},
        "student": {"name": "mlp", "params": {"width": 16}},
        "method": {"name": "kd"}, "optim": {"epochs": 1, "batch_size": 64},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = _kdlab("train", str(path), "--run-dir", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    assert "student test acc" in out.stdout
    results = yaml.safe_load((tmp_path / "run" / "results.json").read_text())
    assert results["spec"]["name"] == "cli-tiny"
    assert 0.1 < results["student"]["test/acc"] <= 1.0
