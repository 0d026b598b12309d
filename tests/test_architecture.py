"""Structure checks read from the source (issue "Architecture"): no import circle between project modules.

Every ``import`` and ``from … import`` of the project's packages counts, those inside functions too (a lazy
import still ties two modules together). A module importing its own parent package is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "fog", "cloud", "training", "experiments", "marlids")


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module name → the project modules it imports (absolute imports, resolved to the longest known module)."""
    mods = {}
    for pkg in PACKAGES:
        for p in (root / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(root).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = p

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                r = resolve(n)
                if r and r != m and not m.startswith(r + "."):
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_project_modules():
    found = cycles(import_graph())
    assert not found, f"import circles: {found}"


def test_fog_imports_nothing_from_training():
    graph = import_graph()
    back = {m: sorted(d for d in deps if d == "training" or d.startswith("training."))
            for m, deps in graph.items() if m == "fog" or m.startswith("fog.")}
    assert not {m: d for m, d in back.items() if d}, "fog/ must not import training/ (arrows run one way)"


def test_one_durable_sqlite_queue():
    """The edge's disk buffer and the fog's outbox are the one SQLiteQueue; nothing else opens SQLite by hand
    for writing (``marlids demo`` reads the fog's outbox read-only, ``mode=ro``, to count what waits)."""
    from edge.transport.buffer import DiskBuffer
    from edge.transport.sqlite_queue import SQLiteQueue
    from fog.outbox import AlertOutbox

    assert issubclass(DiskBuffer, SQLiteQueue) and issubclass(AlertOutbox, SQLiteQueue)
    opens = [str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
             if any("sqlite3.connect(" in line and "mode=ro" not in line for line in p.read_text().splitlines())]
    assert opens == ["edge/transport/sqlite_queue.py"], opens


def test_edge_imports_nothing_from_training():
    """edge/ holds what runs on the device; scorer training, evaluation, baselines and the ONNX export are
    offline work in training/ (registered under `marlids edge` by marlids/cli.py)."""
    graph = import_graph()
    back = {m: sorted(d for d in deps if d == "training" or d.startswith("training."))
            for m, deps in graph.items() if m == "edge" or m.startswith("edge.")}
    assert not {m: d for m, d in back.items() if d}, "edge/ must not import training/"


#: Modules every part may import: they import no other project module.
SHARED_LEAVES = ("edge.paths", "edge.settings")


def test_shared_leaves_import_no_project_module():
    """edge/paths.py names the repository's paths and bundled assets, edge/settings.py generates the
    components' options from their settings objects: both are leaves on the ground floor, so any part may
    use them; and no part imports marlids/ (the command that composes them)."""
    graph = import_graph()
    assert all(not graph[m] for m in SHARED_LEAVES), {m: graph[m] for m in SHARED_LEAVES}
    up = {m: sorted(d for d in deps if d == "marlids" or d.startswith("marlids."))
          for m, deps in graph.items() if not (m == "marlids" or m.startswith("marlids."))}
    assert not {m: d for m, d in up.items() if d}, "only the marlids command may import marlids/"


def test_cloud_and_fog_keep_to_their_side():
    """cloud/ uses nothing of the project but the private-file helper of the one SQLite queue and the shared
    leaves (paths, settings); fog/ never imports cloud/ (docs/architecture.md, "What may import what")."""
    graph = import_graph()
    cloud_out = {d for m, deps in graph.items() if m.startswith("cloud") for d in deps if not d.startswith("cloud")}
    assert cloud_out <= {"edge.transport.sqlite_queue", *SHARED_LEAVES}, cloud_out
    fog_cloud = {m for m, deps in graph.items() if m.startswith("fog") for d in deps if d.startswith("cloud")}
    assert not fog_cloud, fog_cloud
