"""A DiT block's attention as Infuse contributions see it: its query, captured as the attention receives it (so no
contribution projects it again), and contributions that act inside it (InstantX's IP-Adapter adds its image
attention to the joint attention's output, before the block's projection, gate and MLP).

Flux's blocks compute attention through `comfy.ldm.flux.math.attention`, which calls ComfyUI's `optimized_attention`;
that honours `transformer_options["optimized_attention_override"]` (comfy/ldm/modules/attention.py, `wrap_attn`).
For one block call, the dispatcher hands the block a copy of its transformer_options with an override that keeps
the query, runs the attention as it would have run (through an override already there, if any) and adds each
in-attention contribution's weighted, masked delta to its rows. Nothing is written into the model's options; other blocks never see it.
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


class BlockAttention:
    """The attention override of one block call: keeps the query in `state`; adds the deltas of `calls` (the
    in-attention contributions). `n_txt`: text tokens at the front of the attention's output that the deltas cover
    (a single block's), 0 where they cover the image tokens only (a double block's, which come after the text
    tokens in the output)."""

    def __init__(self, state, calls: list, previous, n_txt: int):
        self.state = state
        self.calls = calls            # (contribution, weight, rows, BlockCall)
        self.previous = previous
        self.n_txt = n_txt

    def __call__(self, func, *args, **kwargs):
        q = args[0] if args else kwargs.get("q")
        if isinstance(q, torch.Tensor) and q.ndim == 4 and kwargs.get("skip_reshape"):
            self.state.capture(q, self.state.before.get("pe"))
        out = self.previous(func, *args, **kwargs) if self.previous is not None else func(*args, **kwargs)
        if not self.calls:
            return out
        deltas = []
        for c, weight, rows, call in self.calls:
            d = masked_attention_delta(c, call, c.attention_delta(call), self.n_txt)
            deltas.append((d.to(out.dtype), weight, rows))
        target = out[:, out.shape[1] - deltas[0][0].shape[1]:]       # double block: the image tokens at the end
        for d, weight, rows in deltas:
            add_rows(target, d, weight, rows)
        return out


def with_block_attention(args: dict, state, calls: list, n_txt: int) -> dict:
    """The block's args with a transformer_options copy whose attention override keeps the query in `state` and adds
    the contributions in `calls` to the attention's output."""
    options = args.get("transformer_options") or {}
    override = BlockAttention(state, calls, options.get(OVERRIDE_KEY), n_txt)
    return {**args, "transformer_options": {**options, OVERRIDE_KEY: override}}
