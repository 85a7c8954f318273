"""The library's structure (docs/ARCHITECTURE.md): no import cycles, no front end inside it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent.parent / "logstore"


def runtime_imports(path: Path, module: str, *, anywhere: bool = False) -> set[str]:
    """The modules `path` imports at module level (with `anywhere`, also inside functions);
    never those imported only for type checking."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree) if anywhere else tree.body:
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = f"{base}.{node.module}" if node.level and node.module else base
            target = node.module if not node.level else target
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def library_modules() -> dict[str, Path]:
    modules = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def test_no_import_cycles_in_the_library():
    modules = library_modules()
    graph = {
        name: {m for m in runtime_imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }
    graph["logstore"] = set()  # the package re-exports; modules never import it back

    def visit(name, trail):
        for dependency in graph[name]:
            assert dependency not in trail, f"import cycle: {[*trail, dependency]}"
            visit(dependency, [*trail, dependency])

    for name in graph:
        visit(name, [name])


def test_the_library_never_imports_the_front_end_or_aiohttp():
    for name, path in library_modules().items():
        imported = runtime_imports(path, name, anywhere=True)
        assert not {m for m in imported if m.split(".")[0] in {"server", "logstore_server"}}
        assert not {m for m in imported if m.split(".")[0] == "aiohttp"}, name
    code = "import sys, logstore; print(sorted(m for m in sys.modules if 'aiohttp' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
