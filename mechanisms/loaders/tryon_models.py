"""IDM-VTON's two UNets as ComfyUI models.

- TryonNet: an SDXL inpainting UNet with 13 input channels (noisy latent 4, mask 1, masked person latent 4,
  pose latent 4). Its file also holds its image prompt: the IP-Adapter-plus Resampler as `encoder_hid_proj.*`
  and `to_k_ip` / `to_v_ip` on every cross-attention processor (`<block>.attn2.processor.to_k_ip.weight`).
  Those become an `IPAdapterModel`, applied through the same decoupled cross-attention as IP-Adapter.
- GarmentNet: an SDXL UNet run on the clean garment latent without size conditioning (IDM-VTON trains it with
  `addition_embed_type=None`; the file may still carry SDXL's unused `add_embedding` weights).

The mask / masked image / pose channels reach the UNet through ComfyUI's concat conditioning (`c_concat`):
`TryOnModel.concat_cond` reads the tensor the try-on node stores in the conditioning under CONCAT_KEY.
"""
from __future__ import annotations

import os
import re

import comfy.model_base
import comfy.supported_models as sm
import comfy.utils
import torch

from ...core.errors import InfuseError
from ..decoupled_attention.adapter import IPAdapterModel
from ..decoupled_attention.projections import projection_from_state_dict
from ..patching.surfaces.unet import discover_sites
from .diffusers_unet import build_unet, comfy_unet_config, infer_config, read_config, read_weights

TRYON_CHANNELS = 13
CONCAT_KEY = "infuse_tryon_concat"        # conditioning key: [1, 9, h, w] = mask, masked person, pose latents
APPLY_NODE = "Infuse Try-On"             # named in errors found while sampling, where no node is running
_IP_KEY = re.compile(r"^(?P<path>.+\.attn2)\.processor\.to_(?P<kv>[kv])_ip\.weight$")


class TryOnModel(comfy.model_base.SDXL):
    def concat_cond(self, **kwargs):
        concat = kwargs.get(CONCAT_KEY)
        noise = kwargs["noise"]
        if concat is None:
            raise InfuseError("the try-on UNet was sampled with conditioning that has no mask, masked "
                              "person and pose (its 9 extra input channels).",
                              "pass the positive and negative conditioning through Infuse Try-On before the "
                              "sampler.", input_name="positive", node=APPLY_NODE)
        if concat.shape[-2:] != noise.shape[-2:]:
            raise InfuseError(f"the latent being sampled is {noise.shape[-1] * 8}x{noise.shape[-2] * 8} "
                              f"but the try-on conditioning was made for "
                              f"{concat.shape[-1] * 8}x{concat.shape[-2] * 8}.",
                              "sample the latent output of Infuse Try-On.", input_name="person", node=APPLY_NODE)
        return comfy.utils.resize_to_batch_size(concat, noise.shape[0]).to(kwargs["device"])


class TryOnSDXL(sm.SDXL):
    unet_extra_config = {}

    def get_model(self, state_dict, prefix="", device=None):
        return TryOnModel(self, model_type=self.model_type(state_dict, prefix), device=device)


class GarmentSDXL(sm.SDXL):
    """SDXL's latent format and schedule, no size conditioning (`BaseModel` has no `y`)."""
    unet_extra_config = {}

    def get_model(self, state_dict, prefix="", device=None):
        return comfy.model_base.BaseModel(self, model_type=self.model_type(state_dict, prefix), device=device)


def _read(path: str, input_name: str) -> tuple[dict, dict]:
    sd = read_weights(path, input_name)
    if "conv_in.weight" not in sd or not any(k.startswith("down_blocks.") for k in sd):
        hint = ("it is in ComfyUI's checkpoint layout" if any("input_blocks." in k for k in sd)
                else "it is not a UNet")
        raise InfuseError(f"'{os.path.basename(path)}' is not a diffusers-format UNet ({hint}).",
                          "choose the diffusion_pytorch_model.safetensors of IDM-VTON's unet/ or unet_encoder/ "
                          "folder (with its config.json beside it).", input_name=input_name)
    return sd, read_config(path) or infer_config(sd)


