"""A small content-addressed step runner: each step runs only when its inputs changed since it last succeeded.

A step's **input hash** is the SHA-256 of its JSON inputs (settings it reads and digests of what its upstream steps
produced), its code and the versions of the packages that decide results. Its code is found, not listed: the source
of its action, of the helpers of its own module that the action calls, and of every finmlops module in the import
closure of what they import (:func:`code_closure`), so editing any module a step runs reruns it, and nothing else does.
After a step succeeds, ``<home>/run_state.json`` records that hash, the SHA-256 of each output file and the data
downstream steps read. A later run skips the step when the hash is the same and every output file still has the
recorded content (and the step's own ``still_valid`` check passes); ``force`` reruns everything, ``rerun`` the named
steps (their dependants then rerun only if the rerun changed what they read). A failed step's
record is removed, so it reruns next time; the records of the steps before it stay valid.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import sys
import textwrap
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from finmlops.provenance import file_sha256, json_safe, software_versions, write_json_atomic

STATE_FILE = "run_state.json"
STATE_VERSION = 2  # 2: code identity from the import closure
Status = Literal["ran", "skipped", "failed", "would run", "would skip", "not run"]


class StepFailed(RuntimeError):
    """A step raised; ``step`` names it and the message carries the cause."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"step {step!r} failed: {type(cause).__name__}: {cause}")
        self.step = step


@dataclass
class Outcome:
    """What a step produced: a one-line key ``figure``, its output ``files`` (hashed) and JSON ``data`` that
    downstream steps read through :meth:`Context.output`."""

    figure: str
    files: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One pipeline step. ``inputs(ctx)`` returns its JSON-able inputs (called once its ``after`` steps are done);
    ``action(ctx)`` does the work, and its import closure is the step's code identity (:func:`code_closure`);
    ``still_valid(ctx, data)`` may veto a skip when outputs live outside files (e.g. a registry)."""

    name: str
    title: str
    after: tuple[str, ...]
    inputs: Callable[[Context], dict[str, Any]]
    action: Callable[[Context], Outcome]
    still_valid: Callable[[Context, dict[str, Any]], bool] | None = None


@dataclass
class StepReport:
    """One row of the run summary; ``seconds`` is wall-clock time of this run (0 for a skip)."""

    step: str
    title: str
    status: Status
    seconds: float = 0.0
    figure: str = ""
    detail: str = ""
    input_hash: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("step", "title", "status", "seconds", "figure", "detail", "input_hash")}


class Context:
    """Shared by the steps of one run: settings, the plan, upstream outputs and in-memory caches."""

    def __init__(self, settings: Any, plan: Any, log: Callable[[str], None] = lambda _: None):
        self.settings = settings
        self.plan = plan
        self.log = log
        self.outputs: dict[str, dict[str, Any]] = {}
        self.cache: dict[str, Any] = {}

    def output(self, step: str) -> dict[str, Any]:
        """The ``data`` of an upstream step (from this run, or from its record when it was skipped)."""
        if step not in self.outputs:
            raise KeyError(f"step {step!r} has not run or been skipped yet in this run")
        return self.outputs[step]


def _module_file(module: str) -> Path | None:
    """The source file of a finmlops module or package, found on disk without importing it (None: not a module,
    e.g. ``finmlops.tracking.log_training_run``, a name inside a package)."""
    spec = importlib.util.find_spec("finmlops")
    assert spec is not None and spec.submodule_search_locations  # this very package
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*module.split(".")[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The finmlops modules an AST imports anywhere (top level or inside functions), with their parent packages,
    whose ``__init__`` runs on import; ``from pkg import name`` counts ``pkg.name`` when that is a module."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")]
        for name in names:
            parts = name.split(".")
            if parts[0] == "finmlops":
                found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if _module_file(".".join(parts[:i]))}
    return found


@cache
def _module_imports(module: str) -> frozenset[str]:
    path = _module_file(module)
    if path is None:
        raise ModuleNotFoundError(f"no module named {module!r}")
    return frozenset(_imported_modules(ast.parse(path.read_text()), module, path.name == "__init__.py"))


@cache
def _top_level_imports(module: str) -> dict[str, frozenset[str]]:
    """Each name that ``module``'s top-level imports bind, with the finmlops modules its import loads (one alias
    at a time: ``from finmlops.x import a, b`` gives ``a`` and ``b`` each their own); none for a module outside
    finmlops (a step defined in a test)."""
    path = _module_file(module) if module.split(".")[0] == "finmlops" else None
    if path is None:
        return {}
    is_package = path.name == "__init__.py"
    bound: dict[str, frozenset[str]] = {}
    for node in ast.parse(path.read_text()).body:
        for alias in getattr(node, "names", []) if isinstance(node, (ast.Import, ast.ImportFrom)) else []:
            single = (
                ast.Import(names=[alias])
                if isinstance(node, ast.Import)
                else ast.ImportFrom(module=node.module, names=[alias], level=node.level)
            )
            name = alias.asname or alias.name.split(".")[0]
            bound[name] = bound.get(name, frozenset()) | _imported_modules(single, module, is_package)
    return bound


def _function_sources(function: Callable[..., Any]) -> dict[str, str]:
    """``function``'s source and that of the module-level functions of its module it calls, transitively."""
    module = sys.modules[function.__module__]
    sources: dict[str, str] = {}
    pending = [function]
    while pending:
        fn = pending.pop()
        if fn.__qualname__ in sources:
            continue
        sources[fn.__qualname__] = textwrap.dedent(inspect.getsource(fn))
        for node in ast.walk(ast.parse(sources[fn.__qualname__])):
            target = getattr(module, node.id, None) if isinstance(node, ast.Name) else None
            if inspect.isfunction(target) and target.__module__ == module.__name__:
                pending.append(target)
    return sources


