"""Model folders of the pack, registered with ComfyUI's folder_paths, and file lookup with clear errors."""
from __future__ import annotations

import os

import folder_paths

from ..core.errors import InfuseError

_WEIGHTS = set(folder_paths.supported_pt_extensions)

# folder name -> file extensions listed in its dropdowns
MODEL_FOLDERS: dict[str, set[str]] = {
    "ipadapter": _WEIGHTS,
    "instantid": _WEIGHTS,
    "insightface": {".onnx"},
    "photomaker": _WEIGHTS,
    "pulid": _WEIGHTS,
    "facexlib": _WEIGHTS,          # parsing_bisenet.pth (PuLID's face parser), where ComfyUI's PuLID ports keep it
}

# made under ComfyUI's models/ at start-up when missing, so users see where files go (insightface packs sit one
# level down, in models/insightface/models/<name>/)
CREATED_FOLDERS = ("ipadapter", "instantid", os.path.join("insightface", "models"), "photomaker", "pulid")


def register_model_folders() -> None:
    """Add models/<name> for each folder, keeping paths that extra_model_paths.yaml registered first."""
    for name, extensions in MODEL_FOLDERS.items():
        default = os.path.join(folder_paths.models_dir, name)
        if name in folder_paths.folder_names_and_paths:
            paths, known = folder_paths.folder_names_and_paths[name]
            paths = list(paths)
            if default not in paths:
                paths.append(default)
            folder_paths.folder_names_and_paths[name] = (paths, set(known) | extensions)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], set(extensions))
    create_model_folders()


def create_model_folders() -> None:
    """Make the pack's default folders under models/ if they are missing. Never fails: a read-only or odd
    models/ only means the folders are not made (the loaders then name the folders they searched)."""
    for name in CREATED_FOLDERS:
        try:
            os.makedirs(os.path.join(folder_paths.models_dir, name), exist_ok=True)
        except OSError:
            pass


def find_model_file(folder: str, filename: str, input_name: str) -> str:
    """The full path of `filename` in a model folder, or an error listing every folder searched."""
    path = folder_paths.get_full_path(folder, filename) if filename else None
    if path is None or not os.path.isfile(path):
        searched = "; ".join(folder_paths.get_folder_paths(folder)) or "(no folder registered)"
        raise InfuseError(f"model file '{filename}' was not found. Searched: {searched}.",
                          f"put the file in one of those folders (or add a '{folder}' entry to "
                          "extra_model_paths.yaml) and refresh the node's list.", input_name=input_name)
    return path
