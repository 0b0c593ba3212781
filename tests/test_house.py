"""The house rules, checked on the source: shared code never names a method, imports go one way (no circle), only
entry points configure logging, one Markdown table writer."""

import ast
import os
import re

import pytest

import recbole_transfer
from recbole_transfer import keys, registry

PACKAGE = os.path.dirname(os.path.abspath(recbole_transfer.__file__))
ROOT = os.path.dirname(PACKAGE)
COMMON_WORDS = {"none", "pop", "random", "frozen", "full", "sample", "finetune", "bag",  # arms that are plain words
                "task", "protocol", "eta", "stages",  # keys that are plain words
                "ItemKNN", "EASE", "itemknn", "ease"}  # RecBole's models: the shared baseline arms of every method


def _modules(under=PACKAGE):
    for folder, _dirs, files in os.walk(under):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def _shared(path):
    return not os.path.relpath(path, PACKAGE).startswith("methods" + os.sep)


def method_words():
    """Every name that identifies a built-in method: its name, models, strategy and runner classes, its arms."""
    words = set()
    for method in registry.methods():
        if not (method.module or "").startswith("recbole_transfer.methods"):
            continue
        words |= {method.name, method.name.replace("_", " "), method.name.replace("_", "-")} | set(method.models)
        if type(method.runner).__module__.startswith(method.module):  # a runner of its own (not a shared one)
            words.add(type(method.runner).__name__)
        words |= {method.strategy.__name__} if method.strategy else set()
        words |= {str(arm).split("/")[0] for arm in method.arms} - COMMON_WORDS
        words |= set(keys.method_keys(method)) - COMMON_WORDS  # a method's own keys (transfer_mode, patch_width, ...)
    return words | {"MMT-Net", "NextItNet"}


def test_shared_code_names_no_method():
    words = sorted(method_words(), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in words) + r")(?![\w-])", re.IGNORECASE)
    found = []
    paths = [p for p in _modules() if _shared(p)] + [os.path.join(ROOT, "properties", "overall.yaml")]
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                for match in pattern.finditer(line):
                    found.append(f"{os.path.relpath(path, ROOT)}:{number}: {match.group(0)!r}")
    assert not found, "shared code names a method:\n" + "\n".join(found)
    assert {"TransferMLP", "peterrec", "SML", "config-1", "anneal", "transfer_mode"} <= set(method_words())  # not empty


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def import_graph():
    """{module: {package modules it imports}}, module-level and function-level imports alike (a top-level
    ``import recbole_transfer`` package facade is not an edge)."""
    modules = {_module_name(p): p for p in _modules()}
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t not in (name, "recbole_transfer")}
        graph[name] = edges
    return graph


def test_imports_go_one_way():
    graph = import_graph()
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import circles: {cycles}"
    upward = [(a, b) for a, b_set in graph.items() for b in b_set
              if not a.startswith("recbole_transfer.methods") and b.startswith("recbole_transfer.methods")]
    assert not upward, f"shared modules import methods (methods import shared code, never the reverse): {upward}"
    assert any(b.startswith("recbole_transfer.pipeline") for b in graph["recbole_transfer.methods.layer_transfer"])


@pytest.mark.parametrize("call", [r"basicConfig\(", r"init_logger\(", r"\.setLevel\(", r"\.handlers\b", r"filterwarnings\("])
def test_only_entry_points_configure_logging(call):
    entry_points = {os.path.join(PACKAGE, "logs.py")}
    found = [os.path.relpath(p, ROOT) for p in _modules() if p not in entry_points
             and re.search(call, open(p, encoding="utf-8").read())]
    assert not found, f"{call} outside recbole_transfer/logs.py: {found}"


def test_one_markdown_table_writer():
    writer = os.path.join(PACKAGE, "report.py")
    scripts = list(_modules()) + list(_modules(os.path.join(ROOT, "benchmarks")))
    found = [os.path.relpath(p, ROOT) for p in scripts if p != writer and re.search(r"\|-{3}|-{3}\|", open(p, encoding="utf-8").read())]
    assert not found, f"Markdown tables written by hand (use recbole_transfer.report.markdown): {found}"
