"""Mutation testing of kdlab's science core (issue #19): does any test fail when the maths is changed a little?

    python bench/mutants.py                          # every file of the map (bench/mutants.toml)
    python bench/mutants.py kdlab/transfer/metrics.py --jobs 2 --out bench/out/mutants
    python bench/mutants.py --list kdlab/transfer/metrics.py   # print the mutants, run nothing

How it works:

- Mutants come from the AST of each mapped file and are written back as small text edits, so a mutant's
  diff is one changed token or span. Operators (``OPERATORS``): arithmetic swaps (+ -, * /, // -> /,
  ** -> *), a dropped unary minus or ``not``, numbers changed (0 -> 1, 1 -> 2, small tolerances -> 0.5,
  anything else x2), comparison flips (< <=, > >=, == !=, is / is not, in / not in), ``and`` <-> ``or``,
  dropped terms of sums and differences, ``return x`` -> ``return None`` in functions returning a scalar,
  the first two positional arguments of a call swapped, reductions swapped (mean <-> sum, max <-> min,
  argmax <-> argmin), ``.detach()`` dropped, and True <-> False. Nothing is mutated inside docstrings or
  other strings, f-strings, type annotations, decorators, ``raise`` statements (error messages),
  ``assert`` statements, log/warning calls, calls named in ``skip_calls`` (declared parameters), or
  ``if`` blocks named in a file's ``skip_blocks``; a file's ``only`` / ``skip`` pick functions.
- Each worker slot (``--jobs``) is a view of the repository in a temporary folder: its own copy of the
  ``kdlab`` package, links to everything else. Tests run with that folder as working directory and first
  on ``sys.path`` *and* ``PYTHONPATH``, so the subprocesses, workers and notebook kernels that tests start
  import the mutated copy too (``python -c/-m`` puts the working directory first; from the repository root
  they would import the original). A mutant is written into the slot's copy (its bytecode removed before
  and after), then a forked child of this process runs only the tests the map lists for that file,
  ``pytest -x -q``, and the copy is restored. This process imports torch, numpy, pandas, pytest and its
  plugins once (``preload`` in the map; never kdlab itself), so a mutant costs its tests (0.3 s for a
  quick kill) rather than an interpreter start and imports (3 s).
- A mutant is *killed* when the tests fail (exit 1, or 2 for a collection error it caused) or the child
  crashes, *survived* when they pass, *timeout* when the child runs past the file's limit
  (``timeout_factor`` x the clean run, at least ``timeout_min`` s; the child's process group is killed),
  *error* for any other pytest exit (usage error, no tests). Each file's tests first run once unmutated;
  a file whose clean run fails is reported and skipped.
- Results: ``results.json`` (every mutant; kept across runs, a run replaces the files it ran),
  ``summary.md`` (per file: mutants, killed, survived, timeout, score = killed / (killed + survived +
  timeout; survivors explained in ``bench/mutants_equivalent.toml`` are counted as equivalent and left out);
  then every survivor as file:line, operator and the change, and every explained one with its reason),
  ``survivors.diff`` (unified
  diffs of the survivors), and ``logs/`` with the pytest output of timeouts and errors.
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import difflib
import fnmatch
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path(__file__).with_suffix(".toml")
EQUIVALENT = Path(__file__).with_name("mutants_equivalent.toml")
PACKAGE = "kdlab"

OPERATORS = ("binop", "unary", "number", "compare", "boolop", "drop_term", "return_none", "swap_args",
             "reduction", "detach", "bool")
BINOP_SWAP = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
              ast.FloorDiv: ("//", "/"), ast.Pow: ("**", "*")}
AUG_SWAP = {ast.Add: ("+=", "-="), ast.Sub: ("-=", "+="), ast.Mult: ("*=", "/="), ast.Div: ("/=", "*=")}
CMP_SWAP = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
            ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is"),
            ast.In: ("in", "not in"), ast.NotIn: ("not in", "in")}
REDUCTIONS = {"mean": "sum", "sum": "mean", "max": "min", "min": "max", "amax": "amin", "amin": "amax",
              "argmax": "argmin", "argmin": "argmax", "maximum": "minimum", "minimum": "maximum",
              "clamp_min": "clamp_max", "clamp_max": "clamp_min"}
SYMBOLS = ("**=", "//=", "**", "//", "<=", ">=", "==", "!=", "+=", "-=", "*=", "/=", "@=", "%=", "<<", ">>", "+", "-",
           "*", "/", "<", ">", "@", "%")  # longest first
SCALAR_RETURNS = {"float", "int", "bool", "complex"}
LOG_CALLS = ("print", "warn", "warning", "info", "debug", "error", "exception", "critical", "log")
NO_SWAP_CALLS = {"isinstance", "issubclass", "getattr", "hasattr", "setattr", "super", "print", "range", "type"}
SMALL = 1e-2  # |number| below this (tolerances, epsilons) becomes 0.5


# ----------------------------------------------------------------------------------------- config

@dataclass
class FileSpec:
    path: str
    tests: list[str]
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    skip_blocks: list[str] = field(default_factory=list)


@dataclass
class Config:
    files: dict[str, FileSpec]
    preload: list[str]
    pytest_args: list[str]
    operators: list[str]
    skip_calls: list[str]
    skip_keywords: list[str]
    preload_pytest_plugins: bool = True
    timeout_factor: float = 3.0
    timeout_min: float = 20.0


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the `mutants` extra installs tomli
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            sys.exit("reading the map needs tomli on Python 3.10: pip install -e '.[mutants]'")
    return tomllib.loads(path.read_text())


def load_config(path: Path) -> Config:
    raw = read_toml(path)
    s = raw.get("settings", {})
    unknown = set(s.get("operators", OPERATORS)) - set(OPERATORS)
    if unknown:
        sys.exit(f"{path}: unknown operators {sorted(unknown)}; valid: {', '.join(OPERATORS)}")
    files = {}
    for name, spec in raw.get("files", {}).items():
        if not spec.get("tests"):
            sys.exit(f"{path}: files.{name!r} lists no tests")
        files[name] = FileSpec(name, list(spec["tests"]), list(spec.get("only", [])), list(spec.get("skip", [])),
                               list(spec.get("skip_blocks", [])))
    return Config(files, list(s.get("preload", [])), list(s.get("pytest_args", ["-x", "-q"])),
                  list(s.get("operators", OPERATORS)), list(s.get("skip_calls", [])),
                  list(s.get("skip_keywords", [])), bool(s.get("preload_pytest_plugins", True)),
                  float(s.get("timeout_factor", 3.0)),
                  float(s.get("timeout_min", 20.0)))


# ----------------------------------------------------------------------------------------- mutants

@dataclass
class Mutant:
    file: str
    index: int
    line: int
    operator: str
    function: str
    before: str
    after: str
    edits: list[tuple[int, int, str]]  # (start byte, end byte, new text), applied right to left
    status: str = "pending"
    seconds: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.file}#{self.index}"

    def apply(self, source: bytes) -> bytes:
        for start, end, new in sorted(self.edits, reverse=True):
            source = source[:start] + new.encode() + source[end:]
        return source


def _callee(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant)


def _new_number(value: int | float) -> int | float:
    if value == 0:
        return 1 if isinstance(value, int) else 1.0
    if value == 1:
        return 2 if isinstance(value, int) else 2.0
    if isinstance(value, float) and abs(value) < SMALL:
        return 0.5
    return value * 2


class _Generator(ast.NodeVisitor):
    """Walks one module and collects the mutants of the enabled operators outside the skipped zones."""

    def __init__(self, path: str, source: bytes, spec: FileSpec, cfg: Config):
        self.path, self.src, self.spec, self.cfg = path, source, spec, cfg
        self.ops = set(cfg.operators)
        starts, pos = [], 0
        for line in source.splitlines(keepends=True):
            starts.append(pos)
            pos += len(line)
        self.starts = starts + [pos]
        self.stack: list[str] = []  # enclosing class/function names
        self.returns: list[bool] = []  # whether each enclosing function returns a scalar
        self.in_index = 0  # inside a subscript's index or slice
        self.found: list[Mutant] = []

    # -- positions -------------------------------------------------------------------------------
    def at(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.at(node.lineno, node.col_offset), self.at(node.end_lineno, node.end_col_offset)

    def text(self, node: ast.AST) -> str:
        a, b = self.span(node)
        return self.src[a:b].decode()

    def find_token(self, start: int, end: int, tokens: Sequence[str]) -> tuple[int, int, str] | None:
        """The operator token between two operands (src[start:end], after spaces, parentheses, line
        continuations and comments) when it is one of ``tokens``: (start byte, end byte, token)."""
        s, i = self.src, start
        while i < end:
            if s[i:i + 1] == b"#":
                i = s.find(b"\n", i, end)
                i = end if i < 0 else i
            elif s[i:i + 1] in (b" ", b"\t", b"\r", b"\n", b"(", b")", b"\\"):
                i += 1
            else:
                break
        if i >= end:
            return None
        for tok in tokens:
            if tok[0].isalpha():  # is, is not, in, not in, and, or
                m = re.compile(r"\s+".join(map(re.escape, tok.split())).encode() + rb"(?!\w)").match(s, i, end)
                if m:
                    return i, m.end(), tok
            else:  # the longest operator at i must be the token itself ("*" is not the start of "**")
                longest = next((op for op in SYMBOLS if s.startswith(op.encode(), i)), None)
                if longest == tok:
                    return i, i + len(tok), tok
        return None

    # -- recording ---------------------------------------------------------------------------------
    def add(self, node: ast.AST, operator: str, edits: list[tuple[int, int, str]]) -> None:
        if operator not in self.ops or not self.wanted():
            return
        a, b = min(e[0] for e in edits), max(e[1] for e in edits)
        mid = self.src[a:b]
        for start, end, new in sorted(edits, reverse=True):
            mid = mid[:start - a] + new.encode() + mid[end - a:]
        # what the report shows: the changed span with up to 40 bytes of its line(s) on each side
        ls = self.src.rfind(b"\n", 0, a) + 1
        le = self.src.find(b"\n", b)
        le = len(self.src) if le < 0 else le
        lo, hi = max(ls, a - 40), min(le, b + 40)
        left = (b"..." if lo > ls else b"") + self.src[lo:a].lstrip()
        right = self.src[b:hi] + (b"..." if hi < le else b"")
        before = (left + self.src[a:b] + right).decode(errors="replace")
        after = (left + mid + right).decode(errors="replace")
        self.found.append(Mutant(self.path, 0, node.lineno, operator, ".".join(self.stack), before, after, edits))

    def wanted(self) -> bool:
        names = [".".join(self.stack[:i + 1]) for i in range(len(self.stack))] + self.stack
        if self.spec.only and not any(n in self.spec.only for n in names):
            return False
        return not any(n in self.spec.skip for n in names)

    # -- skipped zones -----------------------------------------------------------------------------
    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return  # f-strings: messages

    def visit_Raise(self, node: ast.Raise) -> None:
        return  # the exception and its message

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_arguments(self, node: ast.arguments) -> None:
        for default in [*node.defaults, *[d for d in node.kw_defaults if d is not None]]:
            self.visit(default)  # defaults yes, annotations no

    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.stack.append(node.name)
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                self.visit(base)
        else:
            self.visit(node.args)
            ann = ast.unparse(node.returns) if node.returns is not None else ""
            self.returns.append(ann in SCALAR_RETURNS)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # docstring
        for stmt in body:
            self.visit(stmt)
        if not isinstance(node, ast.ClassDef):
            self.returns.pop()
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope  # decorators are not visited

    def visit_If(self, node: ast.If) -> None:
        test = self.text(node.test)
        if test in self.spec.skip_blocks or test in ("TYPE_CHECKING", "typing.TYPE_CHECKING") \
                or test.replace("'", '"') == '__name__ == "__main__"':
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name, dotted = _callee(node), _dotted(node.func)
        if name in self.cfg.skip_calls or dotted in self.cfg.skip_calls:
            return
        base = dotted.split(".")[0] if "." in dotted else ""
        if name in LOG_CALLS and (name == "print" or base in ("log", "logger", "logging", "warnings", "LOG", "_log")):
            return
        self.generic_visit_call(node, name)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg in self.cfg.skip_keywords:
            return
        self.visit(node.value)

    # -- operators ---------------------------------------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) or \
                isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
            return  # string formatting / concatenation
        swap = BINOP_SWAP.get(type(node.op))
        if swap:
            tok = self.find_token(self.span(node.left)[1], self.span(node.right)[0], [swap[0]])
            if tok:
                self.add(node, "binop", [(tok[0], tok[1], swap[1])])
        if isinstance(node.op, (ast.Add, ast.Sub)):
            start, end = self.span(node)
            lend, rstart = self.span(node.left)[1], self.span(node.right)[0]
            # drop the right term: "a + b" -> "a"; drop the left one of a sum: "a + b" -> "b"
            self.add(node, "drop_term", [(lend, end, "")])
            if isinstance(node.op, ast.Add):
                self.add(node, "drop_term", [(start, rstart, "")])
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        swap = AUG_SWAP.get(type(node.op))
        if swap:
            tok = self.find_token(self.span(node.target)[1], self.span(node.value)[0], [swap[0]])
            if tok:
                self.add(node, "binop", [(tok[0], tok[1], swap[1])])
        self.visit(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.visit(node.value)
        self.in_index += 1
        self.visit(node.slice)
        self.in_index -= 1

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        # x[-1] -> x[1], shape[-2:] -> shape[2:]: mostly the same element of a fixed-rank shape (equivalent)
        literal_index = self.in_index and isinstance(node.operand, ast.Constant)
        if isinstance(node.op, (ast.USub, ast.Not)) and not literal_index:
            start, _ = self.span(node)
            ostart, _ = self.span(node.operand)
            self.add(node, "unary", [(start, ostart, "")])
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool):
            self.add(node, "bool", [(*self.span(node), str(not v))])
        elif isinstance(v, (int, float)):
            self.add(node, "number", [(*self.span(node), repr(_new_number(v)))])

    def visit_Compare(self, node: ast.Compare) -> None:
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            swap = CMP_SWAP.get(type(op))
            if swap:
                tok = self.find_token(self.span(left)[1], self.span(right)[0], [swap[0]])
                if tok:
                    self.add(node, "compare", [(tok[0], tok[1], swap[1])])
            left = right
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        edits = []
        for a, b in zip(node.values, node.values[1:], strict=False):
            tok = self.find_token(self.span(a)[1], self.span(b)[0], [old])
            if tok:
                edits.append((tok[0], tok[1], new))
        if edits:
            self.add(node, "boolop", edits)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and self.returns and self.returns[-1] and \
                not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self.add(node, "return_none", [(*self.span(node.value), "None")])
        self.generic_visit(node)

    def generic_visit_call(self, node: ast.Call, name: str) -> None:
        f = node.func
        if name in REDUCTIONS and isinstance(f, (ast.Name, ast.Attribute)) and \
                (isinstance(f, ast.Attribute) or name in ("max", "min")):
            _, end = self.span(f)
            self.add(node, "reduction", [(end - len(name), end, REDUCTIONS[name])])
        if name == "detach" and isinstance(f, ast.Attribute) and not node.args and not node.keywords:
            self.add(node, "detach", [(self.span(f.value)[1], self.span(node)[1], "")])
        args = node.args
        if len(args) >= 2 and name not in NO_SWAP_CALLS and not any(isinstance(a, ast.Starred) for a in args[:2]) \
                and not _is_literal(args[0]) and not _is_literal(args[1]) and self.text(args[0]) != self.text(args[1]):
            (a0, b0), (a1, b1) = self.span(args[0]), self.span(args[1])
            self.add(node, "swap_args", [(a0, b0, self.text(args[1])), (a1, b1, self.text(args[0]))])
        self.generic_visit(node)


def generate(path: str, spec: FileSpec, cfg: Config, source: bytes | None = None) -> list[Mutant]:
    """Every mutant of ``path`` (or of ``source``) that parses and changes its AST (duplicates dropped), numbered
    by position. Each is checked on its own top-level statement (decorators included), not the whole module."""
    source = (ROOT / path).read_bytes() if source is None else source
    tree = ast.parse(source)
    gen = _Generator(path, source, spec, cfg)
    gen.visit(tree)
    blocks = []  # (start byte, end byte, dump of the original) of each top-level statement
    for stmt in tree.body:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        blocks.append((gen.at(first, 0), gen.at(stmt.end_lineno, stmt.end_col_offset)))
    dumps: dict[int, str] = {}
    seen, out = set(), []
    for m in sorted(gen.found, key=lambda m: (m.edits[0][0], m.operator)):
        lo, hi = min(e[0] for e in m.edits), max(e[1] for e in m.edits)
        k = next(i for i, (a, b) in enumerate(blocks) if a <= lo and hi <= b)
        a, b = blocks[k]
        if k not in dumps:
            dumps[k] = ast.dump(ast.parse(source[a:b]))
        shifted = Mutant(path, 0, m.line, m.operator, m.function, "", "", [(s - a, e - a, t) for s, e, t in m.edits])
        block = shifted.apply(source[a:b])
        if (k, block) in seen:
            continue
        try:
            if ast.dump(ast.parse(block)) == dumps[k]:
                continue
        except SyntaxError:
            continue
        seen.add((k, block))
        m.index = len(out)
        m.before, m.after = _one_line(m.before), _one_line(m.after)
        out.append(m)
    return out


def _one_line(s: str, limit: int = 160) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def unified_diff(m: Mutant) -> str:
    source = (ROOT / m.file).read_bytes()
    a = source.decode().splitlines(keepends=True)
    b = m.apply(source).decode().splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"a/{m.file}", f"b/{m.file}", n=1))


# ----------------------------------------------------------------------------------------- running

class Slot:
    """One worker: a private copy of the package, and at most one forked pytest child at a time."""

    def __init__(self, index: int, base: Path):
        # a view of the repository: its own copy of the package, links to everything else. Children run in it,
        # so `python -c/-m ...` subprocesses (whose sys.path starts with the working directory) import the copy
        self.dir = base / f"slot{index}"
        shutil.copytree(ROOT / PACKAGE, self.dir / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
        for entry in ROOT.iterdir():
            if entry.name not in (PACKAGE, ".git", "__pycache__", ".pytest_cache"):
                (self.dir / entry.name).symlink_to(entry)
        # bytecode of the unmutated copy, once; a mutated file's .pyc is removed before and after each run (a
        # mutant's .pyc could pass for the original's: same size, same mtime second)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(self.dir / PACKAGE)], check=True)
        self.tmp = base / f"tmp{index}"
        self.log = base / f"slot{index}.log"
        self.pid: int | None = None
        self.job: Mutant | str | None = None  # a mutant, or the file whose clean tests run
        self.started = self.deadline = 0.0
        self.restore: tuple[Path, bytes] | None = None

    @staticmethod
    def drop_bytecode(target: Path) -> None:
        for pyc in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
            pyc.unlink(missing_ok=True)

    def start(self, job: Mutant | str, tests: list[str], cfg: Config, timeout: float) -> None:
        self.job = job
        if isinstance(job, Mutant):
            target = self.dir / job.file
            original = target.read_bytes()
            self.restore = (target, original)
            target.write_bytes(job.apply(original))
            self.drop_bytecode(target)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: runs the tests and never returns
            code = 3
            try:
                os.setpgid(0, 0)  # its own group: a timeout kills the tests' subprocesses too
                fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.chdir(self.dir)
                tree = str(self.dir)
                sys.path.insert(0, tree)
                os.environ["PYTHONPATH"] = os.pathsep.join([tree, *filter(None, [os.environ.get("PYTHONPATH")])])
                os.environ["TMPDIR"] = str(self.tmp)
                tempfile.tempdir = str(self.tmp)
                import pytest

                code = int(pytest.main([*cfg.pytest_args, *tests]))
            except BaseException:  # noqa: B036 - anything at all is a failed run
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pid, self.started, self.deadline = pid, time.monotonic(), time.monotonic() + timeout

    def poll(self) -> tuple[str, int | None] | None:
        """None while the child runs; else ("exit", code), ("signal", number) or ("timeout", None)."""
        assert self.pid is not None
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done == 0 and time.monotonic() < self.deadline:
            return None
        self.kill()
        if done == 0:
            os.waitpid(self.pid, 0)
            result: tuple[str, int | None] = ("timeout", None)
        elif os.WIFSIGNALED(status):
            result = ("signal", os.WTERMSIG(status))
        else:
            result = ("exit", os.WEXITSTATUS(status))
        self.pid = None
        self.cleanup()
        return result

    def kill(self) -> None:
        """SIGKILL the child's process group (the child, and what its tests started and left behind)."""
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def cleanup(self) -> None:
        if self.restore is not None:
            target, original = self.restore
            target.write_bytes(original)
            self.drop_bytecode(target)
            self.restore = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def preload(cfg: Config) -> None:
    """Import the heavy modules once, before any fork (never kdlab: children import the slot's copy). Pytest
    plugins imported here are not assertion-rewritten in every child (hypothesis alone: 1.3 s a run)."""
    names = list(cfg.preload)
    if cfg.preload_pytest_plugins:
        from importlib.metadata import entry_points

        names += [e.value.split(":")[0] for e in entry_points(group="pytest11")]
    for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            sys.exit(f"preload: {name} would be imported unmutated by every child; remove it from the map")
        try:
            importlib.import_module(name)
        except ImportError as e:
            print(f"preload: {name} not imported ({e})", flush=True)
    if any(m == PACKAGE or m.startswith(PACKAGE + ".") for m in sys.modules):
        sys.exit(f"preload imported {PACKAGE}: its mutants would not be seen; remove what imports it from preload")


