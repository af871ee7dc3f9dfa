"""The conditioning surface: mechanisms that act through ComfyUI's CONDITIONING (ControlNet / T2I residuals, concat
latents, text-embedding edits) under the same Gate as attention contributions, written in ComfyUI's own cond keys:

- sigma range: a ControlNet's `timestep_percent_range`; for an edited entry, its `start_percent` / `end_percent`
  with the unedited entry kept for the rest of the schedule (how core's ConditioningSetTimestepRange combines);
- CFG branch: which of positive (cond) / negative (uncond) is edited;
- strength: a ControlNet's strength, or the edit's own factor;
- mask: a ControlNet's residuals masked (residual/controlnet.py), or the entry's `mask` for text edits.

ComfyUI applies these while sampling; nothing here runs per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ....core.errors import check_percent_range
from ..gate import ApplyTo, normalize_mask

Conditioning = list          # ComfyUI CONDITIONING: [[embeds, options], ...]


@dataclass(frozen=True)
class ConditioningGate:
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    apply_to: ApplyTo = ApplyTo.BOTH
    mask: torch.Tensor | None = None        # [B, H, W] in 0..1, or None

    def __post_init__(self):
        check_percent_range(self.start_percent, self.end_percent)
        object.__setattr__(self, "apply_to", ApplyTo(self.apply_to))
        if self.mask is not None:
            object.__setattr__(self, "mask", normalize_mask(self.mask))

    @property
    def is_off(self) -> bool:
        return self.strength == 0.0

    @property
    def full_range(self) -> bool:
        return self.start_percent == 0.0 and self.end_percent == 1.0

    def acts_on(self, branch: int) -> bool:
        """branch 0 = positive (cond), 1 = negative (uncond), as ComfyUI marks them."""
        return self.apply_to == ApplyTo.BOTH or (self.apply_to == ApplyTo.COND) == (branch == 0)


Edit = Callable[[torch.Tensor, dict, int], tuple[torch.Tensor, dict]]


def gated(positive: Conditioning, negative: Conditioning, gate: ConditioningGate, edit: Edit,
          ranged: bool = True) -> tuple[Conditioning, Conditioning]:
    """`edit(embeds, options, branch)` applied to every entry of the branches the gate acts on. With `ranged`, the
    gate's sigma range and mask are written into the entries: the edited entry acts inside the range (and the mask,
    the unedited original on the inverted mask), the original outside the range. A mechanism that carries range and
    mask itself (a ControlNet) passes ranged=False. A gate that is off returns both conditionings unchanged."""
    if gate.is_off:
        return positive, negative
    out = []
    for branch, conditioning in enumerate((positive, negative)):
        if not gate.acts_on(branch):
            out.append(conditioning)
            continue
        entries = []
        for embeds, options in conditioning:
            edited = list(edit(embeds, dict(options), branch))
            entries += _ranged(embeds, options, edited, gate) if ranged else [edited]
        out.append(entries)
    return out[0], out[1]


def _ranged(embeds, options: dict, edited: list, gate: ConditioningGate) -> list:
    """The edited entry inside the gate's range and mask, the original everywhere else, each within the range the
    entry already had."""
    s0, e0 = options.get("start_percent", 0.0), options.get("end_percent", 1.0)
    start, end = max(s0, gate.start_percent), min(e0, gate.end_percent)
    if start >= end:                        # the entry never acts inside the gate's range
        return [[embeds, options]]
    inside = {"start_percent": start, "end_percent": end} if (start, end) != (s0, e0) or "start_percent" in options \
        else {}
    parts = []
    if gate.mask is None:
        parts.append([edited[0], {**edited[1], **inside}])
    else:
        own = options.get("mask")
        parts.append([edited[0], {**edited[1], **inside, **_masked(own, gate.mask)}])
        parts.append([embeds, {**options, **inside, **_masked(own, 1.0 - gate.mask)}])
    if s0 < start:
        parts.append([embeds, {**options, "start_percent": s0, "end_percent": start}])
    if end < e0:
        parts.append([embeds, {**options, "start_percent": end, "end_percent": e0}])
    return parts


def _masked(own: torch.Tensor | None, mask: torch.Tensor) -> dict:
    """Cond keys for an entry acting on `mask` (times the entry's own mask, where it had one), as core's
    ConditioningSetMask writes them."""
    if own is not None:
        own = own[None] if own.ndim == 2 else own
        mask = torch.nn.functional.interpolate(mask[:, None], size=own.shape[-2:], mode="bilinear")[:, 0] * own
    return {"mask": mask, "set_area_to_bounds": False, "mask_strength": 1.0}


def with_options(conditioning: Conditioning, **options) -> Conditioning:
    """A copy of a CONDITIONING with `options` set on every entry (a concat latent for a model's extra channels,
    say); the input is left as it is."""
    return [[embeds, {**extra, **options}] for embeds, extra in conditioning]
