import pytest

from support.server import ComfyServer


def write_png(path, seed=0, size=(96, 64)):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Temporary model folders with tiny checkpoints in the original SD layout."""
    from comfyui_infuse.mechanisms.sites import model_sites
    from support import clip_models, ipadapter_files, tiny_models

    root = tmp_path_factory.mktemp("models")
    dirs = {name: root / name for name in ("checkpoints", "ipadapter", "instantid", "insightface", "clip_vision",
                                           "controlnet")}
    for d in dirs.values():
        d.mkdir()
    tiny_models.write_checkpoint(dirs["checkpoints"] / "tiny_sd15.safetensors", "tiny_sd15", seed=0)
    tiny_models.write_checkpoint(dirs["checkpoints"] / "tiny_sd21.safetensors", "tiny_sd21", seed=0)
    # a real-size ViT-H CLIP vision file (ComfyUI's CLIPVisionLoader only knows real sizes) and an IP-Adapter in
    # the real layout whose image side is ViT-H's and whose token side is the tiny model's context width
    clip_models.write_vit_h(dirs["clip_vision"] / "vit_h_random.safetensors")
    sites = model_sites(tiny_models.build_model("tiny_sd15"), "e2e")
    ctx = tiny_models.MODELS["tiny_sd15"][1]["context_dim"]
    ipadapter_files.write(dirs["ipadapter"] / "tiny_sd15_ip-adapter.safetensors",
                          ipadapter_files.image_proj("linear", cross=ctx, clip_pooled=1024),
                          ipadapter_files.ip_layers([s.inner_dim for s in sites], ctx))
    ipadapter_files.write(dirs["ipadapter"] / "tiny_sd15_ip-adapter-plus.bin",
                          ipadapter_files.image_proj("resampler", cross=ctx, clip_hidden=1280, resampler_dim=128),
                          ipadapter_files.ip_layers([s.inner_dim for s in sites], ctx))
    return dirs


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_dirs):
    srv = ComfyServer(tmp_path_factory.mktemp("comfy"), model_dirs)
    write_png(srv.base / "input" / "reference.png", seed=1)
    srv.start()
    yield srv
    srv.stop()