def code_closure(function: Callable[..., Any]) -> list[str]:
    """Every finmlops module that ``function`` (and the helpers of its module it calls) imports, transitively."""
    sources = _function_sources(function)
    module = function.__module__
    seen: set[str] = set()
    trees = [ast.parse(src) for src in sources.values()]
    pending = set().union(*(_imported_modules(tree, module, False) for tree in trees))
    # Names the functions use that their module imports at its top: those imports are the functions' too.
    bound = _top_level_imports(module)
    used = {node.id for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Name)}
    pending |= set().union(*(bound[name] for name in used & bound.keys()))
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending |= _module_imports(name) - seen
    return sorted(seen)


@cache
def code_digest(module: str) -> str:
    """SHA-256 of the source file of one finmlops ``module`` (a package: its ``__init__.py``)."""
    path = _module_file(module)
    if path is None:
        raise ModuleNotFoundError(f"no module named {module!r}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_parts(function: Callable[..., Any]) -> dict[str, str]:
    """The code part of a step's identity: its own functions' source and each module of its import closure."""
    own = "\0".join(f"{name}\0{src}" for name, src in sorted(_function_sources(function).items()))
    parts = {f"code {function.__module__}.{function.__qualname__}": hashlib.sha256(own.encode()).hexdigest()}
    return parts | {f"code {m}": code_digest(m) for m in code_closure(function)}


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(json_safe(value), sort_keys=True, default=str).encode()).hexdigest()


def input_parts(inputs: dict[str, Any], action: Callable[..., Any]) -> dict[str, str]:
    """Digest of each part of a step's identity: every input (``input <key>``), the code the ``action`` runs
    (:func:`code_parts`) and the package versions, so that a rerun can say what changed."""
    parts = {f"input {k}": _sha(v) for k, v in inputs.items()}
    parts |= code_parts(action)
    parts["package versions"] = _sha({k: v for k, v in software_versions().items() if k != "finmlops"})
    return parts


def input_hash(parts: dict[str, str]) -> str:
    """The identity of one execution of a step: the digest of its :func:`input_parts`."""
    return _sha(parts)


