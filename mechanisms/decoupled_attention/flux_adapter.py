"""A Flux IP-Adapter as the decoupled-attention family uses it: a projection (pooled image embeds -> image tokens)
and per-block image K / V layers. The loader (loaders/flux_ipadapter_file.py) builds it from XLabs' or InstantX's
files; what differs between the two is where the image attention is added (`adds_to`) and whether the image keys /
values are RMS-normalised per head (`norm_kv`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# where the image attention goes: "block" = onto the block's image output, after its MLP (XLabs, diffusers'
# FluxIPAdapterAttnProcessor); "attention" = into the joint attention's output, before the block's projection
# and gate (InstantX)
ADDS_TO = ("block", "attention")

ENCODERS = {   # variant -> (the encoder users load, the pooled width it gives)
    "xlabs": ("CLIP ViT-L/14 (clip_vision: clip-vit-large-patch14 / model.safetensors from openai)", 768),
    "instantx": ("SigLIP so400m-patch14-384 with its pooling head (Infuse Load CLIP Vision: "
                 "sigclip_vision_patch14_384.safetensors or siglip-so400m-patch14-384/model.safetensors)", 1152),
}


@dataclass(frozen=True)
class FluxIPLayer:
    """The image K / V projections of one block, weights as stored ([inner, token_dim]), biases or None."""
    to_k: torch.Tensor
    to_v: torch.Tensor
    k_bias: torch.Tensor | None = None
    v_bias: torch.Tensor | None = None


@dataclass(eq=False)
class FluxIPAdapterModel:
    name: str
    variant: str                        # "xlabs" | "instantx"
    version: str                        # "v1" / "v2" (XLabs: 4 / 16 tokens), "" for InstantX
    projection: torch.nn.Module         # pooled embeds [B, image_dim] -> tokens [B, T, token_dim]
    image_dim: int
    token_dim: int
    layers: list[FluxIPLayer]           # per block in order: double blocks, then (all_blocks) single blocks
    all_blocks: bool                    # False: double blocks only (XLabs); True: double + single (InstantX)
    adds_to: str
    norm_kv: bool                       # per-head RMSNorm (no weight, eps 1e-5) on image K and V (InstantX)
    family: str = "flux"
    image_input: str = "pooled"

    @property
    def tokens(self) -> int:
        return self.projection.tokens

    @property
    def uses_clip(self) -> bool:
        return True

    @property
    def uses_face(self) -> bool:
        return False

    @property
    def encoder(self) -> str:
        return ENCODERS[self.variant][0]

    @property
    def title(self) -> str:
        return {"xlabs": f"XLabs {self.version}", "instantx": "InstantX"}[self.variant]

    def describe(self) -> str:
        n = len(self.layers)
        blocks = f"{n} " + ("double + single" if self.all_blocks else "double") + (" block" if n == 1 else " blocks")
        short = self.encoder.split(" (")[0]
        return f"Flux IP-Adapter {self.title} ({short} pooled input, {self.tokens} tokens, {blocks})"