def verdict(result: tuple[str, int | None]) -> str:
    kind, code = result
    if kind == "timeout":
        return "timeout"
    if kind == "signal":
        return "killed"  # the mutant crashed the interpreter
    return {0: "survived", 1: "killed", 2: "killed"}.get(code, "error")  # 2: collection error (import failed)


def run_all(cfg: Config, files: list[str], mutants: dict[str, list[Mutant]], jobs: int, out: Path,
            time_limit: float | None) -> dict[str, dict]:
    """One clean run of each file's tests, then its mutants, ``jobs`` at a time. Returns per-file facts."""
    preload(cfg)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="kdlab-mutants-"))
    facts: dict[str, dict] = {f: {"clean": None, "clean_seconds": None, "timeout": None} for f in files}
    queue: list[Mutant | str] = list(files)
    total, done, t0 = sum(len(mutants[f]) for f in files), 0, time.monotonic()
    slots: list[Slot] = []
    try:
        slots = [Slot(i, base) for i in range(jobs)]
        while queue or any(s.pid is not None for s in slots):
            if time_limit is not None and time.monotonic() - t0 >= time_limit:
                queue.clear()  # what is left is reported as not run
            for slot in slots:
                if slot.pid is not None:
                    res = slot.poll()
                    if res is None:
                        continue
                    seconds, job = time.monotonic() - slot.started, slot.job
                    if isinstance(job, str):  # a clean run
                        ok = res == ("exit", 0)
                        facts[job].update(clean=ok, clean_seconds=round(seconds, 2))
                        if ok:
                            facts[job]["timeout"] = round(max(cfg.timeout_min, cfg.timeout_factor * seconds), 1)
                            queue.extend(mutants[job])
                        else:
                            shutil.copy(slot.log, logs / f"clean-{job.replace('/', '_')}.log")
                            print(f"!! {job}: its tests fail without any mutant ({res}; see {logs}); skipped",
                                  flush=True)
                    else:
                        assert isinstance(job, Mutant)
                        job.status, job.seconds = verdict(res), round(seconds, 2)
                        if job.status in ("timeout", "error"):
                            shutil.copy(slot.log, logs / f"{job.file.replace('/', '_')}-{job.index}.log")
                        done += 1
                        mark = {"killed": ".", "survived": "S", "timeout": "T", "error": "E"}[job.status]
                        print(f"[{done}/{total} {time.monotonic() - t0:5.0f}s] {mark} {job.file}:{job.line} "
                              f"{job.operator}: {_one_line(job.before, 80)} -> {_one_line(job.after, 80)} "
                              f"({job.seconds:.1f}s)", flush=True)
                if slot.pid is None and queue:
                    job = queue.pop(0)
                    if isinstance(job, str):
                        slot.start(job, cfg.files[job].tests, cfg, 900.0)
                    else:
                        slot.start(job, cfg.files[job.file].tests, cfg, facts[job.file]["timeout"])
            time.sleep(0.02)
    finally:
        for slot in slots:
            if slot.pid is not None:
                slot.kill()
                os.waitpid(slot.pid, 0)
                slot.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    for f in files:
        why = "time limit" if facts[f]["clean"] is not False else "its tests fail unmutated"
        for m in mutants[f]:
            if m.status == "pending":
                m.status = f"not run ({why})"
    return facts


