"""PuLID's ID encoders: ArcFace + EVA-CLIP features of a face -> ID tokens (ToTheBeginning/PuLID pulid/encoders.py,
pulid/encoders_transformer.py). Module names follow the checkpoints' keys, so a file's state dict loads strictly.

Both take `id_cond` [B, 1280] (the raw ArcFace embedding, 512, then EVA-CLIP's L2-normalised projected CLS token,
768; v1.1 / Flux also [B, n_images, 1280]) and `id_vit_hidden`, 5 tensors [B, 577, 1024] (the EVA tower's residual
stream entering blocks 4, 8, 12, 16, 20):
- IDEncoder (SDXL v1): an MLP on id_cond (5 tokens) + per-layer mappings of the CLS and mean patch token (5 tokens);
- IDFormer (SDXL v1.1, Flux): 32 learned queries attending over the mapped id_cond tokens and each layer's features.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ...core.perceiver import DIM_HEAD, PerceiverAttention, feed_forward

N_VIT_LAYERS = 5


def _mlp(dims: list[int]) -> nn.Sequential:
    """Linear, LayerNorm, LeakyReLU, ..., Linear (keys 0, 1, 3, 4, 6 for three linears)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.LayerNorm(b), nn.LeakyReLU()]
    return nn.Sequential(*layers)


def _mlp_dims(sd: dict, prefix: str) -> list[int]:
    return [sd[f"{prefix}.0.weight"].shape[1], sd[f"{prefix}.0.weight"].shape[0], sd[f"{prefix}.3.weight"].shape[0],
            sd[f"{prefix}.6.weight"].shape[0]]


class IDEncoder(nn.Module):
    def __init__(self, body: list[int], mapping: list[int], tokens: int):
        super().__init__()
        self.tokens, self.context_dim = tokens, body[-1] // tokens
        self.body = _mlp(body)
        for i in range(N_VIT_LAYERS):
            setattr(self, f"mapping_{i}", _mlp(mapping))
            setattr(self, f"mapping_patch_{i}", _mlp(mapping))

    @classmethod
    def from_state_dict(cls, sd: dict) -> "IDEncoder":
        mapping = _mlp_dims(sd, "mapping_0")
        return cls(_mlp_dims(sd, "body"), mapping, sd["body.6.weight"].shape[0] // mapping[-1])

    def forward(self, id_cond: torch.Tensor, id_vit_hidden: list[torch.Tensor]) -> torch.Tensor:
        x = self.body(id_cond).reshape(-1, self.tokens, self.context_dim)
        per_layer = [getattr(self, f"mapping_{i}")(h[:, :1]) + getattr(self, f"mapping_patch_{i}")(h[:, 1:]).mean(
            dim=1, keepdim=True) for i, h in enumerate(id_vit_hidden)]
        return torch.cat([x, *per_layer], dim=1)


class IDFormer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, id_tokens: int, queries: int, output_dim: int,
                 id_mapping: list[int], mapping: list[int]):
        super().__init__()
        self.dim, self.id_tokens, self.queries = dim, id_tokens, queries
        self.per_layer = depth // N_VIT_LAYERS
        self.latents = nn.Parameter(torch.zeros(1, queries, dim))
        self.proj_out = nn.Parameter(torch.zeros(dim, output_dim))
        self.layers = nn.ModuleList([nn.ModuleList([PerceiverAttention(dim, heads), feed_forward(dim)])
                                     for _ in range(depth)])
        for i in range(N_VIT_LAYERS):
            setattr(self, f"mapping_{i}", _mlp(mapping))
        self.id_embedding_mapping = _mlp(id_mapping)

    @classmethod
    def from_state_dict(cls, sd: dict) -> "IDFormer":
        queries, dim = sd["latents"].shape[1:]
        depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
        id_mapping = _mlp_dims(sd, "id_embedding_mapping")
        return cls(dim, depth, sd["layers.0.0.to_q.weight"].shape[0] // DIM_HEAD, id_mapping[-1] // dim, queries,
                   sd["proj_out"].shape[1], id_mapping, _mlp_dims(sd, "mapping_0"))

    def forward(self, id_cond: torch.Tensor, id_vit_hidden: list[torch.Tensor]) -> torch.Tensor:
        latents = self.latents.repeat(id_cond.shape[0], 1, 1)
        images = id_cond.shape[1] if id_cond.ndim == 3 else 1            # several faces: their tokens side by side
        x = self.id_embedding_mapping(id_cond).reshape(-1, self.id_tokens * images, self.dim)
        latents = torch.cat([latents, x], dim=1)
        for i in range(N_VIT_LAYERS):
            context = torch.cat([x, getattr(self, f"mapping_{i}")(id_vit_hidden[i])], dim=1)
            for attn, ff in self.layers[i * self.per_layer:(i + 1) * self.per_layer]:
                latents = attn(context, latents) + latents
                latents = ff(latents) + latents
        return latents[:, :self.queries] @ self.proj_out


KINDS = {   # encoder class -> (the PuLID files it is in, key prefixes only it has)
    "IDEncoder": ("PuLID SDXL v1", ("body.", "mapping_patch_")),
    "IDFormer": ("PuLID SDXL v1.1 / Flux", ("latents", "proj_out", "id_embedding_mapping.", "layers.")),
}


def _kinds_in(sd: dict) -> list[str]:
    return [kind for kind, (_, marks) in KINDS.items() if any(k.startswith(marks) for k in sd)]


def encoder_from_state_dict(sd: dict) -> tuple[str, nn.Module]:
    """("IDEncoder" | "IDFormer", module) for an encoder state dict (prefix removed), loaded strictly. A ValueError
    says which encoder the keys are of and what they lack, or that they mix both (a v1 file converted as v1.1, or the
    reverse)."""
    kinds = _kinds_in(sd)
    if len(kinds) != 1:
        if not kinds:
            raise ValueError(f"no PuLID ID encoder keys (keys: {sorted(sd)[:6]}...)")
        raise ValueError("its ID encoder mixes v1 keys (IDEncoder: body, mapping_patch_*) with v1.1 / Flux keys "
                         "(IDFormer: latents, proj_out, layers, id_embedding_mapping)")
    kind = kinds[0]
    cls = IDFormer if kind == "IDFormer" else IDEncoder
    try:
        module = cls.from_state_dict(sd)
    except (KeyError, IndexError) as e:
        raise ValueError(f"its ID encoder is an {kind} ({KINDS[kind][0]}) that lacks {e}") from None
    missing = sorted(set(module.state_dict()) - set(sd))
    unexpected = sorted(set(sd) - set(module.state_dict()))
    if missing or unexpected:
        lacks = f"lacks {len(missing)} keys ({', '.join(missing[:3])}...)" if missing else ""
        extra = f"has {len(unexpected)} keys it does not use ({', '.join(unexpected[:3])}...)" if unexpected else ""
        raise ValueError(f"its ID encoder is an {kind} ({KINDS[kind][0]}) that {' and '.join(filter(None, (lacks, extra)))}")
    module.load_state_dict(sd, strict=True)
    return kind, module.eval().requires_grad_(False)
