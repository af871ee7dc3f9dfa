"""When and where a contribution acts: sigma range, cond/uncond selection, spatial masks.

Pure torch; the dispatchers (dispatcher.py, surfaces/dit.py) calls these for every contribution alike.
"""
from __future__ import annotations

import math
from enum import Enum

import torch
import torch.nn.functional as F

from ...core.errors import InfuseError


class ApplyTo(str, Enum):
    """Which CFG branch a contribution acts on. ComfyUI marks cond rows 0 and uncond rows 1."""
    BOTH = "both"
    COND = "cond"
    UNCOND = "uncond"

    def accepts(self, cond_or_uncond: int) -> bool:
        if self is ApplyTo.BOTH:
            return True
        return (cond_or_uncond == 0) == (self is ApplyTo.COND)


class SigmaRange:
    """Start/end percent of the schedule, turned into sigmas once per run with the model's sampling."""

    def __init__(self, start_percent: float = 0.0, end_percent: float = 1.0):
        if not 0.0 <= start_percent <= end_percent <= 1.0:
            raise ValueError(f"need 0 <= start_percent <= end_percent <= 1, got {start_percent}, {end_percent}")
        self.start_percent = start_percent
        self.end_percent = end_percent
        self.sigma_start = math.inf
        self.sigma_end = 0.0

    @property
    def is_full(self) -> bool:
        return self.start_percent <= 0.0 and self.end_percent >= 1.0

    def bind(self, model_sampling) -> None:
        self.sigma_start = model_sampling.percent_to_sigma(self.start_percent)
        self.sigma_end = model_sampling.percent_to_sigma(self.end_percent)

    def contains(self, sigma: float) -> bool:
        # ComfyUI's own ControlNet uses the same inclusive test.
        return self.sigma_end <= sigma <= self.sigma_start


_last_sigmas: tuple[object, float] = (None, 0.0)


def current_sigma(extra_options: dict) -> float | None:
    """The sigma of this model call, read from the device once per call (not once per site)."""
    global _last_sigmas
    sigmas = extra_options.get("sigmas")
    if sigmas is None:
        return None
    if sigmas is not _last_sigmas[0]:
        _last_sigmas = (sigmas, float(sigmas.reshape(-1)[0]))
    return _last_sigmas[1]


def token_grid(n_tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the token grid at a UNet level: each downsample halves the latent, rounding up."""
    h, w = latent_hw
    for _ in range(8):
        if h * w == n_tokens:
            return h, w
        h, w = (h + 1) // 2, (w + 1) // 2
    raise ValueError(f"{n_tokens} tokens do not form a UNet level of a {latent_hw[0]}x{latent_hw[1]} latent")


MASK_MODES = ("reference", "soft")


def mask_to_tokens(mask: torch.Tensor, n_tokens: int, latent_hw: tuple[int, int],
                   mode: str = "reference") -> torch.Tensor:
    """A [B, H, W] mask resized to a site's token grid, as [B, n_tokens, 1] to scale attention outputs.

    reference: diffusers' IPAdapterMaskProcessor (the published pipelines): the mask resized to the image's size
    (nearest), binarised at 0.5, then bicubic to the token grid. soft: grey levels kept, bilinear to the grid."""
    h, w = token_grid(n_tokens, latent_hw)
    mask = mask[:, None].float()
    if mode == "reference":
        image_hw = (latent_hw[0] * 8, latent_hw[1] * 8)
        binary = (F.interpolate(mask, size=image_hw) >= 0.5).float()
        resized = F.interpolate(binary, size=(h, w), mode="bicubic")
    elif mode == "soft":
        resized = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    return resized.reshape(mask.shape[0], h * w, 1)


def normalize_mask(mask: torch.Tensor, input_name: str = "attn_mask") -> torch.Tensor:
    """ComfyUI MASK ([H, W] or [B, H, W], values 0..1) as float [B, H, W]."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[0] == 0 or min(mask.shape[1:]) == 0:
        raise InfuseError(f"the mask has shape {tuple(mask.shape)}; a MASK is [batch, height, width].",
                          "connect a mask from Load Image (mask output), a mask editor, or Solid Mask.",
                          input_name=input_name)
    return mask.float().clamp(0.0, 1.0)


def check_mask_aspect(mask: torch.Tensor, latent_hw: tuple[int, int],
                      input_name: str = "attn_mask") -> None:
    """A mask must cover the image it masks: its aspect ratio must be the latent's, within rounding."""
    mh, mw = mask.shape[-2:]
    lh, lw = latent_hw
    # one latent pixel of slack for images whose sides are not multiples of 8
    if abs(mh / mw - lh / lw) > max(1.0 / lh, 1.0 / lw) * (lh / lw) + 1e-6:
        raise InfuseError(
            f"the mask is {mw}x{mh} (w x h) but the image being generated is {lw * 8}x{lh * 8}; "
            "their aspect ratios differ, so the mask would be stretched.",
            f"make the mask the size of the image (e.g. Upscale Image / Solid Mask at {lw * 8}x{lh * 8}), "
            "or crop it to the same aspect ratio.",
            input_name=input_name,
        )
