"""An IP-Adapter file read into an IPAdapterModel: its projection model, its per-site K/V weights, its variant.

The variant is read from keys and shapes, never from the file name:
- base model: the number of cross-attention layers in `ip_adapter` (16 -> SD1.5, 70 -> SDXL);
- projection: the `image_proj` layout (see projections.py);
- what the projection eats: pooled CLIP embeds, CLIP penultimate hidden states, a face embedding, or both;
- FaceID LoRA: present or not (`*_lora.down/up` keys on every attention processor).
Flux files (XLabs, InstantX) are told apart by their keys and read by flux_ipadapter_file.py.
"""
from __future__ import annotations

import os
import re

from ...core.errors import InfuseError
from ...core.files import load_weights, safetensors_keys
from ..decoupled_attention.adapter import IPAdapterModel
from ..decoupled_attention.projections import projection_from_state_dict
from .flux_ipadapter_file import is_instantx, is_xlabs, parse_instantx, parse_xlabs

FAMILY_BY_SITES = {16: "sd15", 70: "sdxl"}

# projection kind -> (variant, what the projection takes)
VARIANTS = {
    "linear": ("base", "pooled"),
    "mlp": ("full_face", "hidden"),
    "resampler": ("plus", "hidden"),
    "faceid": ("faceid", "face"),
    "faceid_plus": ("faceid_plus", "face+hidden"),
}
FACE_EMBEDDING_DIM = 512     # ArcFace; no CLIP encoder has hidden states this wide (1024, 1280, 1664)


def _split(data: dict, name: str, input_name: str) -> tuple[dict, dict]:
    if isinstance(data.get("image_proj"), dict) and isinstance(data.get("ip_adapter"), dict):
        return data["image_proj"], data["ip_adapter"]
    image_proj = {k[len("image_proj."):]: v for k, v in data.items() if k.startswith("image_proj.")}
    ip_adapter = {k[len("ip_adapter."):]: v for k, v in data.items() if k.startswith("ip_adapter.")}
    if not image_proj or not ip_adapter:
        raise _not_an_ipadapter(name, input_name)
    return image_proj, ip_adapter


def _not_an_ipadapter(name: str, input_name: str) -> InfuseError:
    return InfuseError(f"'{name}' is not an IP-Adapter file (no image_proj / ip_adapter weights).",
                       "choose an IP-Adapter model; ControlNets, LoRAs and CLIP vision models go elsewhere.",
                       input_name=input_name)


def parse_ipadapter(data: dict, name: str, input_name: str = "ipadapter_file"):
    """An IPAdapterModel (SD1.5 / SDXL) or a FluxIPAdapterModel (XLabs, InstantX), from the file's keys."""
    if is_xlabs(data):
        return parse_xlabs(data, name, input_name)
    image_proj, ip_sd = _split(data, name, input_name)
    if is_instantx(ip_sd):
        return parse_instantx(image_proj, ip_sd, name, input_name)
    numbers = sorted(int(m.group(1)) for k in ip_sd if (m := re.fullmatch(r"(\d+)\.to_k_ip\.weight", k)))
    family = FAMILY_BY_SITES.get(len(numbers))
    if family is None or numbers != list(range(1, 2 * len(numbers), 2)):
        raise InfuseError(f"'{name}' has {len(numbers)} image cross-attention layers; SD1.5 adapters have "
                          "16 and SDXL adapters 70 (at odd indices 1, 3, ...).",
                          "the file is damaged or for another model family; use an SD1.5 or SDXL IP-Adapter.",
                          input_name=input_name)
    try:
        kind, projection = projection_from_state_dict(image_proj)
    except (KeyError, ValueError, RuntimeError, IndexError) as e:
        raise InfuseError(f"'{name}' has an image projection this pack does not know ({e}).",
                          "use one of the IP-Adapter files listed in the README.", input_name=input_name) from e
    variant, image_input = VARIANTS[kind]
    kv = {n // 2: (ip_sd[f"{n}.to_k_ip.weight"], ip_sd[f"{n}.to_v_ip.weight"]) for n in numbers}
    lora = {k: v for k, v in ip_sd.items() if "_lora." in k}
    if kind == "faceid" and not lora:
        variant = "faceid_portrait"
    if kind == "resampler" and image_proj["proj_in.weight"].shape[1] == FACE_EMBEDDING_DIM:
        variant, image_input = "faceid_portrait_unnorm", "face_raw"    # SDXL Portrait unnorm: raw ArcFace in
    cross_dims = {w.shape[1] for k, _ in kv.values() for w in (k,)}
    token_dim = _token_dim(projection)
    if cross_dims != {token_dim}:
        raise InfuseError(f"'{name}' is inconsistent: its image tokens are {token_dim} wide but its "
                          f"attention layers take {sorted(cross_dims)}.",
                          "the file is damaged; download it again.", input_name=input_name)
    return IPAdapterModel(name=name, family=family, variant=variant, projection_kind=kind, projection=projection,
                          image_input=image_input, image_dim=_image_dim(kind, image_proj), cross_dim=token_dim,
                          kv=kv, lora=lora)


def _token_dim(projection) -> int:
    for key in ("norm_out.weight", "norm.weight", "proj.3.weight"):
        t = projection.state_dict().get(key)
        if t is not None:
            return t.shape[0]
    raise ValueError("projection without an output norm")


def _image_dim(kind: str, sd: dict) -> int:
    if kind == "linear":
        return sd["proj.weight"].shape[1]
    if kind == "mlp":
        return sd["proj.0.weight"].shape[1]
    if kind == "resampler":
        dim = sd["proj_in.weight"].shape[1]
        return 0 if dim == FACE_EMBEDDING_DIM else dim
    if kind == "faceid_plus":
        return sd["perceiver_resampler.proj_in.weight"].shape[1]
    return 0


def load_ipadapter(path: str, input_name: str = "ipadapter_file"):
    name = os.path.basename(path)
    keys = safetensors_keys(path, input_name)
    if keys is not None and not any(k.startswith(("image_proj.", "ip_adapter.", "ip_adapter_proj_model.")) for k in keys):
        raise _not_an_ipadapter(name, input_name)      # a checkpoint picked by mistake is not read whole
    return parse_ipadapter(load_weights(path, input_name), name, input_name)
