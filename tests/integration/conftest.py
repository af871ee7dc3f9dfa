import pytest


@pytest.fixture(scope="session")
def tiny():
    from support import tiny_models

    tiny_models.register()
    return tiny_models


@pytest.fixture
def model_folder(monkeypatch):
    """add_model_folder_path for one test: undone after it, because the test's tmp_path goes with it and ComfyUI's
    file-list cache stats every folder it once listed."""
    import folder_paths

    def register(kind: str, path) -> None:
        paths, extensions = folder_paths.folder_names_and_paths[kind]
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, ([*paths, str(path)], extensions))
        monkeypatch.delitem(folder_paths.filename_list_cache, kind, raising=False)

    return register
