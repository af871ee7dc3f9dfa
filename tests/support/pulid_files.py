"""Random PuLID weights in the published key layouts (ToTheBeginning/PuLID; cubiq's conversion), real encoder sizes
(IDEncoder 1280 -> 10 x 2048 tokens, IDFormer 32 x 2048), the injection layers at the test model's widths."""
from __future__ import annotations

import torch

from .ipadapter_files import Randn, _linear, _perceiver

ID_COND, VIT_WIDTH, TOKEN_DIM = 1280, 1024, 2048


def _mlp(r, prefix: str, dims: list[int]) -> dict:
    sd = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        sd |= _linear(r, f"{prefix}.{3 * i}", b, a)
        if i < len(dims) - 2:
            sd |= r.norm(b, f"{prefix}.{3 * i + 1}")
    return sd


def id_encoder(seed: int = 0, id_cond: int = ID_COND, vit_width: int = VIT_WIDTH) -> dict:
    """SDXL v1's IDEncoder: body 1280 -> 1024 -> 1024 -> 5 x 2048, mapping(_patch)_{0..4} 1024 -> 1024 -> 1024 -> 2048
    (id_cond / vit_width: the EVA tower's widths, smaller in tests that run a small tower)."""
    r = Randn(seed)
    sd = _mlp(r, "body", [id_cond, 1024, 1024, 5 * TOKEN_DIM])
    for i in range(5):
        sd |= _mlp(r, f"mapping_{i}", [vit_width, 1024, 1024, TOKEN_DIM])
        sd |= _mlp(r, f"mapping_patch_{i}", [vit_width, 1024, 1024, TOKEN_DIM])
    return sd


def id_former(seed: int = 0, dim: int = 1024, depth: int = 10, queries: int = 32, id_cond: int = ID_COND,
              vit_width: int = VIT_WIDTH) -> dict:
    """SDXL v1.1 / Flux's IDFormer (dim 1024, 10 layers of 16 heads x 64, 32 queries, 5 ID tokens)."""
    r = Randn(seed)
    sd = {"latents": r(1, queries, dim, scale=dim ** -0.5), "proj_out": r(dim, TOKEN_DIM, scale=dim ** -0.5)}
    sd |= _perceiver(r, "", dim, depth, heads=dim // 64)
    for i in range(5):
        sd |= _mlp(r, f"mapping_{i}", [vit_width, 1024, 1024, dim])
    return sd | _mlp(r, "id_embedding_mapping", [id_cond, 1024, 1024, 5 * dim])


def sdxl_layers(widths: list[int], seed: int = 1, names=("id_adapter_attn_layers", "id_to_{}")) -> dict:
    """The ID K / V of every attn2 (processor 2n + 1), bias-free, [width, 2048]."""
    r = Randn(seed)
    prefix, proj = names
    return {f"{prefix}.{2 * n + 1}.{proj.format(kv)}.weight": r(w, TOKEN_DIM)
            for n, w in enumerate(widths) for kv in ("k", "v")}


def flux_ca(n_layers: int, dim: int, seed: int = 2, inner: int = 2048) -> dict:
    r = Randn(seed)
    sd = {}
    for i in range(n_layers):
        p = f"pulid_ca.{i}"
        sd |= r.norm(TOKEN_DIM, f"{p}.norm1") | r.norm(dim, f"{p}.norm2")
        sd |= _linear(r, f"{p}.to_q", inner, dim, bias=False) | _linear(r, f"{p}.to_kv", 2 * inner, TOKEN_DIM, bias=False)
        sd |= _linear(r, f"{p}.to_out", dim, inner, bias=False)
    return sd


def features(n: int = 1, seed: int = 5) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """id_cond [n, 1280] and id_vit_hidden 5 x [n, 577, 1024], random."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, ID_COND, generator=g), [torch.randn(n, 577, VIT_WIDTH, generator=g) for _ in range(5)]
