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


# e2e modules -> the large file families they use; a run of other e2e modules only (the face tests again under
# insightface 0.7.3) does not write them. The editor, widget and every-workflow checks need every file named.
EVERY_WORKFLOW = {"test_editor", "test_workflow_widgets", "test_server"}
FAMILY_USERS = {"flux": {"test_flux_workflows", "test_pulid_workflows"} | EVERY_WORKFLOW,
                "pulid": {"test_pulid_workflows"} | EVERY_WORKFLOW,
                "photomaker": {"test_photomaker_workflows"} | EVERY_WORKFLOW}


def families_needed(session) -> set[str]:
    modules = {item.module.__name__.rsplit(".", 1)[-1] for item in session.items}
    return {family for family, users in FAMILY_USERS.items() if users & modules}


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, request):
    """Temporary model folders with random-weight files in the real layouts. The shipped workflows' example
    file names are used for them, so the workflows run as shipped (only image sizes and steps shrink; the Flux
    workflows' text encoders are placeholders, replaced in the runs: see write_flux_files)."""
    from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
    from support import clip_models, face_models, ipadapter_files, tiny_models, tryon_files

    root = tmp_path_factory.mktemp("models")
    dirs = {name: root / name for name in ("checkpoints", "ipadapter", "instantid", "insightface", "clip_vision",
                                           "controlnet", "diffusion_models", "vae", "text_encoders", "style_models",
                                           "pulid", "facexlib", "photomaker")}
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
    families = families_needed(request.session)
    if "flux" in families:
        write_flux_files(dirs)
    if "pulid" in families:
        write_pulid_files(dirs)
    if "photomaker" in families:
        write_photomaker_files(dirs)
    return dirs


def write_flux_files(dirs: dict) -> None:
    """The shipped Flux workflows' files (~3 GB, ~35 s on 2 CPU cores), at the sizes ComfyUI's loaders detect:
    a Flux dev of the real width with 1 double + 1 single block, the Flux VAE, Redux, a real-size CLIP ViT-L/14
    and SigLIP so400m-384, and an XLabs v2 adapter (16 tokens) for that one double block. The text encoders are
    placeholders that only fill DualCLIPLoader's lists: no T5-XXL can be written small, so the e2e runs replace
    the text encoding by a test node (support.workflow_edits.flux_text_for_tests)."""
    from support import clip_models, flux_adapter_files, flux_files

    flux_files.write_flux_dev(dirs["diffusion_models"] / "flux1-dev.safetensors")
    flux_files.write_flux_vae(dirs["vae"] / "ae.safetensors")
    flux_files.write_redux(dirs["style_models"] / "flux1-redux-dev.safetensors")
    for name in ("clip_l.safetensors", "t5xxl_fp16.safetensors"):
        flux_files.write_text_encoder_placeholder(dirs["text_encoders"] / name)
    clip_models.write_vit_l(dirs["clip_vision"] / "clip-vit-large-patch14.safetensors")
    clip_models.write_siglip_384(dirs["clip_vision"] / "sigclip_vision_patch14_384.safetensors")
    flux_adapter_files.write_xlabs(dirs["ipadapter"] / "flux-ip-adapter-v2.safetensors",
                                   flux_adapter_files.xlabs(block_width=3072, n_double=1, tokens=16,
                                                            dtype=torch.float16))


def write_pulid_files(dirs: dict) -> None:
    """The shipped PuLID workflows' files: PuLID SDXL v1.1 and v1 for the tiny SDXL's cross-attentions (the ID
    encoders at their real sizes), PuLID-Flux v0.9.1 with the 2 CA layers the 1 + 1-block Flux has (after double
    block 0 and single block 0) at Flux's real width, EVA02-CLIP-L-14-336 at its real size in EVA-CLIP's own checkpoint
    layout (fp16 .pt, ~600 MB), and facexlib's BiSeNet."""
    from safetensors.torch import save_file

    from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
    from support import eva_files, face_parsing_files, pulid_files, tiny_models

    def flat(prefix, sd, dtype):
        return {f"{prefix}{k}": v.to(dtype).contiguous() for k, v in sd.items()}

    widths = [s.inner_dim for s in model_sites(tiny_models.build_model("tiny_sdxl"))]
    layers = flat("", pulid_files.sdxl_layers(widths), torch.float16)
    save_file(flat("id_adapter.", pulid_files.id_former(seed=1), torch.float16) | layers,
              str(dirs["pulid"] / "pulid_v1.1.safetensors"))
    torch.save(flat("id_adapter.", pulid_files.id_encoder(seed=0), torch.float32) | layers, dirs["pulid"] / "pulid_v1.bin")
    save_file(flat("pulid_encoder.", pulid_files.id_former(seed=2), torch.bfloat16) |
              flat("", pulid_files.flux_ca(2, 3072), torch.bfloat16),
              str(dirs["pulid"] / "pulid_flux_v0.9.1.safetensors"))
    eva_files.write_eva02_l_336(dirs["clip_vision"] / "EVA02_CLIP_L_336_psz14_s6B.pt")
    face_parsing_files.write_bisenet(dirs["facexlib"] / "parsing_bisenet.pth")


def write_photomaker_files(dirs: dict) -> None:
    """PhotoMaker v2 as published (`photomaker-v2.bin`: the real ViT-L/14 tower, the ArcFace perceiver, a LoRA on
    every attention of the UNet) with the projections / fuse module at the tiny SDXL's text widths (as the IP-Adapter
    files here have the tiny models' token side); a v1 file beside it (a 2-layer tower: only its version is used, by
    a fault); the buffalo_l pack the reference takes the ArcFace embedding from."""
    import comfy.sd

    from support import face_models, tiny_models
    from support import photomaker_files as pf

    tiny_models.register()
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(dirs["checkpoints"] / "tiny_sdxl.safetensors"),
                                                              output_vae=False)
    cond, _ = clip.encode_from_tokens(clip.tokenize("x"), return_pooled=True)
    l_width = clip.cond_stage_model.clip_l.transformer.text_model.embeddings.token_embedding.weight.shape[1]
    projections = (l_width, cond.shape[-1] - l_width)
    lora = {k: v.half() for k, v in pf.lora_weights(pf.diffusers_attention_paths(model), rank=4, seed=1).items()}
    v2 = {k: v.half() for k, v in pf.id_encoder_v2(seed=3, projections=projections).items()}
    pf.write(dirs["photomaker"] / "photomaker-v2.bin", v2, lora)
    pf.write(dirs["photomaker"] / "photomaker-v1.bin", pf.id_encoder_v1(seed=2, layers=2, projections=projections),
             lora)
    face_models.write_pack(dirs["insightface"], "buffalo_l")


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
