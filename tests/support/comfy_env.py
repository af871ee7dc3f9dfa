"""Find the ComfyUI runtime the tests run against and make it importable in-process.

Order: $COMFYUI_PATH, else the ComfyUI whose custom_nodes/ holds this pack, else ~/comfy/ComfyUI.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_MODULE = "comfyui_infuse"
PINNED_COMMIT = "a125cd84"  # ComfyUI v0.3.64


def _is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "model_patcher.py").is_file() and (path / "main.py").is_file()


def find_comfyui() -> Path | None:
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]).expanduser())
    if PACK_ROOT.parent.name == "custom_nodes":
        candidates.append(PACK_ROOT.parent.parent)
    candidates.append(Path.home() / "comfy" / "ComfyUI")
    for c in candidates:
        if _is_comfyui(c):
            return c.resolve()
    return None


def import_comfyui() -> Path:
    """Put ComfyUI on sys.path (once) and return its folder; raises if none is found."""
    root = find_comfyui()
    if root is None:
        raise RuntimeError("ComfyUI not found: set COMFYUI_PATH, or run ../shared/comfyui-checkout.sh")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
        import torch
        import comfy.cli_args

        # ComfyUI reads its command line at import; in-process it gets the defaults, which assume CUDA.
        if not torch.cuda.is_available():
            comfy.cli_args.args.cpu = True
    return root


def load_pack():
    """Import the pack as ComfyUI does (its __init__ runs, registering model folders) under one fixed name."""
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    spec = importlib.util.spec_from_file_location(PACK_MODULE, PACK_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACK_MODULE]
        raise
    return module


def bare_pack():
    """The pack's package without running its __init__: enough for the pure-torch modules."""
    import types

    module = types.ModuleType(PACK_MODULE)
    module.__path__ = [str(PACK_ROOT)]
    sys.modules[PACK_MODULE] = module
    return module
