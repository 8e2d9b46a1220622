"""`make check`'s import gate: no import cycle inside tilewright, and no unexplained import in a function.

Every `import`/`from ... import` in `src/tilewright` is an edge, the ones inside functions included
(a cycle held together by an import in a function is still a cycle); imports under
`if TYPE_CHECKING:` are not (they never run). `from tilewright.ops import source` is an edge to
`tilewright.ops.source` when that is a module, else to `tilewright.ops`; a package's `__init__`
is not implied by importing one of its modules (Python runs it, but no tool counts that and every
package would be a cycle with its own modules).

Layers (`FORBIDDEN`): the pixel and settings basics import nothing above them, readers/operations/writers
know nothing of jobs or the server, and jobs/events/storage know nothing of the server.

An import inside a function is allowed only with a comment on its line or the line above saying
why (a measured start-up win, an optional dependency): the default is an import at the top.

    python scripts/check_imports.py [SRC_DIR]     # exit 1 and one line per problem
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "tilewright"

#: layers (docs/development.md): modules under the key never import modules under any of its values
FORBIDDEN: dict[tuple[str, ...], tuple[str, ...]] = {
    ("errors", "imaging", "staging"): ("config", "formats", "ops", "outputs", "recipes", "jobs", "events", "server"),
    ("config", "paths"): ("formats", "ops", "outputs", "recipes", "jobs", "events", "storage", "server"),
    ("formats", "ops", "outputs", "recipes", "convert", "importer", "pipeline"): ("jobs", "events", "server"),
    ("jobs", "events", "storage"): ("server",),
}


def _under(module: str, tops: tuple[str, ...]) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in tops


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import that runs, with whether it sits inside a function."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def targets(node: ast.Import | ast.ImportFrom, current: str, is_package: bool, modules: set[str]) -> list[str]:
    """The tilewright modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    base = node.module or ""
    if node.level:
        anchor = current.split(".") if is_package else current.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    if base.split(".")[0] != PACKAGE:
        return []
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append(sub if sub in modules else base)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = [0]

    def strong(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                result.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            strong(node)
    return result


def check(src: Path) -> list[str]:
    root = src
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(path, root) for path in files}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    problems: list[str] = []
    for path in files:
        name = module_name(path, root)
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text, filename=str(path))
        for node, in_function in imports(tree):
            for target in targets(node, name, path.name == "__init__.py", modules):
                if target != name:
                    graph[name].add(target)
            if in_function:
                here = lines[node.lineno - 1]
                above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
                if "#" not in here and not above.startswith("#"):
                    rel = path.relative_to(root.parent) if root.parent in path.parents else path
                    problems.append(f"{rel}:{node.lineno}: import inside a function without a comment saying why")
    for lower, higher in FORBIDDEN.items():
        for module, imported in sorted(graph.items()):
            for target in sorted(imported):
                if _under(module, lower) and _under(target, higher):
                    problems.append(f"layering: {module} imports {target}")
    for cycle in find_cycles(graph):
        problems.append("import cycle: " + " <-> ".join(cycle))
    return problems


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for line in problems:
        print(line)
    if problems:
        print(f"check_imports: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_imports: no import cycle, no layer imports a higher one, every function-level import explained")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