def _unet_config(config: dict, path: str, input_name: str, use_adm: bool) -> dict:
    try:
        return comfy_unet_config(config, use_adm=use_adm)
    except (KeyError, ValueError, TypeError, ZeroDivisionError) as e:
        raise InfuseError(f"the config of '{os.path.basename(path)}' is not a UNet2DConditionModel "
                          f"config this pack can translate ({e}).",
                          "use the config.json that came with the UNet.", input_name=input_name) from e


def tryon_adapter(rest: dict, model, name: str, input_name: str) -> IPAdapterModel:
    """The image prompt carried by the try-on UNet file, as an IP-Adapter over the model's sites."""
    image_proj = {k[len("encoder_hid_proj."):]: v for k, v in rest.items() if k.startswith("encoder_hid_proj.")}
    to_comfy = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    per_path: dict[str, dict[str, torch.Tensor]] = {}
    for key, weight in rest.items():
        m = _IP_KEY.match(key)
        if m:
            comfy_key = to_comfy.get(f"{m['path']}.to_{m['kv']}.weight", "")
            per_path.setdefault(comfy_key.rsplit(".attn2.", 1)[0], {})[m["kv"]] = weight
    sites = discover_sites(model.model.diffusion_model)
    if not image_proj or any(set(per_path.get(s.path, {})) != {"k", "v"} for s in sites):
        raise InfuseError(f"'{name}' has no image prompt weights for every cross-attention "
                          f"({len(per_path)} of {len(sites)} layers, projection "
                          f"{'present' if image_proj else 'missing'}).",
                          "use IDM-VTON's unet/ (the try-on UNet); its file holds encoder_hid_proj and the IP "
                          "attention weights.", input_name=input_name)
    kind, projection = projection_from_state_dict(image_proj)
    kv = {n: (per_path[s.path]["k"], per_path[s.path]["v"]) for n, s in enumerate(sites)}
    return IPAdapterModel(name=f"{name} (image prompt)", family="sdxl", variant="plus", projection_kind=kind,
                          projection=projection, image_input="hidden",
                          image_dim=image_proj["proj_in.weight"].shape[1],
                          cross_dim=image_proj["norm_out.weight"].shape[0], kv=kv)


def load_tryon_unet(path: str, input_name: str = "tryon_unet", dtype=None):
    """(ModelPatcher of the 13-channel try-on UNet, its image-prompt adapter)."""
    name = os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)
    sd, config = _read(path, input_name)
    channels = sd["conv_in.weight"].shape[1]
    if channels != TRYON_CHANNELS:
        raise InfuseError(f"'{name}' takes {channels} input channels; IDM-VTON's try-on UNet takes 13 "
                          "(latent, mask, masked person, pose).",
                          "choose IDM-VTON's unet/ here (a garment UNet or an ordinary SDXL UNet goes elsewhere).",
                          input_name=input_name)
    unet_config = _unet_config(config, path, input_name, use_adm=True)
    if unet_config.get("adm_in_channels") is None:
        raise InfuseError(f"'{name}' has no SDXL size conditioning (add_embedding).",
                          "choose IDM-VTON's unet/ (an SDXL inpainting UNet).", input_name=input_name)
    model, rest = build_unet(sd, unet_config, TryOnSDXL, input_name, dtype)
    adapter = tryon_adapter(rest, model, name, input_name)
    model.model.infuse_tryon_adapter = adapter        # shared by every clone of the patcher
    return model, adapter


def load_garment_unet(path: str, input_name: str = "garment_unet", dtype=None):
    """ModelPatcher of the garment UNet (no size conditioning)."""
    sd, config = _read(path, input_name)
    channels = sd["conv_in.weight"].shape[1]
    if channels != 4:
        raise InfuseError(f"'{os.path.basename(path)}' takes {channels} input channels; the garment UNet "
                          "runs on a plain 4-channel latent.",
                          "choose IDM-VTON's unet_encoder/ here (the 13-channel unet/ is the try-on UNet).",
                          input_name=input_name)
    model, _ = build_unet(sd, _unet_config(config, path, input_name, use_adm=False), GarmentSDXL, input_name, dtype)
    return model
