"""diffusers as a test-only reference: a UNet2DConditionModel with the same weights as a ComfyUI UNet
(mapped by ComfyUI's own diffusers key table), optionally with an IP-Adapter loaded by diffusers' loader."""
from __future__ import annotations

import torch

import comfy.utils

from . import tiny_models


def diffusers_config(name: str) -> dict:
    _, unet = tiny_models.MODELS[name]
    ch = unet["model_channels"]
    mult = unet["channel_mult"]
    if name.endswith("sd15"):
        return dict(sample_size=8, layers_per_block=2, block_out_channels=tuple(ch * m for m in mult),
                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                    cross_attention_dim=unet["context_dim"], attention_head_dim=unet["num_heads"])
    heads_ch = tiny_models.TinySDXL.unet_extra_config["num_head_channels"] if name.startswith("tiny") else 64
    return dict(sample_size=8, layers_per_block=2, block_out_channels=tuple(ch * m for m in mult),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10), cross_attention_dim=unet["context_dim"],
                attention_head_dim=tuple(ch * m // heads_ch for m in mult), use_linear_projection=True,
                addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=unet["adm_in_channels"])


def diffusers_unet(name: str, comfy_model) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**diffusers_config(name))
    _, unet_config = tiny_models.MODELS[name]
    to_comfy = comfy.utils.unet_to_diffusers(dict(unet_config))
    comfy_sd = comfy_model.model.diffusion_model.state_dict()
    sd = {k: comfy_sd[to_comfy[k]] for k in unet.state_dict()}
    unet.load_state_dict(sd, strict=True)
    return unet.eval()


def load_ip_adapter(unet, image_proj: dict, ip_adapter: dict, scale: float = 1.0):
    unet._load_ip_adapter_weights([{"image_proj": image_proj, "ip_adapter": ip_adapter}], low_cpu_mem_usage=False)
    for proc in unet.attn_processors.values():
        if hasattr(proc, "scale"):
            proc.scale = [scale]
    return unet
