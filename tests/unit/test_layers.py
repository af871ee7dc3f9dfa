"""Imports point one way (DESIGN.md, "Layout"): core <- extractors; core <- mechanisms/patching <- a mechanism family
<- mechanisms/loaders <- mechanisms/recipes <- nodes; extractors <- mechanisms. Read from the source with ast, every
import (module level or inside a function) of every pack module, relative or absolute."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "extractors", "mechanisms", "nodes")
FAMILIES = ("decoupled_attention", "reference_attention", "residual", "text_embedding", "latent_concat")
BELOW = {                       # layer -> the layers it may import (itself included)
    "package": {"core"},                                 # mechanisms/__init__.py
    "core": {"core"},
    "extractors": {"core", "extractors"},
    "patching": {"core", "patching"},
    "family": {"core", "extractors", "patching"},        # and its own family only, see layer_of
    "loaders": {"core", "patching", "family", "loaders"},
    "recipes": {"core", "extractors", "patching", "family", "loaders", "recipes"},
    "nodes": {"core", "extractors", "patching", "family", "loaders", "recipes", "nodes"},
}


def layer_of(module: str) -> tuple[str, str | None]:
    """(layer, family) of a dotted module path inside the pack."""
    parts = module.split(".")
    if parts[0] != "mechanisms":
        return parts[0], None
    if len(parts) == 1:
        return "package", None
    sub = parts[1]
    if sub in FAMILIES:
        return "family", sub
    if sub in ("patching", "loaders", "recipes"):
        return sub, None
    raise AssertionError(f"mechanisms/{sub} is in no layer: put it in patching/, a family, loaders/ or recipes/")


def pack_modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports_of(module: str, path: Path, is_package: bool):
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            elif node.module and node.module.startswith("comfyui_infuse."):
                names = [node.module.split(".", 1)[1]]
            else:
                continue
            yield from ((n, node.lineno) for n in names)
        elif isinstance(node, ast.Import):
            yield from ((a.name.split(".", 1)[1], node.lineno) for a in node.names
                        if a.name.startswith("comfyui_infuse."))


MODULES = list(pack_modules())


def test_every_pack_module_is_read():
    names = {m for m, _ in MODULES}
    assert {"core.errors", "mechanisms.patching.dispatcher", "mechanisms.patching.surfaces.dit",
            "mechanisms.decoupled_attention.ipadapter", "nodes.ipadapter_nodes"} <= names


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_one_way(module, path):
    layer, family = layer_of(module)
    wrong = []
    for target, line in imports_of(module, path, path.name == "__init__.py"):
        if target.split(".")[0] not in PACKAGES:
            continue
        t_layer, t_family = layer_of(target)
        if (t_layer not in BELOW[layer] and not (t_layer == layer == "family" and t_family == family)) \
                or (layer == t_layer == "family" and family != t_family):
            wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({layer} may not import {t_layer}"
                         + (f" {t_family}" if t_family else "") + ")")
    assert not wrong, "\n".join(wrong)


def test_the_check_catches_a_reversed_import(tmp_path):
    bad = tmp_path / "gate.py"
    bad.write_text("from ...nodes.presentation import MASK_TOOLTIP\nfrom ..decoupled_attention import adapter\n")
    found = list(imports_of("mechanisms.patching.gate", bad, False))
    assert [t for t, _ in found] == ["nodes.presentation", "mechanisms.decoupled_attention"]
    assert all(layer_of(t)[0] not in BELOW["patching"] for t, _ in found)
