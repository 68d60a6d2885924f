"""The package's layout stays legible: imports only run down the LAYERS, no import cycles
between modules or between folders, no module over MAX_MODULE_LINES lines, no function over
MAX_FUNCTION_LINES lines (argument parsers aside).

Run as a script (`python tests/test_layout.py`) for a report of every violation, benchmarks/
included (reported, never failed on).
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Argument parsers are long lists of add_argument calls; splitting them hides the interface.
PARSER_NAME = re.compile(r"(get_parser|build_parser|.*_parser|add_.*_arguments?)")

# Checked trees -> the package name their modules have (training/ ships as emobatch.training).
PACKAGES = {"emobatch": "emobatch", "training": "emobatch.training"}
# Scripts: reported by the script run, never failed on.
SCRIPTS = {"benchmarks": ""}

# The layers, lowest first; each holds rooms: a top-level module, or a folder with everything
# below it. A module may import its own room, or any room of a lower layer: never up, never
# sideways (faces/ and media/ know nothing of each other).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("emobatch._version", "emobatch.errors", "emobatch.types", "emobatch.atomic",
     "emobatch.config", "emobatch.timeline", "emobatch.analysis", "emobatch.memory",
     "emobatch.console"),
    ("emobatch.faces", "emobatch.media"),
    ("emobatch.plan", "emobatch.report"),
    ("emobatch.pipeline",),
    ("emobatch.batch",),
    ("emobatch.cli", "emobatch", "emobatch.training"),
    ("emobatch.__main__",),
)
# The ground floor's modules import each other (config raises errors' UsageError): one room.
GROUND = "emobatch (ground floor)"
# Imports against the layers tolerated while a change is under way: (importer, imported).
ALLOWED: set[tuple[str, str]] = set()

# Violations tolerated while a change is under way (empty when none is): "path" (module too
# long) or "path::qualname" (function too long); test_pending_is_current fails on an entry
# that no longer violates.
PENDING: set[str] = set()


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "emobatch.batch.sinks"; a package's __init__ is the package
    path: Path
    is_package: bool
    root: Path = ROOT

    @property
    def rel(self) -> str:
        return self.path.relative_to(self.root).as_posix()


def find_modules(trees: dict[str, str], root: Path = ROOT) -> dict[str, Module]:
    """Every .py under each tree in `trees` (folder under root -> dotted prefix, "" for
    top-level scripts), by dotted module name."""
    modules = {}
    for folder, prefix in trees.items():
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(p for p in [prefix, *parts] if p)
            modules[name] = Module(name, path, is_package, root)
    return modules


def _absolute(name: str, trees: dict[str, str]) -> str:
    """An absolute import's module name as the checked trees name it (`training.x` in a
    checkout is `emobatch.training.x`)."""
    for folder, prefix in trees.items():
        if prefix and prefix != folder and (name == folder or name.startswith(folder + ".")):
            return prefix + name[len(folder):]
    return name


def _deepest_known(name: str, modules: dict[str, Module]) -> str | None:
    """The longest dotted prefix of `name` that is a checked module, or None."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: Module, modules: dict[str, Module], trees: dict[str, str]) -> set[str]:
    """The checked modules `module` imports anywhere in its body (inside functions too): the
    module named by each import statement, or the submodule for `from pkg import submodule`."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [_absolute(alias.name, trees) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = _absolute(node.module, trees)
            # `from pkg import x` imports the submodule pkg.x when there is one, else a name of pkg
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                       else source for alias in node.names]
        else:
            continue
        found.update(t for t in map(lambda n: _deepest_known(n, modules), targets) if t)
    found.discard(module.name)
    return found


def import_graph(modules: dict[str, Module], trees: dict[str, str]) -> dict[str, set[str]]:
    """Module name -> the checked modules it imports."""
    return {name: imports_of(m, modules, trees) for name, m in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative),
    each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components, key=lambda c: (-len(c), c))


def room_of(name: str) -> str:
    """The room of a module (LAYERS): the longest room name it is or lies below; the package
    itself (`emobatch`) only by its own name. KeyError for a module of no room."""
    if name in LAYERS[0]:
        return GROUND
    rooms = [r for layer in LAYERS[1:] for r in layer
             if name == r or (r != "emobatch" and name.startswith(r + "."))]
    return max(rooms, key=len)


def layer_of(room: str) -> int:
    return 0 if room == GROUND else next(i for i, layer in enumerate(LAYERS) if room in layer)


def against_layers(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) for every import up a layer or sideways into another room of the
    same layer (ALLOWED aside)."""
    found = []
    for name, targets in sorted(graph.items()):
        room = room_of(name)
        for target in sorted(targets):
            other = room_of(target)
            if other != room and layer_of(other) >= layer_of(room):
                found.append((name, target))
    return [pair for pair in found if pair not in ALLOWED]