# ----------------------------------------------------------------------------------------- report

def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", PACKAGE, "tests"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(out: Path, cfg: Config, files: list[str], mutants: dict[str, list[Mutant]],
                  facts: dict[str, dict], wall: float, jobs: int) -> None:
    path = out / "results.json"
    old = json.loads(path.read_text()) if path.exists() else {"files": {}}
    commit, now = _commit(), dt.datetime.now().isoformat(timespec="seconds")
    for f in files:
        src = (ROOT / f).read_bytes()
        old["files"][f] = {
            "sha256": hashlib.sha256(src).hexdigest(), "commit": commit, "date": now, "tests": cfg.files[f].tests,
            **{k: v for k, v in facts[f].items() if k != "wall_seconds"},
            "mutants": [{k: v for k, v in asdict(m).items() if k != "edits"} | {"diff": unified_diff(m)}
                        for m in mutants[f]],
        }
    old["last_run"] = {"date": now, "commit": commit, "files": files, "jobs": jobs, "wall_seconds": round(wall, 1),
                       "mutants": sum(len(mutants[f]) for f in files), "operators": cfg.operators}
    path.write_text(json.dumps(old, indent=1))
    write_summary(out, old)


def load_equivalent(path: Path = EQUIVALENT) -> dict[tuple[str, str, str, str], str]:
    """The survivors explained as equivalent (``bench/mutants_equivalent.toml``): (file, function, before,
    after) -> why. Keyed by the mutant's text, not its line, so explanations survive edits elsewhere."""
    if not path.is_file():
        return {}
    entries = read_toml(path).get("equivalent", [])
    return {(e["file"], e.get("function", ""), e["before"], e["after"]): e["why"] for e in entries}


