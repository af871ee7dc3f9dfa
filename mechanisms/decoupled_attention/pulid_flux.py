"""PuLID on Flux (v0.9.0 / v0.9.1): after every 2nd double block and every 4th single block, the image tokens attend to
the ID tokens through one of the file's `pulid_ca` layers (ToTheBeginning/PuLID flux/model.py, encoders_transformer.py
PerceiverAttentionCA):

    img = img + w * CA(id, img),   CA = to_out(softmax((q s)(k s)^T) v),  q = to_q(LN(img)),  k, v = to_kv(LN(id)),
    s = head_dim^-1/4

on the block's output image tokens (a single block's text tokens are left as they are). Layer i of the file sits after
double block 2i (i < ceil(D / 2)), then after single block 4(i - ceil(D / 2)).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ...core.errors import InfuseError, current_node
from ..patching.surfaces.dit import BlockContribution, BlockSite, add_block_contribution, block_sites

DOUBLE_INTERVAL, SINGLE_INTERVAL = 2, 4
CA_HEAD_DIM = 128


class PerceiverAttentionCA(nn.Module):
    """Image tokens (queries) attend over ID tokens; keys norm1 (ID width), norm2 (image width), to_q, to_kv, to_out,
    bias-free linears."""

    def __init__(self, dim: int, kv_dim: int, inner: int):
        super().__init__()
        self.heads = inner // CA_HEAD_DIM
        self.norm1 = nn.LayerNorm(kv_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(kv_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    @classmethod
    def from_state_dict(cls, sd: dict) -> "PerceiverAttentionCA":
        inner, dim = sd["to_q.weight"].shape
        module = cls(dim, sd["to_kv.weight"].shape[1], inner)
        module.load_state_dict(sd, strict=True)
        return module.eval().requires_grad_(False)

    def id_kv(self, id_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ID tokens' keys and values, [B, heads, T, head_dim]: the same on every step, computed once."""
        k, v = self.to_kv(self.norm1(id_tokens)).chunk(2, dim=-1)
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        return split(k), split(v)

    def forward(self, img: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self.to_q(self.norm2(img)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        scale = 1 / math.sqrt(math.sqrt(q.shape[-1]))
        weight = ((q * scale) @ (k * scale).transpose(-2, -1)).float().softmax(dim=-1).to(q.dtype)
        return self.to_out((weight @ v).transpose(1, 2).flatten(2))


def ca_sites(sites: list[BlockSite]) -> list[BlockSite]:
    """The blocks a PuLID-Flux file's CA layers follow, in the file's order."""
    return [s for s in sites if s.kind == "double_block" and s.index % DOUBLE_INTERVAL == 0] + \
           [s for s in sites if s.kind == "single_block" and s.index % SINGLE_INTERVAL == 0]


class PulidFluxAttention(BlockContribution):
    def __init__(self, node: str, layers: dict, cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor,
                 patcher=None, **schedule):
        super().__init__(node, **schedule)
        self.layers = layers                                  # block key -> PerceiverAttentionCA
        self.patcher = patcher                                # the layers under ComfyUI's model management
        self.tokens = {0: cond_tokens, 1: uncond_tokens}
        self._kv: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def sites(self):
        return list(self.layers)

    def models(self) -> list:
        return [self.patcher] if self.patcher is not None else []

    def _branch_kv(self, site, branch: int, like: torch.Tensor):
        key = (site, branch, like.device, like.dtype)
        if key not in self._kv:
            layer = self.layers[site].to(like.device)        # a no-op where ComfyUI loaded the patcher
            with torch.no_grad():
                k, v = layer.id_kv(self.tokens[branch].to(like.device, next(layer.parameters()).dtype))
            self._kv[key] = (k.to(like.dtype), v.to(like.dtype))
        return self._kv[key]

    def block_delta(self, block_input, block_output, call) -> torch.Tensor:
        from .attention import rows_kv

        img = block_output["img"]
        k, v = rows_kv(self._kv, call, lambda branch: self._branch_kv(call.site, branch, img), img)
        layer = self.layers[call.site]
        dtype = next(layer.parameters()).dtype
        with torch.no_grad():
            return layer(img.to(dtype), k.to(dtype), v.to(dtype)).to(img.dtype)


def apply_pulid_flux(model, ca_layers: list[PerceiverAttentionCA], cond: torch.Tensor, uncond: torch.Tensor,
                     what: str, patcher=None, **schedule) -> PulidFluxAttention:
    """Register PuLID-Flux's CA layers on `model` (a clone holding a Flux model); `patcher`, a ModelPatcher over
    them, is loaded by ComfyUI with the model."""
    targets = ca_sites(block_sites(model))
    if len(targets) != len(ca_layers):
        raise InfuseError(f"{what} has {len(ca_layers)} ID layers, made for a Flux with 19 double + 38 single blocks; "
                          f"this model takes {len(targets)} (after every 2nd double and every 4th single block).",
                          "use a PuLID-Flux file made for this model.", input_name="model")
    for site, layer in zip(targets, ca_layers):
        if layer.to_q.in_features != site.hidden_size:
            raise InfuseError(f"{what}'s ID layers are {layer.to_q.in_features} wide but the model's {site} is "
                              f"{site.hidden_size} wide.", "use a PuLID-Flux file made for this model.",
                              input_name="model")
    contribution = PulidFluxAttention(current_node(), {s.key: layer for s, layer in zip(targets, ca_layers)}, cond,
                                      uncond, patcher, **schedule)
    add_block_contribution(model, contribution, targets)
    return contribution
