"""Contributions that act inside a DiT block's attention (InstantX's IP-Adapter adds its image attention to the
joint attention's output, before the block's projection, gate and MLP).

Flux's blocks compute attention through `comfy.ldm.flux.math.attention`, which calls ComfyUI's `optimized_attention`;
that honours `transformer_options["optimized_attention_override"]` (comfy/ldm/modules/attention.py, `wrap_attn`).
For one block call, the dispatcher hands the block a copy of its transformer_options with an override that runs the
attention as it would have run (through an override already there, if any) and adds each contribution's weighted,
masked delta to its rows. Nothing is written into the model's options; other blocks never see it.
"""
from __future__ import annotations

import torch

OVERRIDE_KEY = "optimized_attention_override"


def add_rows(target: torch.Tensor, delta: torch.Tensor, weight: float, rows) -> None:
    """target[rows] += weight * delta, in place; rows: None (all), a slice or an index tensor."""
    if rows is None:
        target.add_(delta, alpha=weight)
    elif isinstance(rows, slice):
        target[rows].add_(delta, alpha=weight)
    else:
        target.index_add_(0, rows, delta, alpha=weight)


def masked_attention_delta(contribution, call, delta: torch.Tensor, n_txt: int) -> torch.Tensor:
    """A delta over [text tokens (n_txt of them), image tokens] with the contribution's mask on the image tokens;
    with a mask, text tokens get nothing (they would carry the change to every image token of later blocks)."""
    if contribution.mask is None:
        return delta
    image = delta[:, n_txt:] * contribution.token_mask(call, delta)
    if n_txt == 0:
        return image
    return torch.cat([torch.zeros_like(delta[:, :n_txt]), image], dim=1)


class AttentionAddition:
    """The attention override of one block call; `n_txt`: text tokens at the front of the attention's output that
    the deltas cover (a single block's), 0 where they cover the image tokens only (a double block's, which come
    after the text tokens in the output)."""

    def __init__(self, calls: list, previous, n_txt: int):
        self.calls = calls            # (contribution, weight, rows, BlockCall)
        self.previous = previous
        self.n_txt = n_txt

    def __call__(self, func, *args, **kwargs):
        out = self.previous(func, *args, **kwargs) if self.previous is not None else func(*args, **kwargs)
        deltas = []
        for c, weight, rows, call in self.calls:
            d = masked_attention_delta(c, call, c.attention_delta(call), self.n_txt)
            deltas.append((d.to(out.dtype), weight, rows))
        target = out[:, out.shape[1] - deltas[0][0].shape[1]:]       # double block: the image tokens at the end
        for d, weight, rows in deltas:
            add_rows(target, d, weight, rows)
        return out


def with_attention_addition(args: dict, calls: list, n_txt: int) -> dict:
    """The block's args with a transformer_options copy that adds the contributions in `calls` to its attention."""
    options = args.get("transformer_options") or {}
    addition = AttentionAddition(calls, options.get(OVERRIDE_KEY), n_txt)
    return {**args, "transformer_options": {**options, OVERRIDE_KEY: addition}}
