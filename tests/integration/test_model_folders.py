"""The pack's model folders are made under ComfyUI's models/ at start-up when missing, so users see where files
go; a models/ that cannot be written to never breaks the import."""
import copy
import os

import folder_paths
import pytest

from comfyui_infuse.nodes import folders

MADE = ["ipadapter", "instantid", os.path.join("insightface", "models"), "photomaker", "pulid"]


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """folder_paths pointed at a fresh models/ (its registry copied, so nothing leaks into other tests)."""
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    root = tmp_path / "models"
    monkeypatch.setattr(folder_paths, "models_dir", str(root))
    return root


def test_registering_the_folders_makes_the_missing_ones(models_dir):
    models_dir.mkdir()
    (models_dir / "ipadapter").mkdir()
    (models_dir / "ipadapter" / "mine.safetensors").write_bytes(b"kept")
    folders.register_model_folders()
    missing = [name for name in MADE if not (models_dir / name).is_dir()]
    assert not missing, f"not made under {models_dir}: {missing}"
    assert (models_dir / "ipadapter" / "mine.safetensors").read_bytes() == b"kept"
    assert str(models_dir / "ipadapter") in folder_paths.get_folder_paths("ipadapter")
    folders.register_model_folders()                      # again: nothing to do, no error


def test_a_models_dir_that_cannot_be_written_is_no_error(models_dir):
    models_dir.write_text("a file where models/ should be")   # makedirs raises an OSError under it, even for root
    folders.register_model_folders()
    assert str(models_dir / "pulid") in folder_paths.get_folder_paths("pulid")