def _explained(m: dict, equivalent: dict) -> str | None:
    return equivalent.get((m["file"], m.get("function") or "", m["before"], m["after"]))


def write_summary(out: Path, data: dict, equivalent: dict | None = None) -> None:
    equivalent = load_equivalent() if equivalent is None else equivalent
    rows, survivors, explained, diffs = [], [], [], []
    totals = dict.fromkeys(("mutants", "killed", "survived", "equivalent", "timeout", "error", "not run"), 0)
    for f in sorted(data["files"]):
        fd = data["files"][f]
        ms = fd["mutants"]
        for m in ms:  # a survivor explained as equivalent is counted apart, out of the score
            if m["status"] in ("survived", "equivalent"):
                m["status"] = "equivalent" if _explained(m, equivalent) else "survived"
        c = {k: sum(m["status"] == k for m in ms) for k in ("killed", "survived", "equivalent", "timeout", "error")}
        c["not run"] = sum(m["status"].startswith("not run") for m in ms)
        c["mutants"] = len(ms)
        for k in totals:
            totals[k] += c[k]
        ran = c["killed"] + c["survived"] + c["timeout"]
        score = f"{100 * c['killed'] / ran:.0f}%" if ran else "-"
        secs = sum(m["seconds"] for m in ms)
        per = f"{secs / max(1, ran + c['error']):.1f}"
        clean = "" if fd.get("clean", True) else " (clean run FAILED)"
        rows.append(f"| `{f}`{clean} | {c['mutants']} | {c['killed']} | {c['survived']} | {c['equivalent']} | "
                    f"{c['timeout']} | {c['error']} | {c['not run']} | {score} | {per} | {fd['commit']} |")
        for m in ms:
            fn = f" in `{m['function']}`" if m["function"] else ""
            item = f"- `{f}:{m['line']}` {m['operator']}{fn}: `{m['before']}` → `{m['after']}`"
            if m["status"] == "survived":
                survivors.append(item)
                diffs.append(f"# {f}:{m['line']} {m['operator']} (#{m['index']})\n{m['diff']}")
            elif m["status"] == "equivalent":
                explained.append(f"{item} — {_explained(m, equivalent)}")
    ran = totals["killed"] + totals["survived"] + totals["timeout"]
    score = f"{100 * totals['killed'] / ran:.0f}%" if ran else "-"
    last = data.get("last_run", {})
    lines = [
        "# Mutation testing: kdlab's science core",
        "",
        f"Last run {last.get('date', '?')} at commit {last.get('commit', '?')}: {last.get('mutants', 0)} mutants "
        f"of {len(last.get('files', []))} files in {last.get('wall_seconds', 0) / 60:.1f} min with "
        f"{last.get('jobs', '?')} jobs ({last.get('wall_seconds', 0) / max(1, last.get('mutants', 0)):.2f} s of wall "
        f"time per mutant; operators: {', '.join(last.get('operators', []))}). Score = killed / (killed + "
        "survived + timeout), survivors explained as equivalent (bench/mutants_equivalent.toml) left out; "
        "s/mutant = mean seconds of one mutant's test run (one job).",
        "",
        "| file | mutants | killed | survived | equivalent | timeout | error | not run | score | s/mutant | commit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        f"| **all** | {totals['mutants']} | {totals['killed']} | {totals['survived']} | {totals['equivalent']} | "
        f"{totals['timeout']} | {totals['error']} | {totals['not run']} | {score} | | |",
        "",
        f"## Surviving mutants ({len(survivors)})",
        "",
        "Each passed every mapped test of its file (bench/mutants.toml); diffs in survivors.diff.",
        "",
        *survivors,
        "",
        f"## Survivors explained ({len(explained)})",
        "",
        "Equivalent mutants (no observable behaviour changes) or, where said, changes not worth a test.",
        "",
        *explained,
        "",
    ]
    (out / "summary.md").write_text("\n".join(lines))
    (out / "survivors.diff").write_text("\n".join(diffs))


