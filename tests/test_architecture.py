"""The shape of the package, checked from its source: imports point one way.

Every import counts, at module level or inside a function (a lazy import
still ties the two modules together), so a circle hidden in a function
body fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jobctl

PACKAGE = Path(jobctl.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The jobctl modules `name` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the submodule `pkg.mod`
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import jobctl.a.b` (or a name inside it): the deepest module that exists
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that starts and ends at the same module, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, WHITE) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt, WHITE) == WHITE:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_reports_the_circle_as_a_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    # runner imports lifecycle at module level; run-now's command imports
    # lifecycle inside its function body
    assert "jobctl.lifecycle" in graph["jobctl.runner"]
    assert "jobctl.lifecycle" in graph["jobctl.cli.control"]
    assert "jobctl.store.sqlite" in graph["jobctl.store"]


def test_no_import_circle_among_jobctl_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    # jobctl.__main__ is the console script: it starts the CLI, it is not core
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if not (name == "jobctl.cli" or name.startswith("jobctl.cli.")) and name != "jobctl.__main__"
        for target in targets
        if target == "jobctl.cli" or target.startswith("jobctl.cli.")
    )
    assert offenders == [], "; ".join(offenders)


def test_only_the_executor_signals_process_groups() -> None:
    # one way to stop a process group: executor.GroupStopper and the
    # helpers built on it; procinfo may only probe a group (signal 0)
    offenders = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called != "killpg" or name == "jobctl.executor":
                continue
            probe = (len(node.args) == 2 and isinstance(node.args[1], ast.Constant)
                     and node.args[1].value == 0)
            if not (name == "jobctl.procinfo" and probe):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == [], "os.killpg outside jobctl.executor: " + ", ".join(offenders)


def test_the_loop_uses_only_the_runners_public_surface() -> None:
    # the real-time loop drives the runner through its methods and
    # properties, never its heap, runs or flags
    runner_tree = ast.parse((PACKAGE / "runner.py").read_text(encoding="utf-8"))
    [runner_class] = [node for node in runner_tree.body
                      if isinstance(node, ast.ClassDef) and node.name == "Runner"]
    surface = {node.name for node in runner_class.body
               if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    # set from outside: the collaborators a caller hands in, and the one state it reads
    surface |= {"clock", "reload_config", "stopping"}
    loop_tree = ast.parse((PACKAGE / "loop.py").read_text(encoding="utf-8"))
    used = {node.attr for node in ast.walk(loop_tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "runner"}
    assert used, "loop.py should drive a `runner`"
    inside = sorted(used - surface)
    assert not inside, f"loop.py reaches into the runner: {inside}"
