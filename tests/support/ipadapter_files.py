"""Random IP-Adapter weights in the published key layouts, written as the published file formats.

`.bin`: `torch.save({"image_proj": {...}, "ip_adapter": {...}})` (the reference training script's format);
`.safetensors`: one flat dict with `image_proj.` / `ip_adapter.` prefixes (the converted files users get).
Default sizes are the real SD1.5 ones; tests pass small widths where the layout allows.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

SD15_SITE_WIDTHS = [320] * 2 + [640] * 2 + [1280] * 2 + [1280] * 3 + [640] * 3 + [320] * 3 + [1280]
SDXL_SITE_WIDTHS = [640] * 4 + [1280] * 20 + [1280] * 30 + [640] * 6 + [1280] * 10


class Randn:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, *shape, scale=None):
        t = torch.randn(*shape, generator=self.g)
        return t * (scale if scale is not None else (1.0 / shape[-1] ** 0.5 if len(shape) > 1 else 0.02))

    def norm(self, dim, prefix):
        return {f"{prefix}.weight": 1.0 + self(dim, scale=0.05), f"{prefix}.bias": self(dim, scale=0.05)}


def _linear(r, prefix, out_dim, in_dim, bias=True):
    d = {f"{prefix}.weight": r(out_dim, in_dim)}
    if bias:
        d[f"{prefix}.bias"] = r(out_dim, scale=0.02)
    return d


def _perceiver(r, prefix, dim, depth, heads):
    d = {}
    inner = heads * 64
    for i in range(depth):
        p = f"{prefix}layers.{i}"
        d |= r.norm(dim, f"{p}.0.norm1") | r.norm(dim, f"{p}.0.norm2")
        d |= _linear(r, f"{p}.0.to_q", inner, dim, bias=False) | _linear(r, f"{p}.0.to_kv", 2 * inner, dim, bias=False)
        d |= _linear(r, f"{p}.0.to_out", dim, inner, bias=False)
        d |= r.norm(dim, f"{p}.1.0") | _linear(r, f"{p}.1.1", 4 * dim, dim, bias=False)
        d |= _linear(r, f"{p}.1.3", dim, 4 * dim, bias=False)
    return d


def image_proj(kind: str, seed: int = 0, cross: int = 768, clip_pooled: int = 1024, clip_hidden: int = 1280,
               tokens: int | None = None, resampler_dim: int = 768, depth: int = 4, id_dim: int = 512,
               norm: bool = True) -> dict:
    r = Randn(seed)
    if kind == "linear":
        t = tokens or 4
        return _linear(r, "proj", cross * t, clip_pooled) | r.norm(cross, "norm")
    if kind == "mlp":
        return (_linear(r, "proj.0", clip_hidden, clip_hidden) | _linear(r, "proj.2", cross, clip_hidden)
                | r.norm(cross, "proj.3"))
    if kind == "resampler":
        t = tokens or 16
        return ({"latents": r(1, t, resampler_dim, scale=resampler_dim ** -0.5)}
                | _linear(r, "proj_in", resampler_dim, clip_hidden) | _linear(r, "proj_out", cross, resampler_dim)
                | r.norm(cross, "norm_out") | _perceiver(r, "", resampler_dim, depth, resampler_dim // 64))
    if kind == "faceid":
        t = tokens or 4
        d = _linear(r, "proj.0", 2 * id_dim, id_dim) | _linear(r, "proj.2", cross * t, 2 * id_dim)
        return d | (r.norm(cross, "norm") if norm else {})
    if kind == "faceid_plus":
        t = tokens or 4
        return (_linear(r, "proj.0", 2 * id_dim, id_dim) | _linear(r, "proj.2", cross * t, 2 * id_dim)
                | r.norm(cross, "norm") | _linear(r, "perceiver_resampler.proj_in", cross, clip_hidden)
                | _linear(r, "perceiver_resampler.proj_out", cross, cross)
                | r.norm(cross, "perceiver_resampler.norm_out")
                | _perceiver(r, "perceiver_resampler.", cross, depth, cross // 64))
    raise ValueError(kind)


def ip_layers(site_widths: list[int], cross: int, seed: int = 1, lora_rank: int | None = None) -> dict:
    """`ip_adapter` dict: to_k_ip / to_v_ip at odd indices; with lora_rank, FaceID's LoRA on every processor."""
    r = Randn(seed)
    d = {}
    for n, width in enumerate(site_widths):
        d |= _linear(r, f"{2 * n + 1}.to_k_ip", width, cross, bias=False)
        d |= _linear(r, f"{2 * n + 1}.to_v_ip", width, cross, bias=False)
        if lora_rank:
            for index, ctx in ((2 * n, width), (2 * n + 1, cross)):
                for proj, in_dim in (("to_q", width), ("to_k", ctx), ("to_v", ctx), ("to_out", width)):
                    d[f"{index}.{proj}_lora.down.weight"] = r(lora_rank, in_dim)
                    d[f"{index}.{proj}_lora.up.weight"] = r(width, lora_rank)
    return d


def write(path: Path, image_proj_sd: dict, ip_sd: dict) -> Path:
    return write_parts(path, {"image_proj": image_proj_sd, "ip_adapter": ip_sd})


def write_parts(path: Path, parts: dict[str, dict]) -> Path:
    """A model file of named parts as the originals save them: `.bin` = torch.save of the nested dicts, in order;
    `.safetensors` = one flat dict, each part's keys under `<part>.`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({f"{part}.{k}": v.contiguous() for part, sd in parts.items() for k, v in sd.items()}, str(path))
    else:
        torch.save(parts, str(path))
    return path
