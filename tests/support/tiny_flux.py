"""A tiny Flux with random weights, in ComfyUI's real classes: `comfy.supported_models.Flux` with a small
unet_config, so `model_base.Flux`, `comfy.ldm.flux.model.Flux`, its Double / Single stream blocks, the Flux
latent format and flow sampling are ComfyUI's own; only the widths and depths are small.

    model = build_model()
    latent = sample(model, conditioning(1), conditioning(2))
"""
from __future__ import annotations

import torch

from .comfy_env import import_comfyui
from .tiny_models import patcher_for

import_comfyui()

import comfy.model_patcher  # noqa: E402
import comfy.supported_models as sm  # noqa: E402

CONTEXT_DIM = 4096   # T5-XXL width, as real: Flux adapter and Redux tokens are this wide (txt_in is only 4096 x 64)
VEC_DIM = 24         # CLIP-L pooled width, small
LATENT_CHANNELS = 16

TINY_FLUX_UNET = {
    "image_model": "flux", "in_channels": LATENT_CHANNELS, "out_channels": LATENT_CHANNELS, "patch_size": 2,
    "vec_in_dim": VEC_DIM, "context_in_dim": CONTEXT_DIM, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2,
    "depth": 2, "depth_single_blocks": 2, "axes_dim": [8, 12, 12], "theta": 10000, "qkv_bias": True,
    "guidance_embed": True,
}


class TinyFlux(sm.Flux):
    """Flux dev's config (guidance embedding) at a tiny width: hidden 64, 2 heads of 32, 2 + 2 blocks."""
    unet_config = dict(TINY_FLUX_UNET)


def build_model(seed: int = 0, dtype=torch.float32) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around a random-weight tiny Flux, on ComfyUI's devices."""
    return patcher_for(TinyFlux(dict(TINY_FLUX_UNET)), seed, dtype)


def conditioning(seed: int, tokens: int = 8, guidance: float = 3.5) -> list:
    """Flux-style CONDITIONING: T5 tokens [1, T, ctx] with the pooled CLIP vector and the guidance value."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, CONTEXT_DIM, generator=g),
             {"pooled_output": torch.randn(1, VEC_DIM, generator=g), "guidance": guidance}]]


def sample(model, positive, negative, latent_hw=(8, 8), seed: int = 0, steps: int = 3, cfg: float = 3.0,
           sampler: str = "euler", scheduler: str = "simple", batch: int = 1) -> torch.Tensor:
    """Sample through ComfyUI's own entry point (the one KSampler uses); cfg > 1 gives cond and uncond rows."""
    import comfy.sample

    latent = torch.zeros(batch, LATENT_CHANNELS, *latent_hw)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               disable_pbar=True, seed=seed)
