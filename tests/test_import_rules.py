"""The rooms of the code base and who may import whom (read from the source, function-level imports too).

* ``medsyn_core`` (shared: settings, store, auth, jobs, privacy, model cards) imports no engine, no app
  code, no CLI and not Streamlit.
* The engines (``medsyn_tabular``, ``medsyn_imaging``) import the core and themselves only: never each
  other, the app, the CLI or Streamlit.
* ``medsyn_federated`` (federated synthesis on Flower) may import the core and both engines, never the
  app, the CLI, the API or Streamlit.
* ``medsyn_cli`` may import the core, the engines, ``medsyn_federated`` and the client, never the app or
  Streamlit.
* ``medsyn_app`` (and ``app.py``, ``pages/``) may import everything but the API and its client.
* ``medsyn_api`` (the REST API) may import the core and the engines, never the app, the CLI or Streamlit.
* ``medsyn_client`` (the HTTP client) imports none of the server side.
* No import cycle between modules of the packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("medsyn_core", "medsyn_tabular", "medsyn_imaging", "medsyn_federated", "medsyn_cli", "medsyn_app",
            "medsyn_api", "medsyn_client")
ALLOWED = {
    "medsyn_core": {"medsyn_core"},
    "medsyn_tabular": {"medsyn_core", "medsyn_tabular"},
    "medsyn_imaging": {"medsyn_core", "medsyn_imaging"},
    "medsyn_federated": {"medsyn_core", "medsyn_tabular", "medsyn_imaging", "medsyn_federated"},
    "medsyn_cli": {"medsyn_core", "medsyn_tabular", "medsyn_imaging", "medsyn_federated", "medsyn_cli",
                   "medsyn_client"},
    "medsyn_app": set(PACKAGES) - {"medsyn_api", "medsyn_client"},
    # the REST API: the core and the engines, never the app or Streamlit
    "medsyn_api": {"medsyn_core", "medsyn_tabular", "medsyn_imaging", "medsyn_api"},
    # the HTTP client: nothing of the server side (it runs on machines without MedSyn's engines)
    "medsyn_client": {"medsyn_client"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (absolute names)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def test_each_room_imports_only_what_it_may():
    bad = []
    for name, path in sorted(all_modules().items()):
        room = name.split(".")[0]
        for imported in imports_of(path):
            top = imported.split(".")[0]
            if top == "streamlit" and room != "medsyn_app":
                bad.append(f"{name} imports streamlit")
            elif top in PACKAGES and top not in ALLOWED[room]:
                bad.append(f"{name} imports {imported}")
    assert bad == []


def test_no_import_cycles_between_modules():
    modules = all_modules()
    graph = {name: {m for m in imports_of(path) if m in modules and m != name}
             for name, path in modules.items()}
    # a package's __init__ importing its own sub-modules is not a cycle of concern: drop package -> child
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    assert cycles == []


def test_pages_and_app_keep_streamlit_glue_in_medsyn_app():
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        assert "medsyn_core.app_session" not in path.read_text(encoding="utf-8"), path.name
