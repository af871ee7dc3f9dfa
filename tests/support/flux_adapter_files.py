"""Random Flux IP-Adapter weights in the published key layouts and file formats.

XLabs flux-ip-adapter(-v2).safetensors: `ip_adapter_proj_model.{proj,norm}.*`,
`double_blocks.{i}.processor.ip_adapter_double_stream_{k,v}_proj.{weight,bias}` (x-flux `set_ip`).
InstantX ip-adapter.bin: `torch.save({"image_proj": {proj.0, proj.2, norm}, "ip_adapter": {"{i}.to_{k,v}_ip.weight"}})`,
one layer per double block then per single block. Token width 4096 and encoder widths (768, 1152) are the real
ones; the block width is the test model's (real: 3072) and InstantX's token count is small (real: 128).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from . import ipadapter_files
from .ipadapter_files import Randn, _linear

TOKEN_DIM = 4096
CLIP_L_POOLED = 768
SIGLIP_POOLED = 1152


def xlabs(block_width: int, n_double: int, tokens: int = 4, seed: int = 0, dtype=torch.float32) -> dict:
    r = Randn(seed)
    sd = _linear(r, "ip_adapter_proj_model.proj", TOKEN_DIM * tokens, CLIP_L_POOLED) | \
        r.norm(TOKEN_DIM, "ip_adapter_proj_model.norm")
    for i in range(n_double):
        for kv in ("k", "v"):
            sd |= _linear(r, f"double_blocks.{i}.processor.ip_adapter_double_stream_{kv}_proj", block_width, TOKEN_DIM)
    return {k: v.to(dtype).contiguous() for k, v in sd.items()}


def instantx(block_width: int, n_blocks: int, tokens: int = 4, seed: int = 0) -> tuple[dict, dict]:
    """(image_proj, ip_adapter) of InstantX's file: MLPProjModel(1152 -> 2304 -> tokens x 4096) + LayerNorm."""
    r = Randn(seed)
    image_proj = _linear(r, "proj.0", 2 * SIGLIP_POOLED, SIGLIP_POOLED) | \
        _linear(r, "proj.2", TOKEN_DIM * tokens, 2 * SIGLIP_POOLED) | r.norm(TOKEN_DIM, "norm")
    ip_adapter = {}
    for i in range(n_blocks):
        ip_adapter |= _linear(r, f"{i}.to_k_ip", block_width, TOKEN_DIM, bias=False)
        ip_adapter |= _linear(r, f"{i}.to_v_ip", block_width, TOKEN_DIM, bias=False)
    return image_proj, ip_adapter


def write_xlabs(path: Path, sd: dict) -> Path:
    save_file(sd, str(path))
    return Path(path)


def write_instantx(path: Path, image_proj: dict, ip_adapter: dict) -> Path:
    """`.bin` as InstantX publishes it (a torch pickle of the two dicts), or a `.safetensors` conversion with
    `image_proj.` / `ip_adapter.` prefixes: the SD IP-Adapter file formats."""
    return ipadapter_files.write(path, image_proj, ip_adapter)
