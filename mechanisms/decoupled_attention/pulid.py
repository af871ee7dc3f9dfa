"""PuLID on a UNet (SDXL v1, v1.1): decoupled cross-attention on the ID tokens at every attn2, with the reference's
zero tokens and projections (ToTheBeginning/PuLID pulid/attention_processor.py, IDAttnProcessor2_0):

    id  = Attn(Q, K_id, V_id),   K_id = [c, 0 x num_zero] W_k,  V_id = [c, 0 x num_zero] W_v   (bias-free)
    h   = Attn(Q, K_t, V_t)                                                   (the text attention)
    p   = sum_n(h * id) / sum_n(h * h) * h                                    (per channel, over the tokens n)
    none:     Z = h + w * id
    ortho:    Z = h + w * (id - p)
    ortho_v2: Z = h + w * (id + (a - 1) * p),  a = mean over heads of softmax(Q K_id^T)[..., :5] summed (no 1/sqrt(d))

The zero tokens only take softmax mass (their keys and values are 0). The reference's modes: fidelity = 8 zero tokens
+ ortho_v2, extremely style = 16 + ortho (v1 app); v1.1's default 20 + ortho_v2.
"""
from __future__ import annotations

import torch

from ...core.errors import InfuseError
from ..patching.dispatcher import SiteCall, base_attention
from .attention import DecoupledCrossAttention

PROJECTIONS = ("none", "ortho", "ortho_v2")
ORTHO_V2_TOKENS = 5          # the first ID tokens, whose attention mass scales the projection in ortho_v2


def with_zero_tokens(tokens: torch.Tensor, num_zero: int) -> torch.Tensor:
    if num_zero == 0:
        return tokens
    return torch.cat([tokens, tokens.new_zeros(tokens.shape[0], num_zero, tokens.shape[2])], dim=1)


class PulidAttention(DecoupledCrossAttention):
    def __init__(self, node: str, kv_weights: dict, cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor,
                 num_zero: int = 0, projection: str = "none", **schedule):
        if projection not in PROJECTIONS:
            raise InfuseError(f"projection must be one of {PROJECTIONS}, got '{projection}'.",
                              "pick one in the node.", input_name="projection")
        super().__init__(node, kv_weights, with_zero_tokens(cond_tokens, num_zero),
                         with_zero_tokens(uncond_tokens, num_zero), **schedule)
        self.projection = projection

    def delta(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: SiteCall) -> torch.Tensor:
        k_id, v_id = self._rows_kv(call, q)
        out = base_attention(q, k_id, v_id, call.extra_options)
        if self.projection == "none":
            return out
        h = call.base if call.base is not None else call.plain(q, k, v)    # the layer's attention output
        h, out = h.float(), out.float()
        p = (h * out).sum(dim=-2, keepdim=True) / (h * h).sum(dim=-2, keepdim=True) * h
        if self.projection == "ortho":
            return (out - p).to(q.dtype)
        heads = call.heads
        qh = q.float().unflatten(-1, (heads, -1)).transpose(1, 2)            # [B, heads, N, d]
        kh = k_id.float().unflatten(-1, (heads, -1)).transpose(1, 2)         # [B, heads, T, d]
        a = (qh @ kh.transpose(-2, -1)).softmax(dim=-1).mean(dim=1)[..., :ORTHO_V2_TOKENS].sum(-1, keepdim=True)
        return (out + (a - 1) * p).to(q.dtype)


def apply_pulid_sdxl(model, kv: dict, cond: torch.Tensor, uncond: torch.Tensor, what: str, num_zero: int = 0,
                     projection: str = "none", target=None, **schedule) -> PulidAttention:
    """Register PuLID's ID attention on `model` (a clone holding an SDXL UNet); `kv`: site n -> (W_k, W_v)."""
    from ..patching.dispatcher import add_contribution
    from ..patching.surfaces.unet import unet_target
    from .attention import site_kv_weights
    from ...core.errors import current_node

    target = target or unet_target(model)
    contribution = PulidAttention(current_node(), site_kv_weights(kv, target.sites, what), cond, uncond,
                                  num_zero=num_zero, projection=projection, **schedule)
    add_contribution(model, contribution, target.sites)
    return contribution
