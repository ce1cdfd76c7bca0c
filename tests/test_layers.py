"""The layers of src/fund_mail, held by its import graph: no upward edges and no cycles.

    cli -> winservice -> service, admin, pst -> engine_imap, mailboxes -> engine
        -> imap, alerts -> graph, delivery -> archive -> foundation

Each layer may import the layers below it, never one above or beside it. The foundation is
config, errors, logs, retry, crashpoints and version. Two edges go from graph into archive, on
purpose: graph/client streams attachment bytes through archive/fsutil's one atomic write, and
graph/attachments names the files with archive/rows' one naming rule (rows is pure functions:
no SQL, no files). The emulator stands apart: it imports nothing of the product, so that it
cannot agree with the client by sharing its code; only admin/demo imports it.
"""

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fund_mail"

FOUNDATION = {"config", "errors", "logs", "retry", "crashpoints", "version", ""}
RANK = {
    "archive": 1,
    "graph": 2,
    "delivery": 2,
    "imap": 3,  # the IMAP transport signs in through graph/auth's msal app
    "alerts": 3,  # sends through graph or SMTP, reads the run history in archive
    "engine": 4,
    "engine_imap": 5,  # the IMAP source's engine, built on engine's shared core
    "mailboxes": 5,
    "admin": 6,
    "pst": 6,
    "service": 6,
    "winservice": 7,  # the Windows shell around service
    "cli": 8,
}
GRAPH_MAY_USE = {"fund_mail.archive.fsutil", "fund_mail.archive.rows"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    """The top-level part of fund_mail a module belongs to: 'graph', 'engine', '' (the
    package itself), ..."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank(module: str) -> int:
    return 0 if layer(module) in FOUNDATION else RANK.get(layer(module), -1)


def imports_of(module: str) -> set[str]:
    """Every fund_mail module a module imports, at the top or inside a function."""
    tree = ast.parse(MODULES[module].read_text("utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: relative import; spell out fund_mail.…"
            base = node.module or ""
            for alias in node.names:
                # `from fund_mail import crashpoints` imports the module fund_mail.crashpoints
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m == "fund_mail" or m.startswith("fund_mail.")}


GRAPH = {module: imports_of(module) for module in MODULES}


def wrong_edge(source: str, target: str) -> str | None:
    """Why source may not import target, or None when it may."""
    if target not in MODULES:
        return f"{target} does not exist"
    if target == "fund_mail.cli":
        return "nothing imports the command line"
    if layer(target) == "emulator":
        ok = layer(source) == "emulator" or source == "fund_mail.admin.demo"
        return None if ok else "only the demo uses the emulator"
    if layer(source) == "emulator":
        return "the emulator imports nothing of the product"
    if layer(source) == layer(target) or (rank(source) == 0 and rank(target) == 0):
        return None
    if layer(source) == "graph" and layer(target) == "archive":
        return None if target in GRAPH_MAY_USE else "graph uses only archive's fsutil and rows"
    if rank(target) >= rank(source):
        return "an import upward or sideways"
    return None


def test_every_module_has_a_layer():
    unknown = {m for m in MODULES if rank(m) < 0 and layer(m) != "emulator"}
    assert not unknown, f"add these to RANK or FOUNDATION in {__file__}: {unknown}"


def test_no_import_goes_up_or_sideways():
    wrong = [
        f"{source} -> {target}: {why}"
        for source, targets in GRAPH.items()
        for target in sorted(targets)
        if (why := wrong_edge(source, target))
    ]
    assert not wrong, "\n".join(wrong)


def test_no_cycles():
    """Depth-first search over the module graph; a back edge is a cycle."""
    state: dict[str, str] = defaultdict(lambda: "new")
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module] - {module}):
            if state[target] == "open":
                cycles.append([*path[path.index(target) :], target])
            elif state[target] == "new":
                visit(target, [*path, target])
        state[module] = "done"

    for module in MODULES:
        if state[module] == "new":
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("fund_mail.archive.store", "fund_mail.graph.client", False),
        ("fund_mail.archive.index", "fund_mail.engine", False),
        ("fund_mail.graph.client", "fund_mail.engine", False),
        ("fund_mail.graph.client", "fund_mail.archive.index", False),
        ("fund_mail.graph.client", "fund_mail.archive.fsutil", True),
        ("fund_mail.graph.client", "fund_mail.delivery", False),
        ("fund_mail.delivery", "fund_mail.graph.client", False),
        ("fund_mail.delivery", "fund_mail.archive.index", True),
        ("fund_mail.engine", "fund_mail.cli", False),
        ("fund_mail.engine", "fund_mail.admin.status", False),
        ("fund_mail.admin.status", "fund_mail.archive.index", True),
        ("fund_mail.pst.importer", "fund_mail.admin.check", False),
        ("fund_mail.config", "fund_mail.archive.rows", False),
        ("fund_mail.config", "fund_mail.errors", True),
        ("fund_mail.engine", "fund_mail.emulator", False),
        ("fund_mail.emulator.server", "fund_mail.errors", False),
        ("fund_mail.admin.demo", "fund_mail.emulator", True),
        ("fund_mail.cli", "fund_mail.engine", True),
    ],
)
def test_the_rules_themselves(source, target, allowed):
    assert (wrong_edge(source, target) is None) is allowed


def test_each_layer_imports_without_the_layers_above_it():
    """Import every module of a layer, with its public names, in a fresh interpreter, and list
    the fund_mail modules that came with it: none may be from a layer above."""
    script = """
import importlib, json, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for public in [n for n in dir(module) if not n.startswith("_")]:
        getattr(module, public)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("fund_mail"))))
"""
    packages = {m for m, path in MODULES.items() if path.name == "__init__.py"}
    layers = defaultdict(list)
    for module in MODULES:
        if layer(module) != "emulator":
            layers[layer(module)].append(module)
    for name, modules in layers.items():
        finished = subprocess.run(
            [sys.executable, "-c", script, *modules], capture_output=True, text=True, timeout=60
        )
        assert finished.returncode == 0, finished.stderr
        loaded = json.loads(finished.stdout)
        # A package's __init__ comes with any of its modules; the modules are what count.
        above = [
            m
            for m in set(loaded) - packages - set(modules)
            if all(wrong_edge(s, m) for s in modules)
        ]
        assert not above, f"importing {name or 'fund_mail'} loads {above}"
