"""An IP-Adapter as the decoupled cross-attention family uses it: a projection (image features -> image tokens) and
the image K/V weights of every cross-attention site. Loaders (loaders/ipadapter_file.py, IDM-VTON's UNet) build it."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..patching.surfaces.unet import family_name


@dataclass(eq=False)
class IPAdapterModel:
    name: str
    family: str                        # "sd15" | "sdxl"
    variant: str                       # base, plus, full_face, faceid, faceid_portrait, faceid_plus
    projection_kind: str
    projection: torch.nn.Module
    image_input: str                   # pooled | hidden | face | face_raw | face+hidden
    image_dim: int                     # width of the CLIP features the projection takes (0: face only)
    cross_dim: int                     # width of the image tokens (the UNet's context width)
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]]   # site number (processor 2n+1) -> (to_k_ip, to_v_ip)
    lora: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Image tokens per image (full-face: one per CLIP hidden state)."""
        p = self.projection
        return getattr(p, "tokens", None) or (p.latents.shape[1] if hasattr(p, "latents") else 257)

    @property
    def uses_clip(self) -> bool:
        return "pooled" in self.image_input or "hidden" in self.image_input

    @property
    def uses_face(self) -> bool:
        return "face" in self.image_input

    def describe(self) -> str:
        return f"{family_name(self.family)} IP-Adapter {self.variant} ({self.image_input} input, {self.tokens} tokens)"
