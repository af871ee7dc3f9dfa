import os

import pytest
import torch

from support.server import ComfyServer


def write_png(path, array=None, seed=0, size=(96, 64)):
    import numpy as np
    from PIL import Image

    if array is None:
        array = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Temporary model folders with random-weight files in the real layouts. The shipped workflows' example
    file names are used for them, so the workflows run as shipped (only image sizes and steps shrink)."""
    from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
    from support import clip_models, face_models, ipadapter_files, tiny_models, tryon_files

    root = tmp_path_factory.mktemp("models")
    dirs = {name: root / name for name in ("checkpoints", "ipadapter", "instantid", "insightface", "clip_vision",
                                           "controlnet", "diffusion_models")}
    for d in dirs.values():
        d.mkdir()
    ckpt = dirs["checkpoints"]
    tiny_models.write_checkpoint(ckpt / "tiny_sd15.safetensors", "tiny_sd15", seed=0)
    tiny_models.write_checkpoint(ckpt / "tiny_sdxl.safetensors", "tiny_sdxl", seed=0)
    tiny_models.write_checkpoint(ckpt / "tiny_sd21.safetensors", "tiny_sd21", seed=0)
    os.link(ckpt / "tiny_sd15.safetensors", ckpt / "v1-5-pruned-emaonly.safetensors")
    os.link(ckpt / "tiny_sdxl.safetensors", ckpt / "sd_xl_base_1.0.safetensors")
    # ComfyUI's CLIPVisionLoader only knows real sizes: a real-size ViT-H with random weights
    clip_models.write_vit_h(dirs["clip_vision"] / "vit_h_random.safetensors")
    os.link(dirs["clip_vision"] / "vit_h_random.safetensors",
            dirs["clip_vision"] / "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors")
    # adapters in the published layouts: image side as published (ViT-H: 1024 pooled / 1280 hidden), token side
    # the tiny models' context width
    for name, ipa_name in (("tiny_sd15", "ip-adapter_sd15.safetensors"), ("tiny_sdxl", "ip-adapter_sdxl_vit-h.safetensors")):
        sites = model_sites(tiny_models.build_model(name))
        ctx = tiny_models.MODELS[name][1]["context_dim"]
        widths = [s.inner_dim for s in sites]
        ipadapter_files.write(dirs["ipadapter"] / ipa_name,
                              ipadapter_files.image_proj("linear", cross=ctx, clip_pooled=1024),
                              ipadapter_files.ip_layers(widths, ctx))
        if name == "tiny_sd15":
            os.link(dirs["ipadapter"] / ipa_name, dirs["ipadapter"] / "tiny_sd15_ip-adapter.safetensors")
            ipadapter_files.write(dirs["ipadapter"] / "tiny_sd15_ip-adapter-plus.bin",
                                  ipadapter_files.image_proj("resampler", cross=ctx, clip_hidden=1280,
                                                             resampler_dim=128),
                                  ipadapter_files.ip_layers(widths, ctx))
        else:   # InstantID's ip-adapter.bin: Resampler 512 -> 16 tokens, 70 cross-attention layers
            ipadapter_files.write(dirs["instantid"] / "ip-adapter.bin",
                                  ipadapter_files.image_proj("resampler", cross=ctx, clip_hidden=512,
                                                             resampler_dim=128),
                                  ipadapter_files.ip_layers(widths, ctx, seed=9))
    (dirs["controlnet"] / "instantid").mkdir()
    tiny_models.write_controlnet(dirs["controlnet"] / "instantid" / "diffusion_pytorch_model.safetensors", "tiny_sdxl")
    face_models.write_pack(dirs["insightface"], "antelopev2")
    tryon_files.write_release(dirs["diffusion_models"] / "IDM-VTON", seed=0, dtype=torch.float16)
    return dirs


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_dirs):
    from support import face_models

    srv = ComfyServer(tmp_path_factory.mktemp("comfy"), model_dirs)
    write_png(srv.base / "input" / "reference.png", seed=1)
    write_png(srv.base / "input" / "style.png", seed=2)
    write_png(srv.base / "input" / "face.png", face_models.face_image([(9, 8)], 640, 640))
    write_png(srv.base / "input" / "no_face.png", face_models.face_image([], 640, 640))
    write_png(srv.base / "input" / "person.png", seed=3, size=(192, 256))
    write_png(srv.base / "input" / "garment.png", seed=4, size=(160, 200))
    write_png(srv.base / "input" / "densepose.png", seed=5, size=(96, 128))
    srv.start()
    yield srv
    srv.stop()
