"""The layout's promises, checked: imports between packages run one way (DESIGN §3), and no
module grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).parents[1] / "src" / "solaris"
# Lowest first. A package may import from its own layer's module only itself, and from any
# lower layer; never from a higher one, never a peer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("clock",),
    ("config", "links", "texts"),
    ("observability", "metering", "limits", "payments"),
    ("store",),
    ("ledger",),
    ("reports",),
    ("operations",),
    ("gateway",),
    ("alerts",),
    ("admin", "portal", "devprovider", "devpayments"),
    ("app",),
    ("cli",),
    ("__main__",),
)
MODULE_LINES_MAX = 400
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _package(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The solaris packages `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "solaris" and len(parts) > 1:
                found.add(parts[1])
    return found


def _sources() -> list[Path]:
    return [p for p in sorted(SOURCE.rglob("*.py")) if "migrations" not in p.parts]


def test_every_package_has_a_layer() -> None:
    packages = {_package(path) for path in _sources()} - {"__init__"}
    assert packages <= set(RANK), sorted(packages - set(RANK))


def test_imports_run_down_the_layers_only() -> None:
    wrong = []
    for path in _sources():
        own = _package(path)
        if own == "__init__":
            continue
        for imported in _imports(path) - {own}:
            if RANK[imported] >= RANK[own]:
                wrong.append(f"{path.relative_to(SOURCE)}: {own} -> {imported}")
    assert wrong == [], "\n".join(wrong)


def test_no_module_is_longer_than_a_reader_takes_in() -> None:
    long = {
        str(path.relative_to(SOURCE)): lines
        for path in _sources()
        if (lines := len(path.read_text().splitlines())) > MODULE_LINES_MAX
    }
    assert long == {}, long


def test_the_readme_maps_the_layers_in_their_order() -> None:
    """README's Development map lists every package, lowest layer first, as LAYERS does."""
    readme = (SOURCE.parents[1] / "README.md").read_text()
    block = readme.split("## Development", 1)[1].split("```", 2)[1]
    mapped = [
        line.split()[0].removesuffix("/").removesuffix(".py")
        for line in block.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    declared = [name for names in LAYERS for name in names if name != "__main__"]
    assert sorted(mapped) == sorted(declared), "the map and LAYERS name other packages"
    ranks = [RANK[name] for name in mapped]
    assert ranks == sorted(ranks), f"the map is not lowest layer first: {mapped}"
