"""bench/mutants.py (`make mutants`, issue #19): its operators, what it leaves alone, and a map that points at real
files and tests. The mutation run itself is not part of the test suite."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("kdlab_tools_mutants", ROOT / "bench" / "mutants.py")
mutants = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutants  # dataclasses look their module up
_spec.loader.exec_module(mutants)

SRC = b'''def f(x: int = 1, ys: list[int] | None = None) -> float:
    """Doc: 2 + 3 < 4."""
    if x < 0:
        raise ValueError(f"bad {x + 1}")
    log.warning("x is %d", x - 1)
    y = -x * 2 + 1e-6
    z = g(y, x, strict=True).mean()
    return y if x and not ys else z
'''


def _mutants(src: bytes = SRC, **spec) -> list:
    cfg = mutants.Config({}, [], [], list(mutants.OPERATORS), [], ["strict"])
    return mutants.generate("m.py", mutants.FileSpec("m.py", ["t"], **spec), cfg, source=src)


def test_operators_change_one_thing_each_and_every_mutant_parses():
    ms = _mutants()
    changes = {(m.line, m.operator, m.after.strip()) for m in ms}
    for expected in [
        (1, "number", "def f(x: int = 2, ys: list[int] | None = None) -> float:"),
        (3, "compare", "if x <= 0:"),
        (6, "unary", "y = x * 2 + 1e-6"),
        (6, "binop", "y = -x / 2 + 1e-6"),
        (6, "number", "y = -x * 4 + 1e-6"),
        (6, "number", "y = -x * 2 + 0.5"),
        (6, "drop_term", "y = -x * 2"),
        (7, "swap_args", "z = g(x, y, strict=True).mean()"),
        (7, "reduction", "z = g(y, x, strict=True).sum()"),
        (8, "boolop", "return y if x or not ys else z"),
        (8, "return_none", "return None"),
    ]:
        assert expected in changes, (expected, sorted(changes))
    for m in ms:
        ast.parse(m.apply(SRC))
    assert len({m.apply(SRC) for m in ms}) == len(ms)  # no duplicates


def test_docstrings_messages_logs_annotations_and_skipped_keywords_are_left_alone():
    lines = {m.line for m in _mutants()}
    assert not lines & {2, 4, 5}  # docstring, raise with its f-string, log call
    for m in _mutants():
        assert "list[int]" in m.apply(SRC).decode() and "-> float" in m.apply(SRC).decode()
        assert "strict=True" in m.apply(SRC).decode()


def test_only_skip_and_skip_blocks_pick_the_code():
    src = b"def a(n):\n    return n + 1\n\n\ndef b(n):\n    if world > 1:\n        n = n * 3\n    return n - 1\n"
    assert {m.function for m in _mutants(src, only=["a"])} == {"a"}
    assert {m.function for m in _mutants(src, skip=["a"])} == {"b"}
    assert 7 not in {m.line for m in _mutants(src, skip_blocks=["world > 1"])}
    assert 7 in {m.line for m in _mutants(src)}


def test_the_map_names_real_files_and_tests():
    if sys.version_info < (3, 11):
        pytest.importorskip("tomli")  # the `mutants` extra
    cfg = mutants.load_config(mutants.DEFAULT_CONFIG)
    assert cfg.files
    for path, spec in cfg.files.items():
        assert (ROOT / path).is_file(), path
        for t in spec.tests:
            assert (ROOT / t.split("::")[0]).is_file(), (path, t)
        assert mutants.generate(path, spec, cfg), f"{path}: no mutants"


def test_survivors_explained_as_equivalent_leave_the_score(tmp_path):
    """A survivor listed in the equivalents file counts as equivalent with its reason, out of the score."""
    def mutant(index, status, after):
        return {"file": "m.py", "index": index, "line": 3, "operator": "number", "function": "f", "before": "x = 1",
                "after": after, "status": status, "seconds": 0.1, "diff": ""}

    ms = [mutant(0, "killed", "x = 2"), mutant(1, "survived", "x = 0"), mutant(2, "survived", "x = 3")]
    data = {"files": {"m.py": {"commit": "abc", "mutants": ms}}, "last_run": {}}
    (tmp_path / "eq.toml").write_text('[[equivalent]]\nfile = "m.py"\nfunction = "f"\nbefore = "x = 1"\n'
                                      'after = "x = 0"\nwhy = "x is only compared with 2"\n')
    mutants.write_summary(tmp_path, data, mutants.load_equivalent(tmp_path / "eq.toml"))
    text = (tmp_path / "summary.md").read_text()
    assert "| `m.py` | 3 | 1 | 1 | 1 | 0 | 0 | 0 | 50% |" in text  # 1 killed of killed + survived
    assert "`x = 1` → `x = 0` — x is only compared with 2" in text and "## Surviving mutants (1)" in text