class RunState:
    """``<home>/run_state.json``: per step, the input hash, output file digests and data of its last success."""

    def __init__(self, home: Path):
        self.path = Path(home) / STATE_FILE
        self.steps: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{self.path}: unreadable run state ({exc}); delete it or run with --force") from None
            if raw.get("version") == STATE_VERSION:
                self.steps = dict(raw.get("steps", {}))

    def save(self) -> None:
        write_json_atomic(self.path, {"version": STATE_VERSION, "steps": self.steps})

    def fresh(self, step: str, parts: dict[str, str]) -> str | None:
        """Why the record of ``step`` cannot be reused for inputs ``parts``, or None when it can."""
        record = self.steps.get(step)
        if record is None:
            return "no earlier successful run"
        if record.get("input_hash") != input_hash(parts):
            old = record.get("parts", {})
            changed = sorted(k for k in parts.keys() | old.keys() if parts.get(k) != old.get(k))
            return f"changed: {', '.join(changed)}"
        for name, digest in record.get("files", {}).items():
            path = Path(name)
            if not path.is_file():
                return f"output {path} is missing"
            if file_sha256(path) != digest:
                written = record.get("finished_at", "an unrecorded time")
                return f"output {path} changed since the step wrote it at {written}"
        return None

    def record(self, step: str, parts: dict[str, str], outcome: Outcome, seconds: float) -> None:
        self.steps[step] = {
            "input_hash": input_hash(parts),
            "parts": parts,
            "files": {str(Path(p).resolve()): file_sha256(p) for p in outcome.files},
            "data": json_safe(outcome.data),
            "figure": outcome.figure,
            "seconds": round(seconds, 2),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.save()

    def forget(self, step: str) -> None:
        if self.steps.pop(step, None) is not None:
            self.save()


def run_steps(
    steps: Sequence[Step],
    ctx: Context,
    state: RunState,
    *,
    force: bool = False,
    rerun: Collection[str] = (),
    dry_run: bool = False,
    on_step: Callable[[StepReport], None] = lambda _: None,
) -> list[StepReport]:
    """Run (or skip) ``steps`` in order; returns one report per step.

    Raises :class:`StepFailed` at the first failing step, after reporting it through ``on_step``; the steps after
    it are not run. ``rerun``: steps run even when their inputs are unchanged (``--step``); every other step is
    skipped or run as usual. ``dry_run`` runs nothing: a step "would run" when its inputs changed or an upstream
    step would run (its outputs are then unknown), else it "would skip".
    """
    reports: list[StepReport] = []
    pending: set[str] = set()  # steps that would run in a dry run
    for step in steps:
        report = StepReport(step.name, step.title, "not run")
        reports.append(report)
        if dry_run and pending & set(step.after):
            report.status, report.detail = "would run", f"after {', '.join(sorted(pending & set(step.after)))}"
            pending.add(step.name)
            on_step(report)
            continue
        started = time.perf_counter()
        try:
            parts = input_parts(step.inputs(ctx), step.action)
            report.input_hash = input_hash(parts)
            stale = "--force" if force else "--step" if step.name in rerun else state.fresh(step.name, parts)
            record = state.steps.get(step.name, {})
            if stale is None and step.still_valid is not None and not step.still_valid(ctx, record.get("data", {})):
                stale = "its recorded outputs are gone"
            if stale is None:
                ctx.outputs[step.name] = record.get("data", {})
                report.status, report.figure = ("would skip" if dry_run else "skipped"), record.get("figure", "")
                report.detail = f"inputs unchanged since {record.get('finished_at', 'the last successful run')}"
            elif dry_run:
                report.status, report.detail = "would run", stale
                pending.add(step.name)
            else:
                ctx.log(f"[{step.name}] {step.title}: running ({stale})")
                outcome = step.action(ctx)
                report.seconds = time.perf_counter() - started
                ctx.outputs[step.name] = json_safe(outcome.data)
                state.record(step.name, parts, outcome, report.seconds)
                report.status, report.figure, report.detail = "ran", outcome.figure, stale
        except Exception as exc:  # any failure stops the run, named by its step
            report.status, report.detail = "failed", f"{type(exc).__name__}: {exc}"
            report.seconds = time.perf_counter() - started
            state.forget(step.name)
            on_step(report)
            raise StepFailed(step.name, exc) from exc
        on_step(report)
    return reports
