"""Optional dependencies, imported on first use so that importing the pack stays light.

insightface, onnxruntime and open_clip are large and only some workflows need them. A missing one is an
error that shows the original ImportError and the exact pip command for the Python running ComfyUI.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

from ..mechanisms.errors import InfuseError

# import name -> what to pip install
PIP_NAMES = {
    "insightface": "insightface",
    "onnxruntime": "onnxruntime-gpu  (or onnxruntime on a machine without CUDA)",
    "open_clip": "open-clip-torch",
    "cv2": "opencv-python-headless  (insightface installs opencv-python, which works too)",
}


def pip_command(module: str) -> str:
    return f'"{sys.executable}" -m pip install {PIP_NAMES.get(module, module)}'


def require(module: str, node: str) -> ModuleType:
    """Import an optional dependency, or raise an InfuseError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise InfuseError(
            node,
            f"this node needs the Python package '{module}', which could not be imported "
            f"({type(e).__name__}: {e}).",
            f"install it into the Python that runs ComfyUI: {pip_command(module)} ; then restart ComfyUI.",
        ) from e
