import pytest

from support.server import ComfyServer


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Temporary model folders with tiny checkpoints in the original SD layout."""
    from support import tiny_models

    root = tmp_path_factory.mktemp("models")
    dirs = {name: root / name for name in ("checkpoints", "ipadapter", "instantid", "insightface", "clip_vision",
                                           "controlnet")}
    for d in dirs.values():
        d.mkdir()
    tiny_models.write_checkpoint(dirs["checkpoints"] / "tiny_sd15.safetensors", "tiny_sd15", seed=0)
    tiny_models.write_checkpoint(dirs["checkpoints"] / "tiny_sd21.safetensors", "tiny_sd21", seed=0)
    return dirs


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_dirs):
    srv = ComfyServer(tmp_path_factory.mktemp("comfy"), model_dirs)
    srv.start()
    yield srv
    srv.stop()