def folder_of(name: str, modules: dict[str, Module]) -> str:
    """The folder a module lies in, as a dotted name (a package's __init__ is in its own)."""
    return name if modules[name].is_package else name.rpartition(".")[0]


def folder_graph(graph: dict[str, set[str]], modules: dict[str, Module]) -> dict[str, set[str]]:
    """Folder -> the other folders its modules import; the package's own top-level modules
    each count as a folder of their own (they are rooms of different layers)."""
    def node(name: str) -> str:
        folder = folder_of(name, modules)
        return name if folder == "emobatch" and name != "emobatch" else folder

    folders: dict[str, set[str]] = {}
    for name, targets in graph.items():
        folders.setdefault(node(name), set()).update(node(t) for t in targets)
    return {f: targets - {f} for f, targets in folders.items()}


def long_modules(modules: dict[str, Module]) -> dict[str, int]:
    """Relative path -> line count, for modules over MAX_MODULE_LINES."""
    counts = {m.rel: len(m.path.read_text().splitlines()) for m in modules.values()}
    return {rel: n for rel, n in sorted(counts.items()) if n > MAX_MODULE_LINES}


def _functions(body: list[ast.stmt], prefix: str = ""):
    """(qualname, node) for every function and method, nested ones included."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")
        elif hasattr(node, "body"):  # if/try/with blocks at any level
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _functions(getattr(node, field, []) or [], prefix)


def long_functions(modules: dict[str, Module]) -> dict[str, int]:
    """"path::qualname" -> lines from `def` to the end of its body, for functions over
    MAX_FUNCTION_LINES (argument parsers aside)."""
    found = {}
    for m in sorted(modules.values(), key=lambda m: m.rel):
        tree = ast.parse(m.path.read_text(), str(m.path))
        for qualname, node in _functions(tree.body):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and not PARSER_NAME.fullmatch(node.name):
                found[f"{m.rel}::{qualname}"] = lines
    return found


def violations(trees: dict[str, str]) -> dict[str, object]:
    """Every layout violation in `trees`: import cycles (between modules, between folders),
    imports against the layers (the package's trees only), long modules, long functions."""
    modules = find_modules(trees)
    graph = import_graph(modules, trees)
    return {"cycles": cycles(graph), "folder_cycles": cycles(folder_graph(graph, modules)),
            "layers": against_layers(graph) if trees is PACKAGES else [],
            "modules": long_modules(modules), "functions": long_functions(modules)}


def test_import_graph_sees_lazy_and_relative_imports(tmp_path):
    files = {
        "pkg/__init__.py": "def __getattr__(name):\n    from .sub.a import run\n    return run\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/a.py": "from . import b\nimport numpy\n",
        "pkg/sub/b.py": "def version():\n    from .. import VERSION\n    return VERSION\n",
        "pkg/c.py": "import pkg.sub.b as b\nfrom train import fit\n",
        "train/fit.py": "from .data import load\n",
        "train/data.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    trees = {"pkg": "pkg", "train": "pkg.train"}
    graph = import_graph(find_modules(trees, tmp_path), trees)
    assert graph["pkg"] == {"pkg.sub.a"}            # lazy, inside a function
    assert graph["pkg.sub.a"] == {"pkg.sub.b"}      # `from . import b`: the submodule
    assert graph["pkg.sub.b"] == {"pkg"}            # a name of the package's __init__
    assert graph["pkg.c"] == {"pkg.sub.b", "pkg.train.fit"}  # train/ is pkg.train
    assert graph["pkg.train.fit"] == {"pkg.train.data"}
    assert cycles(graph) == [["pkg", "pkg.sub.a", "pkg.sub.b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    body = "".join(f"        x{i} = {i}\n" for i in range(59))  # def + 59 + return: 61 lines
    (tmp_path / "pkg/long.py").write_text(
        f"class A:\n    def f(self):\n{body}        return 0\n\n"
        f"    def build_parser(self):\n{body}        return 0\n")
    assert long_functions(find_modules(trees, tmp_path)) == {"pkg/long.py::A.f": 61}


def test_layers_see_rooms_and_directions(tmp_path):
    graph = {"emobatch.faces.detection.video": {"emobatch.faces.boxes", "emobatch.types"},
             "emobatch.plan": {"emobatch.faces.device", "emobatch.config"},
             "emobatch.config": {"emobatch.errors", "emobatch.faces.detection.runtimes"},
             "emobatch.faces.emotion.classifier": {"emobatch.plan"},
             "emobatch.media.annotate": {"emobatch.faces.boxes"},
             "emobatch": {"emobatch.batch.driver"}, "emobatch.batch.driver": {"emobatch.report"}}
    assert room_of("emobatch.faces.detection.video") == "emobatch.faces"
    assert room_of("emobatch") == "emobatch" and room_of("emobatch.errors") == GROUND
    assert against_layers(graph) == [("emobatch.config", "emobatch.faces.detection.runtimes"),
                                     ("emobatch.faces.emotion.classifier", "emobatch.plan"),
                                     ("emobatch.media.annotate", "emobatch.faces.boxes")]
    files = {"pkg/__init__.py": "", "pkg/a.py": "from .sub import b\n", "pkg/c.py": "",
             "pkg/sub/__init__.py": "", "pkg/sub/b.py": "from .. import c\n"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules = find_modules({"pkg": "pkg"}, tmp_path)
    folders = folder_graph(import_graph(modules, {"pkg": "pkg"}), modules)
    assert folders["pkg.sub"] == {"pkg"} and cycles(folders) == [["pkg", "pkg.sub"]]


def test_no_import_cycles():
    assert violations(PACKAGES)["cycles"] == []


def test_no_folder_import_cycles():
    assert violations(PACKAGES)["folder_cycles"] == []


def test_imports_run_down_the_layers():
    assert violations(PACKAGES)["layers"] == []


def test_every_module_has_a_room():
    for name in find_modules(PACKAGES):
        layer_of(room_of(name))  # KeyError / StopIteration / ValueError: add it to LAYERS


def test_allowed_is_current():
    graph = import_graph(find_modules(PACKAGES), PACKAGES)
    against = {(a, b) for a, targets in graph.items() for b in targets
               if room_of(a) != room_of(b) and layer_of(room_of(b)) >= layer_of(room_of(a))}
    assert ALLOWED - against == set(), "fixed: remove these from ALLOWED"


def test_no_long_modules():
    assert set(violations(PACKAGES)["modules"]) - PENDING == set()


def test_no_long_functions():
    assert set(violations(PACKAGES)["functions"]) - PENDING == set()


def test_pending_is_current():
    found = violations(PACKAGES)
    assert PENDING - set(found["modules"]) - set(found["functions"]) == set(), \
        "fixed: remove these from PENDING"


def _map_rows() -> list[tuple[str, str]]:
    """(the 'where' cell, the 'holds' cell) of every row of CONTRIBUTING's module map."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    table = text[text.index("| where | holds |"):].split("\n\n")[0].splitlines()[2:]
    return [tuple(cell.strip() for cell in row.strip("|").split("|", 1)) for row in table]


def test_contributing_map_is_the_tree():
    """Every module of the package sits in a row of CONTRIBUTING's map (the row's folder, then
    its file names; training's modules by name), and every file a row names exists."""
    named = set()
    for where, holds in _map_rows():
        folder = ""
        for token in re.findall(r"`([^`]+)`", where):
            if token.endswith("/"):
                folder = token
            elif token.endswith(".py"):
                folder = token.rpartition("/")[0] + "/" if "/" in token else folder
                named.add("emobatch/" + folder + token.rpartition("/")[2])
        if where == "`training/`":
            named |= {f"training/{m}.py" for m in re.findall(r"`(\w+)`", holds)}
            named |= {f"training/{m}" for m in re.findall(r"`(\w+\.py)`", holds)}
    modules = {m.rel for m in find_modules(PACKAGES).values()
               if not m.is_package and m.path.name not in ("__main__.py", "_version.py")}
    assert modules - named == set(), "add these to CONTRIBUTING's map"
    assert named - modules == set(), "CONTRIBUTING's map names files that are not there"


def main() -> int:
    """Print every violation (benchmarks included); exit 1 when emobatch/training have any."""
    failing = False
    for label, trees in (("emobatch + training", PACKAGES), ("benchmarks", SCRIPTS)):
        found = violations(trees)
        print(f"== {label}")
        for component in found["cycles"]:
            print("import cycle:", " <-> ".join(component))
        for component in found["folder_cycles"]:
            print("folder import cycle:", " <-> ".join(component))
        for importer, imported in found["layers"]:
            print(f"import against the layers: {importer} -> {imported}")
        for rel, n in found["modules"].items():
            print(f"module {rel}: {n} lines{'  (pending)' if rel in PENDING else ''}")
        for key, n in found["functions"].items():
            print(f"function {key}: {n} lines{'  (pending)' if key in PENDING else ''}")
        if not any(found.values()):
            print("no violations")
        if trees is PACKAGES:
            failing = bool(found["cycles"] or found["folder_cycles"] or found["layers"]
                           or set(found["modules"]) - PENDING
                           or set(found["functions"]) - PENDING)
    return int(failing)


if __name__ == "__main__":
    sys.exit(main())
