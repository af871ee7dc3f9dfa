"""A PuLID file as the decoupled-attention family uses it: the ID encoder and, for SDXL, the ID K / V weights of every
cross-attention, for Flux the CA layers that follow the blocks. Built by loaders/pulid_file.py."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(eq=False)
class PulidModel:
    name: str
    base: str                           # "sdxl" | "flux"
    version: str                        # "v1" (IDEncoder, 10 tokens) | "v1.1" (IDFormer) | "flux" (IDFormer)
    encoder: torch.nn.Module            # (id_cond [B, 1280], 5 x [B, 577, 1024]) -> ID tokens [B, T, 2048]
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)   # SDXL: site n -> (W_k, W_v)
    ca_layers: list = field(default_factory=list)                                     # Flux: PerceiverAttentionCA

    def ca_patcher(self):
        """Flux: the CA layers as one ComfyUI model, loaded with the Flux model that runs them."""
        if getattr(self, "_ca_patcher", None) is None:
            from ...core.managed import managed

            self._ca_patcher = managed(torch.nn.ModuleList(self.ca_layers))
        return self._ca_patcher

    @property
    def tokens(self) -> int:
        return getattr(self.encoder, "queries", None) or 2 * getattr(self.encoder, "tokens", 5)

    def describe(self) -> str:
        where = f"{len(self.kv)} cross-attention layers" if self.base == "sdxl" else f"{len(self.ca_layers)} ID layers"
        kind = type(self.encoder).__name__
        return f"PuLID {'SDXL ' + self.version if self.base == 'sdxl' else 'Flux'} ({kind}, {self.tokens} ID tokens, {where})"
