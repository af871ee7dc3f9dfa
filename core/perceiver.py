"""Perceiver building blocks shared by the image projections of several mechanism families (IP-Adapter's
Resampler and FaceID-Plus, PuLID's IDFormer, PhotoMaker v2): plain torch modules whose parameter names are the
published checkpoints' (norm1, norm2, to_q, to_kv, to_out; feed-forward .0 / .1 / .3)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

DIM_HEAD = 64
FF_MULT = 4


def feed_forward(dim: int, mult: int = FF_MULT) -> nn.Sequential:
    """LayerNorm -> Linear -> GELU -> Linear, bias-free linears (keys .0, .1, .3)."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class PerceiverAttention(nn.Module):
    """Latents attend over [features, latents]; keys norm1, norm2, to_q, to_kv, to_out."""

    def __init__(self, dim: int, heads: int, dim_head: int = DIM_HEAD):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        b, n, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        split = lambda t: t.reshape(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


def perceiver_layers(dim: int, depth: int, heads: int, dim_head: int = DIM_HEAD) -> nn.ModuleList:
    return nn.ModuleList([nn.ModuleList([PerceiverAttention(dim, heads, dim_head), feed_forward(dim)])
                          for _ in range(depth)])


def run_layers(layers: nn.ModuleList, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    for attn, ff in layers:
        latents = attn(x, latents) + latents
        latents = ff(latents) + latents
    return latents


class FacePerceiverResampler(nn.Module):
    """The resampler of FaceID-Plus: face tokens are the latents, CLIP hidden states the features."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, depth: int, heads: int, dim_head: int = DIM_HEAD):
        super().__init__()
        self.proj_in = nn.Linear(in_dim, dim)
        self.proj_out = nn.Linear(dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim)
        self.layers = perceiver_layers(dim, depth, heads, dim_head)

    def forward(self, latents: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        latents = run_layers(self.layers, self.proj_in(hidden), latents)
        return self.norm_out(self.proj_out(latents))
