"""The project's own import graph, from an AST walk of its sources (nothing is imported): no
module imports itself back through others, and the house rules hold (job never imports tune or
ray; tfds_covidct never imports job; only job/storage imports google.cloud)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("job", "tune", "tfds_covidct", "bench")


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, root: pathlib.Path) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` counts a.b when that is a
    module, else a), module level or inside functions alike."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph(root: pathlib.Path, packages=PACKAGES) -> dict[str, set[str]]:
    """{module: the project's modules it imports} over `packages` under `root`."""
    files = [p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
             if "__pycache__" not in p.parts]
    modules = {module_name(p, root): p for p in files}
    return {name: {m for m in imports_of(path, root) if m in modules and m != name}
            for name, path in modules.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search).

    A package's `__init__` that re-exports its own modules is the package's face, not a cycle:
    edges from a package to its own submodules are left out.
    """
    def own(parent: str, child: str) -> bool:
        return child.startswith(parent + ".")

    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if own(node, nxt):
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_back():
    assert cycle(graph(ROOT)) is None


def test_the_checker_finds_a_constructed_cycle(tmp_path):
    pkg = tmp_path / "job"
    (pkg / "config").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config" / "__init__.py").write_text("from job.config.schema import TrainConfig\n")
    (pkg / "config" / "schema.py").write_text("import json\n\ndef f():\n    from .checks import validate\n")
    (pkg / "config" / "checks.py").write_text("from job.config.schema import TrainConfig\n")
    edges = graph(tmp_path, ("job",))
    assert edges["job.config.checks"] == {"job.config.schema"}
    assert cycle(edges) == ["job.config.checks", "job.config.schema", "job.config.checks"]
    (pkg / "config" / "schema.py").write_text("import json\n")
    assert cycle(graph(tmp_path, ("job",))) is None  # a package re-exporting its modules is fine


@pytest.mark.parametrize("package, forbidden", [
    ("job", ("tune", "ray")), ("tfds_covidct", ("job", "tune", "ray")), ("bench", ("tune",)),
])
def test_house_rules(package, forbidden):
    bad = {str(p.relative_to(ROOT)): sorted(m for m in imports_of(p, ROOT)
                                            if m.split(".")[0] in forbidden)
           for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_only_job_storage_imports_google_cloud():
    users = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                   if any(m.startswith("google.cloud") for m in imports_of(p, ROOT)))
    assert users and all(u.startswith("job/storage/") for u in users), users
