"""Decoupled cross-attention (IP-Adapter family, InstantID's adapter, PuLID):

    Z = Attn(Q, K_t, V_t) + w * Attn(Q, K_i, V_i),   K_i = c_i W'_k,  V_i = c_i W'_v

`Q` is the query of the frozen text cross-attention, `c_i` the image tokens. The dispatcher supplies the
first term and `w`; this contribution computes the second. `K_i`, `V_i` depend only on the image tokens,
so they are computed once per site, device and dtype and reused on every step.
"""
from __future__ import annotations

import torch

from ...core.errors import InfuseError
from ..patching.dispatcher import Contribution, SiteCall, base_attention
from ..patching.surfaces.unet import Site, SiteKey


class DecoupledCrossAttention(Contribution):
    kind = "attn2"

    def __init__(self, node: str, kv_weights: dict[SiteKey, tuple[torch.Tensor, torch.Tensor]],
                 cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor, **schedule):
        """`kv_weights`: site -> (W'_k, W'_v) as stored in files ([inner, token_dim]); tokens: [B, T, token_dim]
        (B = 1 for one set of image tokens for every batch entry, or one set per batch entry)."""
        super().__init__(node, **schedule)
        if cond_tokens.shape[1:] != uncond_tokens.shape[1:]:
            raise ValueError(f"cond tokens {tuple(cond_tokens.shape)} and uncond tokens "
                             f"{tuple(uncond_tokens.shape)} differ")
        self.kv_weights = kv_weights
        self.tokens = {0: cond_tokens, 1: uncond_tokens}     # ComfyUI: 0 = cond, 1 = uncond
        self._kv: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def sites(self) -> list[SiteKey]:
        return list(self.kv_weights)

    def _branch_kv(self, site: SiteKey, branch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (site, branch, like.device, like.dtype)
        kv = self._kv.get(key)
        if kv is None:
            wk, wv = self.kv_weights[site]
            tokens = self.tokens[branch].to(like.device, torch.float32)
            kv = tuple((tokens @ w.to(like.device, torch.float32).T).to(like.dtype) for w in (wk, wv))
            self._kv[key] = kv
        return kv

    def _rows_kv(self, call: SiteCall, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rows_kv(self._kv, call, lambda branch: self._branch_kv(call.site, branch, like), like)

    def delta(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: SiteCall) -> torch.Tensor:
        k_i, v_i = self._rows_kv(call, q)
        return base_attention(q, k_i, v_i, call.extra_options)


def rows_kv(cache: dict, call, branch_kv, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K_i, V_i for the rows of a call: `branch_kv(branch)`'s for each chunk (cond / uncond), one set of tokens per
    batch entry (cycled), cached per site, chunk layout, device and dtype."""
    key = (call.site, call.chunks, call.chunk_size, like.device, like.dtype)
    kv = cache.get(key)
    if kv is None:
        parts_k, parts_v = [], []
        for branch in call.chunks:
            k, v = branch_kv(branch)
            index = torch.arange(call.chunk_size, device=k.device) % k.shape[0]
            parts_k.append(k[index])
            parts_v.append(v[index])
        kv = (torch.cat(parts_k), torch.cat(parts_v))
        cache[key] = kv
    return kv


def site_kv_weights(kv_by_number: dict[int, tuple[torch.Tensor, torch.Tensor]], sites: list[Site],
                    what: str) -> dict[SiteKey, tuple[torch.Tensor, torch.Tensor]]:
    """Map a file's per-layer K/V weights (numbered in processor order) onto the model's sites, checking widths."""
    if len(kv_by_number) != len(sites):
        raise InfuseError(f"{what} has {len(kv_by_number)} cross-attention layers but the model has "
                          f"{len(sites)}.", "use an adapter made for this model family.", input_name="model")
    out = {}
    for n, site in enumerate(sites):
        wk, wv = kv_by_number[n]
        if wk.shape[0] != site.inner_dim or wv.shape[0] != site.inner_dim:
            raise InfuseError(f"{what} layer {2 * n + 1} is {wk.shape[0]} wide but the model's site {site} "
                              f"is {site.inner_dim} wide.",
                              "use an adapter made for this model family.", input_name="model")
        out[site.key] = (wk, wv)
    return out
