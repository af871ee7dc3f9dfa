"""What a mechanism registers with the dispatcher: a Contribution (its delta at a site, behind one Gate: weight,
per-site weights, sigma range, CFG branch, mask) and the SiteCall it is handed at each site."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...core.errors import InfuseError
from .gate import MASK_MODES, ApplyTo, SigmaRange, check_mask_aspect, mask_to_tokens, normalize_mask
from .surfaces.unet import SiteKey


@dataclass(frozen=True)
class SiteCall:
    """What a contribution learns about the call it is part of."""
    site: SiteKey
    chunks: tuple[int, ...]   # cond (0) / uncond (1) of each chunk of rows passed to `delta`
    chunk_size: int           # rows per chunk
    extra_options: dict
    base: torch.Tensor | None = None   # the base attention output for these rows (before any contribution)
    base_is_plain: bool = True         # base is ComfyUI's own attention of these q, k, v (no foreign patch)

    def plain(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """ComfyUI's attention of q, k, v: `base` when no foreign patch computed it."""
        return self.base if self.base_is_plain and self.base is not None else base_attention(q, k, v, self.extra_options)

    @property
    def heads(self) -> int:
        return self.extra_options["n_heads"]

    @property
    def latent_hw(self) -> tuple[int, int]:
        shape = self.extra_options["original_shape"]
        return shape[-2], shape[-1]


class Contribution:
    """One mechanism's change to attention at a set of sites; subclasses implement `delta`.

    `delta(q, k, v, call)` returns the unweighted addition to the attention output for the rows it is
    given (`[rows, tokens, inner_dim]`); weight, per-site weight, schedule, CFG branch and mask are applied
    by the dispatcher.
    """

    kind = "attn2"
    extends_kv = False      # True: also offers `extra_kv`, keys/values to append to the attention's own

    def __init__(self, node: str, weight: float = 1.0, start_percent: float = 0.0, end_percent: float = 1.0,
                 apply_to: ApplyTo | str = ApplyTo.BOTH, mask: torch.Tensor | None = None,
                 site_weights: dict[SiteKey, float] | None = None, mask_mode: str = "reference"):
        self.node = node
        self.weight = float(weight)
        if not 0.0 <= start_percent <= end_percent <= 1.0:
            raise InfuseError(f"start_percent {start_percent} / end_percent {end_percent} is not a range of the "
                              "schedule.", "use 0 <= start_percent <= end_percent <= 1.",
                              input_name="start_percent")
        self.schedule = SigmaRange(start_percent, end_percent)
        self.apply_to = ApplyTo(apply_to)
        self.mask = normalize_mask(mask) if mask is not None else None
        if mask_mode not in MASK_MODES:
            raise InfuseError(f"mask_mode must be one of {MASK_MODES}, got '{mask_mode}'.",
                              "pick reference (as the published pipelines) or soft.", input_name="mask_mode")
        self.mask_mode = mask_mode
        self.site_weights = dict(site_weights or {})
        self.site_keys: frozenset[SiteKey] = frozenset()   # where it is registered (set by `install`)
        self._token_masks: dict[tuple, torch.Tensor] = {}

    def delta(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: SiteCall) -> torch.Tensor:
        raise NotImplementedError

    def extra_kv(self, q, k, v, call: SiteCall) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values appended to the attention's own (only for `extends_kv` contributions)."""
        raise NotImplementedError

    def weight_at(self, site: SiteKey) -> float:
        return self.weight * self.site_weights.get(site, 1.0)

    def acts_anywhere(self) -> bool:
        """False when the gate is zero at every site it is registered at: then nothing of it ever runs."""
        keys = self.site_keys or self.site_weights.keys()
        return any(self.weight_at(s) != 0.0 for s in keys) if keys else self.weight != 0.0

    def active_at(self, sigma: float | None) -> bool:
        return self.schedule.is_full or sigma is None or self.schedule.contains(sigma)

    def prepare_run(self, latent_shape: tuple[int, ...], model_sampling) -> None:
        """Called once per sampling run, before the first step: bind the schedule, check inputs."""
        self.schedule.bind(model_sampling)
        if self.mask is not None:
            check_mask_aspect(self.mask, tuple(latent_shape[-2:]))

    def token_mask(self, n_tokens: int, call: SiteCall, like: torch.Tensor) -> torch.Tensor:
        """The mask at this site's token grid, one row per row of `delta`, cached per run shape."""
        key = (n_tokens, call.latent_hw, call.chunk_size, len(call.chunks), like.device, like.dtype)
        cached = self._token_masks.get(key)
        if cached is None:
            tokens = mask_to_tokens(self.mask, n_tokens, call.latent_hw, self.mask_mode)     # [Bm, N, 1]
            per_chunk = torch.arange(call.chunk_size) % tokens.shape[0]          # batch entry -> mask entry
            cached = tokens[per_chunk.repeat(len(call.chunks))].to(like.device, like.dtype)
            self._token_masks[key] = cached
        return cached

    def to(self, device_or_dtype):
        """ComfyUI calls this on every patch of a model it loads, offloads or frees, clones included, and clones
        share contributions: nothing is dropped or rebuilt here. Working copies are keyed by device and made on
        first use there, once per contribution."""
        return self

    def models(self) -> list:
        """Extra ModelPatchers ComfyUI must load for this contribution (a reference UNet, say)."""
        return []


def base_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict) -> torch.Tensor:
    """Exactly what ComfyUI's CrossAttention computes between its projections and `to_out`."""
    from comfy.ldm.modules.attention import optimized_attention

    return optimized_attention(q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"),
                               transformer_options=extra_options)


def active_contributions(contributions, site, options: dict, cond_or_uncond: list) -> list[tuple]:
    """The Gate at one site for one call, for every surface: (contribution, weight here, chunks it applies to)
    of each contribution that acts. The sigma is read from `options` only when a schedule needs it."""
    from .gate import current_sigma

    plan, sigma = [], None
    for c in contributions:
        weight = c.weight_at(site)
        if weight == 0.0:
            continue
        if not c.schedule.is_full:
            sigma = current_sigma(options) if sigma is None else sigma
            if not c.active_at(sigma):
                continue
        picked = [i for i, cu in enumerate(cond_or_uncond) if c.apply_to.accepts(cu)]
        if picked:
            plan.append((c, weight, picked))
    return plan


def rows_of(picked: list[int], chunk: int, device) -> slice | torch.Tensor:
    """The batch rows of the CFG chunks `picked` (chunks of `chunk` rows each), as a slice where they are one run."""
    if len(picked) == 1:
        return slice(picked[0] * chunk, (picked[0] + 1) * chunk)
    return torch.cat([torch.arange(i * chunk, (i + 1) * chunk) for i in picked]).to(device)
