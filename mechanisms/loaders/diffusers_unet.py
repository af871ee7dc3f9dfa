"""Diffusers-format UNets (a `unet/` folder with config.json, or a single file with diffusers keys) read into
ComfyUI's UNet layout: the diffusers config translated into ComfyUI's `unet_config`, the keys mapped with
ComfyUI's own table (`comfy.utils.unet_to_diffusers`), the model built and placed by ComfyUI's model management.

The caller picks the ComfyUI model class (`config_cls`, a `supported_models` subclass) and gets the weights the
UNet did not take (IDM-VTON keeps its image projection and IP attention weights in the UNet file).
"""
from __future__ import annotations

import glob
import json
import os
import re

import torch

from ...core.errors import InfuseError
from ...core.files import load_weights

SDXL_HEAD_CHANNELS = 64          # SDXL's attention_head_dim [5, 10, 20] over widths [320, 640, 1280]
_SHARD = re.compile(r"^(?P<stem>.+)-\d{5}-of-(?P<total>\d{5})(?P<ext>\.safetensors|\.bin)$")


# --- reading ------------------------------------------------------------------------------------------
def read_weights(path: str, input_name: str) -> dict[str, torch.Tensor]:
    """One file, or every shard of a sharded diffusers checkpoint when `path` is one of its shards."""
    m = _SHARD.match(os.path.basename(path))
    if not m:
        return load_weights(path, input_name)
    pattern = os.path.join(os.path.dirname(path), f"{glob.escape(m['stem'])}-*-of-{m['total']}{m['ext']}")
    shards = sorted(glob.glob(pattern))
    if len(shards) != int(m["total"]):
        raise InfuseError(f"'{os.path.basename(path)}' is one of {int(m['total'])} shards but "
                          f"{len(shards)} are in its folder.",
                          "download every shard of the model into the same folder.", input_name=input_name)
    sd: dict[str, torch.Tensor] = {}
    for shard in shards:
        sd.update(load_weights(shard, input_name))
    return sd


def read_config(path: str) -> dict | None:
    """The diffusers config of a weights file: `config.json` in its folder, or `<file stem>.json` beside it."""
    folder, name = os.path.split(path)
    stem = _SHARD.match(name)["stem"] if _SHARD.match(name) else name.split(".")[0]
    for candidate in (os.path.join(folder, "config.json"), os.path.join(folder, stem + ".json")):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                return json.load(f)
    return None


def _count(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def infer_config(sd: dict) -> dict:
    """A diffusers UNet config read off the weights' keys and shapes. Attention heads are not in the weights:
    SDXL's 64 channels per head is assumed (true of SDXL and of every UNet derived from it)."""
    levels = _count(sd, "down_blocks.")
    widths = [sd[f"down_blocks.{i}.resnets.0.conv2.weight"].shape[0] for i in range(levels)]
    depth = [_count(sd, f"down_blocks.{i}.attentions.0.transformer_blocks.") for i in range(levels)]
    up_depth = [_count(sd, f"up_blocks.{i}.attentions.0.transformer_blocks.") for i in range(levels)]
    to_k = next(v for k, v in sd.items() if k.endswith("attn2.to_k.weight"))
    proj_in = next(v for k, v in sd.items() if k.endswith("attentions.0.proj_in.weight"))
    config = {
        "in_channels": sd["conv_in.weight"].shape[1], "out_channels": sd["conv_out.weight"].shape[0],
        "block_out_channels": widths, "layers_per_block": _count(sd, "down_blocks.0.resnets."),
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depth],
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in up_depth],
        "transformer_layers_per_block": [d or 1 for d in depth],
        "reverse_transformer_layers_per_block": [d or 1 for d in up_depth],
        "mid_block_layers": _count(sd, "mid_block.attentions.0.transformer_blocks."),
        "attention_head_dim": [w // SDXL_HEAD_CHANNELS for w in widths],
        "use_linear_projection": proj_in.ndim == 2, "cross_attention_dim": to_k.shape[1],
        "addition_embed_type": None, "projection_class_embeddings_input_dim": None,
    }
    if "add_embedding.linear_1.weight" in sd:
        config["addition_embed_type"] = "text_time"
        config["projection_class_embeddings_input_dim"] = sd["add_embedding.linear_1.weight"].shape[1]
    return config


