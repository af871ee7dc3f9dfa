"""Flux IP-Adapter files read into a FluxIPAdapterModel, recognised from keys and shapes (never the file name).

XLabs flux-ip-adapter v1 / v2 (.safetensors; x-flux `XFluxPipeline.set_ip`, x-flux-comfyui, diffusers'
`FluxIPAdapterMixin.load_ip_adapter` read the same keys):
    ip_adapter_proj_model.proj.{weight [4096*N, 768], bias}, ip_adapter_proj_model.norm.{weight, bias} [4096]
    double_blocks.{i}.processor.ip_adapter_double_stream_{k,v}_proj.{weight [3072, 4096], bias [3072]}
N = 4 tokens (v1) or 16 (v2); double blocks only.

InstantX FLUX.1-dev-IP-Adapter (ip-adapter.bin, {"image_proj": ..., "ip_adapter": ...}; or a safetensors
conversion with those prefixes):
    image_proj.proj.0 [2304, 1152], image_proj.proj.2 [4096*128, 2304], image_proj.norm [4096]   (MLPProjModel)
    ip_adapter.{i}.to_{k,v}_ip.weight [3072, 4096], no biases, i = 0..18 double blocks, 19..56 single blocks
(the order of diffusers' attn_processors: transformer_blocks, then single_transformer_blocks).
"""
from __future__ import annotations

import re

from ...core.errors import InfuseError
from ..decoupled_attention.flux_adapter import FluxIPAdapterModel, FluxIPLayer
from ..decoupled_attention.projections import FaceIDProjection, LinearProjection

XLABS_PROJ = "ip_adapter_proj_model."
XLABS_LAYER = re.compile(r"double_blocks\.(\d+)\.processor\.ip_adapter_double_stream_(k|v)_proj\.(weight|bias)")
INSTANTX_LAYER = re.compile(r"(\d+)\.to_(k|v)_ip\.weight")


def is_xlabs(keys) -> bool:
    return any(k.startswith(XLABS_PROJ) for k in keys)


def is_instantx(ip_adapter_keys) -> bool:
    """InstantX numbers its layers from 0 (one per block); SD IP-Adapters number attn2 processors 1, 3, 5, ..."""
    numbers = {int(m.group(1)) for k in ip_adapter_keys if (m := INSTANTX_LAYER.fullmatch(k))}
    return 0 in numbers


def _damaged(name: str, what: str, input_name: str) -> InfuseError:
    return InfuseError(f"'{name}' looks like a Flux IP-Adapter but {what}.",
                       "the file is damaged or converted wrongly; download it again (see the README for the files).",
                       input_name=input_name)


def _layers(numbered: dict[int, dict], name: str, input_name: str) -> list[FluxIPLayer]:
    if sorted(numbered) != list(range(len(numbered))):
        raise _damaged(name, f"its block layers are numbered {sorted(numbered)[:5]}..., not 0, 1, 2, ...", input_name)
    layers = []
    for i in range(len(numbered)):
        parts = numbered[i]
        if "k.weight" not in parts or "v.weight" not in parts:
            raise _damaged(name, f"block layer {i} has no key or value weight", input_name)
        layers.append(FluxIPLayer(parts["k.weight"], parts["v.weight"], parts.get("k.bias"), parts.get("v.bias")))
    return layers


def parse_xlabs(data: dict, name: str, input_name: str) -> FluxIPAdapterModel:
    proj = {k[len(XLABS_PROJ):]: v for k, v in data.items() if k.startswith(XLABS_PROJ)}
    numbered: dict[int, dict] = {}
    for k, v in data.items():
        if m := XLABS_LAYER.fullmatch(k):
            numbered.setdefault(int(m.group(1)), {})[f"{m.group(2)}.{m.group(3)}"] = v
    if set(proj) != {"proj.weight", "proj.bias", "norm.weight", "norm.bias"} or not numbered:
        raise _damaged(name, f"its projection has {sorted(proj)} and it has {len(numbered)} block layers", input_name)
    token_dim = proj["norm.weight"].shape[0]
    out_dim, image_dim = proj["proj.weight"].shape
    if out_dim % token_dim:
        raise _damaged(name, f"its projection gives {out_dim} values, not whole tokens of {token_dim}", input_name)
    projection = LinearProjection(image_dim, token_dim, out_dim // token_dim)
    projection.load_state_dict(proj, strict=True)
    tokens = out_dim // token_dim
    return _checked(FluxIPAdapterModel(
        name=name, variant="xlabs", version={4: "v1", 16: "v2"}.get(tokens, f"{tokens}-token"),
        projection=projection.eval().requires_grad_(False), image_dim=image_dim, token_dim=token_dim,
        layers=_layers(numbered, name, input_name), all_blocks=False, adds_to="block", norm_kv=False), input_name)


def parse_instantx(image_proj: dict, ip_adapter: dict, name: str, input_name: str) -> FluxIPAdapterModel:
    if not {"proj.0.weight", "proj.2.weight", "norm.weight"} <= set(image_proj):
        raise _damaged(name, f"its image projection has the keys {sorted(image_proj)[:6]}", input_name)
    numbered: dict[int, dict] = {}
    for k, v in ip_adapter.items():
        if m := INSTANTX_LAYER.fullmatch(k):
            numbered.setdefault(int(m.group(1)), {})[f"{m.group(2)}.weight"] = v
    layers = _layers(numbered, name, input_name)
    token_dim = image_proj["norm.weight"].shape[0]
    hidden, image_dim = image_proj["proj.0.weight"].shape
    projection = FaceIDProjection(image_dim, hidden, token_dim, image_proj["proj.2.weight"].shape[0] // token_dim)
    projection.load_state_dict(image_proj, strict=True)
    return _checked(FluxIPAdapterModel(
        name=name, variant="instantx", version="", projection=projection.eval().requires_grad_(False),
        image_dim=image_dim, token_dim=token_dim, layers=layers, all_blocks=True, adds_to="attention",
        norm_kv=True), input_name)


def _checked(adapter: FluxIPAdapterModel, input_name: str) -> FluxIPAdapterModel:
    widths = {w.shape[1] for layer in adapter.layers for w in (layer.to_k, layer.to_v)}
    if widths != {adapter.token_dim}:
        raise _damaged(adapter.name, f"its image tokens are {adapter.token_dim} wide while its block layers take "
                                     f"{sorted(widths)}", input_name)
    return adapter
