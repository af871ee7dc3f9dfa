"""Optional dependencies, imported on first use so that importing the pack stays light.

insightface, onnxruntime and open_clip are large and only some workflows need them. A missing one is an
error that shows the original ImportError and the exact pip command for the Python running ComfyUI. Where
the module is there but one of *its* imports is missing (insightface without onnxruntime, say), the error
names that module and its pip command, not the one the node asked for.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from ..core.errors import InfuseError

# import name -> what to pip install (the names README.md's Install section uses; a test checks they agree)
PIP_NAMES = {
    "insightface": "insightface",
    "onnxruntime": "onnxruntime-gpu",
    "open_clip": "open-clip-torch",
    "timm": "timm",                  # EVA-CLIP for PuLID; open-clip-torch installs it
    "cv2": "opencv-python",          # what insightface itself requires
    "skimage": "scikit-image",       # insightface's own imports, named here when one of them is missing
    "sklearn": "scikit-learn",
}

# what to add after the command
PIP_NOTES = {
    "onnxruntime": "on a machine without CUDA install onnxruntime instead; keep only one of the two installed "
                   "(they share their files: remove both with pip uninstall -y onnxruntime onnxruntime-gpu, "
                   "then install one).",
    "insightface": "insightface 2.x also installs onnxruntime (CPU); for CUDA then run pip uninstall -y "
                   "onnxruntime onnxruntime-gpu and pip install onnxruntime-gpu (README.md, Install).",
}


def pip_command(module: str) -> str:
    return f'"{sys.executable}" -m pip install {PIP_NAMES.get(module, module)}'


# imported by a module's own __init__, whose ImportError then hides their name (insightface re-raises a bare
# ImportError without `.name` when onnxruntime is missing): imported first, so their error is their own
PREREQUISITES = {"insightface": ("onnxruntime",)}


def missing_module(error: ImportError, module: str) -> str:
    """The top-level module whose absence the ImportError reports: `module` itself, or one that it imports.
    ImportError.name says which; an ImportError re-raised without a name is followed to the one it wraps."""
    seen, e = set(), error
    while e is not None and id(e) not in seen and getattr(e, "name", None) is None:
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    name = (getattr(e, "name", None) or module).split(".")[0] if isinstance(e, ImportError) else module
    return module if name == module.split(".")[0] else name


def _import(module: str, needed_by: str | None = None) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = missing_module(e, module)
        by = needed_by if missing == module else module
        via = f" (imported by '{by}', which is installed)" if by else ""
        note = f" ({PIP_NOTES[missing]})" if missing in PIP_NOTES else ""
        raise InfuseError(
            f"this node needs the Python package '{missing}'{via}, which could not be imported "
            f"({type(e).__name__}: {e}).",
            f"install it into the Python that runs ComfyUI: {pip_command(missing)} ; then restart ComfyUI.{note}",
        ) from e


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str) -> ModuleType:
    """Import an optional dependency, or raise an InfuseError that says which package to install and how."""
    if _installed(module):   # then say which of its own imports is missing, not that it is
        for prerequisite in PREREQUISITES.get(module, ()):
            _import(prerequisite, needed_by=module)
    return _import(module)