# --- translating --------------------------------------------------------------------------------------
def _per_level(value, levels: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * levels


def comfy_unet_config(config: dict, use_adm: bool = True) -> dict:
    """ComfyUI's unet_config for a diffusers UNet2DConditionModel config (SD1.5 / SDXL-style UNets)."""
    widths = list(config["block_out_channels"])
    levels = len(widths)
    blocks = _per_level(config.get("layers_per_block", 2), levels)
    down_cross = ["CrossAttn" in t for t in config["down_block_types"]]
    up_cross = ["CrossAttn" in t for t in config["up_block_types"]]
    depth = _per_level(config.get("transformer_layers_per_block", 1), levels)
    up_depth = config.get("reverse_transformer_layers_per_block") or list(reversed(depth))
    up_depth = _per_level(up_depth, levels)
    heads = _per_level(config.get("num_attention_heads") or config.get("attention_head_dim") or 8, levels)
    unet = {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "in_channels": config.get("in_channels", 4), "out_channels": config.get("out_channels", 4),
        "model_channels": widths[0], "num_res_blocks": blocks,
        "channel_mult": [w // widths[0] for w in widths],
        "transformer_depth": [d if cross else 0 for d, cross, n in zip(depth, down_cross, blocks) for _ in range(n)],
        "transformer_depth_output": [d if cross else 0 for d, cross, n in zip(up_depth, up_cross, reversed(blocks))
                                     for _ in range(n + 1)][::-1],
        "transformer_depth_middle": config.get("mid_block_layers", depth[-1]),
        "use_linear_in_transformer": bool(config.get("use_linear_projection", False)),
        "context_dim": config["cross_attention_dim"],
        "use_temporal_attention": False, "use_temporal_resblock": False,
    }
    head_channels = {w // h for w, h, cross in zip(widths, heads, down_cross) if cross}
    if len(set(heads)) == 1:
        unet.update(num_heads=heads[0], num_head_channels=-1)
    elif len(head_channels) == 1:
        unet.update(num_heads=-1, num_head_channels=head_channels.pop())
    else:
        raise ValueError(f"attention heads {heads} over widths {widths} are neither a fixed count nor a fixed width")
    if use_adm and config.get("addition_embed_type") == "text_time":
        unet.update(num_classes="sequential", adm_in_channels=config["projection_class_embeddings_input_dim"])
    else:
        unet["adm_in_channels"] = None
    return unet


# --- building -----------------------------------------------------------------------------------------
def build_unet(sd: dict, unet_config: dict, config_cls, input_name: str, dtype=None):
    """A ModelPatcher around `config_cls`'s model with the diffusers weights `sd` mapped in. Returns
    (patcher, the weights the UNet did not take). Every UNet weight must be in the file."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils

    to_comfy = comfy.utils.unet_to_diffusers(unet_config)
    model_config = config_cls(unet_config)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    if dtype is None:
        dtype = mm.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                              supported_dtypes=list(model_config.supported_inference_dtypes),
                              weight_dtype=comfy.utils.weight_dtype(sd))
    model_config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device,
                                                                model_config.supported_inference_dtypes))
    model = model_config.get_model({}, "")
    shapes = {k: v.shape for k, v in model.diffusion_model.state_dict().items()}     # once: it walks every module
    wanted = set(shapes)
    comfy_sd, used = {}, set()
    for diffusers_key, comfy_key in to_comfy.items():
        if diffusers_key in sd and comfy_key in wanted:
            comfy_sd[comfy_key] = sd[diffusers_key]
            used.add(diffusers_key)
    missing = sorted(wanted - set(comfy_sd))
    if missing:
        raise InfuseError(f"the UNet file lacks {len(missing)} of the {len(wanted)} weights its config "
                          f"implies (first: {missing[0]}).",
                          "the file is incomplete or its config.json belongs to another model; download the "
                          "UNet folder again.", input_name=input_name)
    mismatched = [k for k, v in comfy_sd.items() if shapes[k] != v.shape]
    if mismatched:
        raise InfuseError(f"{len(mismatched)} UNet weights do not have the shapes its config implies "
                          f"(first: {mismatched[0]}).",
                          "use the config.json that came with this UNet file.", input_name=input_name)
    model = model.to(offload_device)
    model.load_model_weights(comfy_sd, "")
    rest = {k: v for k, v in sd.items() if k not in used}
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device), rest
