"""IDM-VTON's two UNets with random weights, written as diffusers folders exactly as the release lays them out:
`unet/` (config.json with in_channels 13 and encoder_hid_dim_type "ip_image_proj"; weights with
`encoder_hid_proj.*` (IP-Adapter-plus Resampler) and `<attn2>.processor.to_k_ip/to_v_ip.weight`) and
`unet_encoder/` (addition_embed_type null, yet SDXL's add_embedding weights still in the file, as the release
has them). Widths are the tiny SDXL's; the block structure is SDXL's. The diffusers modules built here are the
test-only reference the converted models are compared with.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import ipadapter_files, tiny_models

CLIP_HIDDEN = 1280             # ViT-H penultimate hidden states, what IDM-VTON's image encoder gives
RESAMPLER_DIM = 128            # 1280 in the release; the layout does not depend on it
WEIGHTS = "diffusion_pytorch_model.safetensors"


def diffusers_config(in_channels: int = 13, garment: bool = False) -> dict:
    """The release's config.json fields, tiny SDXL widths (8 channels per head)."""
    widths = [tiny_models.TINY_CHANNELS * m for m in (1, 2, 4)]
    head = tiny_models.TinySDXL.unet_extra_config["num_head_channels"]
    config = {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.25.0.dev0", "act_fn": "silu",
        "addition_embed_type": None if garment else "text_time", "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256, "attention_head_dim": [w // head for w in widths],
        "block_out_channels": widths, "center_input_sample": False, "class_embed_type": None,
        "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3,
        "cross_attention_dim": tiny_models.TINY_SDXL_CONTEXT, "cross_attention_norm": None,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1, "dual_cross_attention": False, "encoder_hid_dim": None,
        "encoder_hid_dim_type": None, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": in_channels,
        "layers_per_block": 2, "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
        "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
        "projection_class_embeddings_input_dim": tiny_models.TINY_SDXL_ADM, "resnet_out_scale_factor": 1.0,
        "resnet_skip_time_act": False, "resnet_time_scale_shift": "default", "sample_size": 128,
        "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
        "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": None,
        "use_linear_projection": True,
    }
    if not garment and in_channels == 13:
        config.update(encoder_hid_dim=CLIP_HIDDEN, encoder_hid_dim_type="ip_image_proj")
    return config


def diffusers_unet(config: dict, seed: int, adm: bool | None = None):
    """A vanilla diffusers UNet for `config` (the IDM-VTON-only fields dropped), random unit-scale weights."""
    from diffusers import UNet2DConditionModel

    kwargs = {k: v for k, v in config.items() if not k.startswith("_") and not k.startswith("encoder_hid_dim")}
    if adm:
        kwargs["addition_embed_type"] = "text_time"
    unet = UNet2DConditionModel(**kwargs)
    tiny_models.randomize(unet, seed)
    return unet.eval()


def attn2_names(unet) -> list[str]:
    """The cross-attention processors in diffusers' processor order."""
    return [n for n in unet.attn_processors if n.endswith("attn2.processor")]


def image_prompt(unet, seed: int = 3) -> tuple[dict, dict]:
    """(encoder_hid_proj weights, {attn2 processor name: (to_k_ip, to_v_ip)}) for a try-on UNet."""
    ctx = unet.config.cross_attention_dim
    proj = ipadapter_files.image_proj("resampler", seed=seed, cross=ctx, clip_hidden=CLIP_HIDDEN,
                                      resampler_dim=RESAMPLER_DIM)
    r = ipadapter_files.Randn(seed + 1)
    layers = {}
    for name in attn2_names(unet):
        width = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
        layers[name] = (r(width, ctx), r(width, ctx))
    return proj, layers


def as_ipadapter_dicts(proj: dict, layers: dict, unet) -> dict:
    """The same image prompt in IP-Adapter's file layout (processor 2n+1), for diffusers' own IP loader."""
    ip = {}
    for i, name in enumerate(attn2_names(unet)):
        ip[f"{2 * i + 1}.to_k_ip.weight"], ip[f"{2 * i + 1}.to_v_ip.weight"] = layers[name]
    return {"image_proj": proj, "ip_adapter": ip}


def _write(folder: Path, config: dict, sd: dict, dtype) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, str(folder / WEIGHTS))
    return folder / WEIGHTS


def write_release(root: Path, seed: int = 0, dtype=torch.float32, tryon_channels: int = 13) -> dict:
    """root/unet and root/unet_encoder as IDM-VTON ships them. Returns the paths and the diffusers modules."""
    tryon_config = diffusers_config(tryon_channels)
    tryon = diffusers_unet(tryon_config, seed)
    proj, layers = image_prompt(tryon, seed + 3)
    sd = dict(tryon.state_dict())
    sd.update({f"encoder_hid_proj.{k}": v for k, v in proj.items()})
    for name, (k, v) in layers.items():
        sd[f"{name}.to_k_ip.weight"], sd[f"{name}.to_v_ip.weight"] = k, v
    tryon_path = _write(Path(root) / "unet", tryon_config, sd, dtype)

    garment_config = diffusers_config(4, garment=True)
    garment_full = diffusers_unet(garment_config, seed + 7, adm=True)      # trained from SDXL base: add_embedding kept
    garment_path = _write(Path(root) / "unet_encoder", garment_config, garment_full.state_dict(), dtype)
    garment = diffusers_unet(garment_config, seed + 7)
    garment.load_state_dict(garment_full.state_dict(), strict=False)
    return {"tryon": tryon_path, "garment": garment_path, "tryon_unet": tryon, "garment_unet": garment,
            "image_prompt": as_ipadapter_dicts(proj, layers, tryon)}
