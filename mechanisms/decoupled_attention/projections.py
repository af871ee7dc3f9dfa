"""Image-projection models of the IP-Adapter family: image features -> tokens for decoupled cross-attention.

Module and parameter names follow the published checkpoints' `image_proj` keys exactly, so a file's state
dict loads with `strict=True`. Sizes are read from the weights (`projection_from_state_dict`); only the
head size of the perceiver attentions (64) and the feed-forward ratio (4) are fixed, as in the originals.

| kind          | keys (under image_proj.)             | input                                 | used by                    |
|---------------|--------------------------------------|---------------------------------------|----------------------------|
| linear        | proj, norm                           | pooled CLIP image embeds [B, D]       | base, light, vit-G, SDXL   |
| mlp           | proj.0, proj.2, proj.3               | CLIP penultimate states [B, 257, D]   | full-face                  |
| resampler     | latents, proj_in, layers, proj_out   | CLIP penultimate states [B, 257, D]   | plus, plus-face, InstantID |
| faceid        | proj.0, proj.2, norm                 | face embedding [B, 512]               | FaceID, FaceID Portrait    |
| faceid_plus   | proj, norm, perceiver_resampler      | face embedding + penultimate states   | FaceID-Plus (v1, v2)       |
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ...core.perceiver import DIM_HEAD, FacePerceiverResampler, perceiver_layers, run_layers


class LinearProjection(nn.Module):
    """Pooled image embeds -> `tokens` tokens: Linear, reshape, LayerNorm."""

    def __init__(self, in_dim: int, cross_dim: int, tokens: int):
        super().__init__()
        self.tokens = tokens
        self.proj = nn.Linear(in_dim, cross_dim * tokens)
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(embeds).reshape(embeds.shape[0], self.tokens, -1))


class MLPProjection(nn.Module):
    """Full-face: every CLIP hidden state through Linear, GELU, Linear, LayerNorm (257 tokens out)."""

    def __init__(self, in_dim: int, cross_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, cross_dim),
                                  nn.LayerNorm(cross_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


class Resampler(nn.Module):
    """Perceiver resampler: learned latents attend over projected CLIP hidden states."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, queries: int, depth: int, heads: int):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(1, queries, dim))
        self.proj_in = nn.Linear(in_dim, dim)
        self.proj_out = nn.Linear(dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim)
        self.layers = perceiver_layers(dim, depth, heads)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        latents = self.latents.repeat(hidden.shape[0], 1, 1)
        latents = run_layers(self.layers, self.proj_in(hidden), latents)
        return self.norm_out(self.proj_out(latents))


class FaceIDProjection(nn.Module):
    """Face embedding -> tokens: Linear, GELU, Linear, reshape, LayerNorm (FaceID, Portrait)."""

    def __init__(self, id_dim: int, hidden: int, cross_dim: int, tokens: int):
        super().__init__()
        self.tokens = tokens
        self.proj = nn.Sequential(nn.Linear(id_dim, hidden), nn.GELU(), nn.Linear(hidden, cross_dim * tokens))
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(face).reshape(face.shape[0], self.tokens, -1))


class FaceIDPlusProjection(nn.Module):
    """FaceID-Plus: face tokens refined by CLIP hidden states of the face crop.

    v2 adds the face tokens back: `out = face_tokens + shortcut_scale * resampler(face_tokens, clip)`.
    """

    def __init__(self, id_dim: int, hidden: int, cross_dim: int, tokens: int, clip_dim: int, depth: int, heads: int):
        super().__init__()
        self.tokens = tokens
        self.proj = nn.Sequential(nn.Linear(id_dim, hidden), nn.GELU(), nn.Linear(hidden, cross_dim * tokens))
        self.norm = nn.LayerNorm(cross_dim)
        self.perceiver_resampler = FacePerceiverResampler(clip_dim, cross_dim, cross_dim, depth, heads)

    def forward(self, face: torch.Tensor, hidden: torch.Tensor, shortcut: bool = False,
                shortcut_scale: float = 1.0) -> torch.Tensor:
        face_tokens = self.norm(self.proj(face).reshape(face.shape[0], self.tokens, -1))
        out = self.perceiver_resampler(face_tokens, hidden)
        return face_tokens + shortcut_scale * out if shortcut else out


def _depth(sd: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def projection_from_state_dict(sd: dict[str, torch.Tensor]) -> tuple[str, nn.Module]:
    """(kind, module) for an `image_proj` state dict (prefix removed), sizes read from its shapes.

    Raises KeyError/ValueError for a layout that is none of the known ones; the loader turns that into an
    error naming the file.
    """
    if "perceiver_resampler.proj_in.weight" in sd:
        id_dim, hidden = sd["proj.0.weight"].shape[1], sd["proj.0.weight"].shape[0]
        cross = sd["norm.weight"].shape[0]
        clip_dim = sd["perceiver_resampler.proj_in.weight"].shape[1]
        heads = sd["perceiver_resampler.layers.0.0.to_q.weight"].shape[0] // DIM_HEAD
        module = FaceIDPlusProjection(id_dim, hidden, cross, sd["proj.2.weight"].shape[0] // cross, clip_dim,
                                      _depth(sd, "perceiver_resampler.layers."), heads)
        kind = "faceid_plus"
    elif "latents" in sd:
        queries, dim = sd["latents"].shape[1:]
        module = Resampler(sd["proj_in.weight"].shape[1], dim, sd["proj_out.weight"].shape[0], queries,
                           _depth(sd, "layers."), sd["layers.0.0.to_q.weight"].shape[0] // DIM_HEAD)
        kind = "resampler"
    elif "proj.3.weight" in sd:
        module = MLPProjection(sd["proj.0.weight"].shape[1], sd["proj.3.weight"].shape[0])
        kind = "mlp"
    elif "proj.0.weight" in sd and "norm.weight" in sd:
        cross = sd["norm.weight"].shape[0]
        module = FaceIDProjection(sd["proj.0.weight"].shape[1], sd["proj.0.weight"].shape[0], cross,
                                  sd["proj.2.weight"].shape[0] // cross)
        kind = "faceid"
    elif "proj.weight" in sd and "norm.weight" in sd:
        cross = sd["norm.weight"].shape[0]
        module = LinearProjection(sd["proj.weight"].shape[1], cross, sd["proj.weight"].shape[0] // cross)
        kind = "linear"
    else:
        raise ValueError(f"unknown image_proj layout (keys: {sorted(sd)[:6]}...)")
    module.load_state_dict(sd, strict=True)
    return kind, module.eval().requires_grad_(False)