# ----------------------------------------------------------------------------------------- main

def select(cfg: Config, patterns: Sequence[str]) -> list[str]:
    if not patterns:
        return sorted(cfg.files)
    chosen = []
    for p in patterns:
        rel = os.path.relpath(os.path.abspath(p), ROOT) if os.path.exists(p) else p
        hits = [f for f in sorted(cfg.files) if f == rel or fnmatch.fnmatch(f, rel)]
        if not hits:
            sys.exit(f"{p}: not in the map {DEFAULT_CONFIG.name}; mapped files:\n  " + "\n  ".join(sorted(cfg.files)))
        chosen += [h for h in hits if h not in chosen]
    return chosen


def iter_listing(mutants: dict[str, list[Mutant]]) -> Iterator[str]:
    for f, ms in mutants.items():
        counts: dict[str, int] = {}
        for m in ms:
            counts[m.operator] = counts.get(m.operator, 0) + 1
        yield f"{f}: {len(ms)} mutants ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
        for m in ms:
            yield f"  {m.line:4d} {m.operator:11s} {m.before} -> {m.after}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("files", nargs="*", help="mapped source files (globs allowed); default: all of the map")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the map (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "mutants", help="results folder")
    ap.add_argument("--jobs", type=int, default=2, help="mutants tested at the same time (default: 2)")
    ap.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                    help="start no mutant after MIN minutes (the rest are reported as not run)")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--summarize", action="store_true",
                    help="rewrite summary.md from --out's results.json (after editing mutants_equivalent.toml)")
    args = ap.parse_args(argv)
    if args.summarize:
        write_summary(args.out, json.loads((args.out / "results.json").read_text()))
        print(f"wrote {args.out / 'summary.md'}")
        return 0
    if sys.platform == "win32":
        sys.exit("bench/mutants.py forks a child per mutant: run it on Linux or macOS")
    cfg = load_config(args.config)
    files = select(cfg, args.files)
    mutants = {f: generate(f, cfg.files[f], cfg) for f in files}
    if args.list:
        for line in iter_listing(mutants):
            print(line)
        return 0
    n = sum(len(v) for v in mutants.values())
    print(f"{n} mutants in {len(files)} files, {args.jobs} jobs; results in {args.out}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    facts = run_all(cfg, files, mutants, max(1, args.jobs), args.out,
                    args.time_limit * 60 if args.time_limit else None)
    wall = time.monotonic() - t0
    write_results(args.out, cfg, files, mutants, facts, wall, args.jobs)
    survived = [asdict(m) for ms in mutants.values() for m in ms if m.status == "survived"]
    explained = sum(_explained(m, load_equivalent()) is not None for m in survived)
    print(f"done in {wall / 60:.1f} min: {len(survived)} survivors, {explained} of them explained as equivalent; "
          f"see {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
