"""What a DiT-block contribution sees of one block call: the block's inputs and output split into text and
image tokens, and values from inside the block (the image query after QK-norm, before RoPE, ...) computed
from the block's own modules, once per block call, only when a contribution asks for them.

Flux (comfy/ldm/flux/model.py) runs double blocks on separate `img` / `txt` streams and single blocks on
`img = cat(txt, img)`; here both kinds look the same: `{"img": [B, N_img, D], "txt": [B, T, D], "vec", "pe",
"attn_mask", "transformer_options"}`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

LAYOUT_KEY = "infuse.dit.layout"


@dataclass(frozen=True)
class TokenLayout:
    """Recorded once per model call (a DIFFUSION_MODEL wrapper) into a call-local transformer_options."""
    diffusion_model: torch.nn.Module
    latent_hw: tuple[int, int]   # the latent being denoised
    grid_hw: tuple[int, int]     # its token grid: latent patches, ceil(h / patch) x ceil(w / patch), row-major
    n_txt: int                   # text tokens in front of the image tokens in single blocks

    @property
    def n_grid(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]


def token_layout(model, x: torch.Tensor, context: torch.Tensor) -> "TokenLayout":
    """The token layout of one call of a Flux-style model on latent `x` with text tokens `context`."""
    p = model.patch_size
    h, w = x.shape[-2:]
    return TokenLayout(model, (h, w), (-(-h // p), -(-w // p)), context.shape[1])


def _take(t, rows, batch: int):
    if rows is None or not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != batch or batch == 1:
        return t
    return t[rows]


def split_tokens(stream: dict, kind: str, n_txt: int, snapshot: bool) -> dict:
    """A block's args / output with image and text tokens apart. `snapshot` copies the tensor the block updates
    in place (txt in double blocks, the joint stream in single blocks), so inputs survive the block call."""
    out = dict(stream)
    if kind == "double_block":
        if snapshot:
            out["txt"] = stream["txt"].clone()
    else:
        joint = stream["img"].clone() if snapshot else stream["img"]
        out["txt"], out["img"] = joint[:, :n_txt], joint[:, n_txt:]
    return out


class BlockState:
    """One call of one block, shared by every contribution active there."""

    def __init__(self, kind: str, index: int, layout: TokenLayout, before: dict, after: dict | None = None):
        self.kind, self.index, self.layout = kind, index, layout
        self.before, self.after = before, after      # after: set once the block ran
        self.batch = before["img"].shape[0]
        self._qkv = None
        self._queries: dict[str, torch.Tensor] = {}

    @property
    def block(self) -> torch.nn.Module:
        blocks = self.layout.diffusion_model.double_blocks if self.kind == "double_block" \
            else self.layout.diffusion_model.single_blocks
        return blocks[self.index]

    def _modulated(self, x: torch.Tensor):
        """The block's pre-attention input (norm + modulation) of tokens x, and the linear that projects it."""
        from comfy.ldm.flux.layers import apply_mod

        b, vec = self.block, self.before["vec"]
        if self.kind == "double_block":
            mod, _ = b.img_mod(vec)
            return apply_mod(b.img_norm1(x), 1 + mod.scale, mod.shift), b.img_attn.qkv, b.img_attn.norm
        mod, _ = b.modulation(vec)
        return apply_mod(b.pre_norm(x), 1 + mod.scale, mod.shift), b.linear1, b.norm

    def image_qkv(self):
        """q, k, v of the image tokens, [B, heads, N_img, head_dim], q and k after QK-norm, before RoPE: the
        block's own modules and math (comfy/ldm/flux/layers.py)."""
        if self._qkv is None:
            b = self.block
            x, linear, norm = self._modulated(self.before["img"])
            qkv = linear(x)[..., :3 * b.hidden_size]
            q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, b.num_heads, -1).permute(2, 0, 3, 1, 4)
            q, k = norm.query_norm(q).to(v), norm.key_norm(k).to(v)     # QKNorm.forward, RoPE comes later
            self._qkv = (q, k, v)
        return self._qkv

    def capture(self, q_roped: torch.Tensor, pe: torch.Tensor | None) -> None:
        """The block's own attention query as its attention received it ([B, heads, text + image tokens, head_dim],
        after RoPE), kept without RoPE: what `query` returns then, at no extra projection."""
        q = q_roped if pe is None else unrope(q_roped, pe)
        self._queries["joint"] = q
        self._queries["image"] = q[:, :, q.shape[2] - self.before["img"].shape[1]:]

    def query(self, joint: bool = False) -> torch.Tensor:
        """The attention query of the image tokens (joint: text then image tokens, as a single block attends),
        [B, heads, N, head_dim], after QK-norm, before RoPE: captured from the block's attention where the
        dispatcher could, else projected (only the q rows of the layer, where it allows it)."""
        key = "joint" if joint else "image"
        if key not in self._queries:
            if not joint and self._qkv is not None:
                self._queries[key] = self._qkv[0]
            else:
                b = self.block
                tokens = torch.cat([self.before["txt"], self.before["img"]], 1) if joint else self.before["img"]
                x, linear, norm = self._modulated(tokens)
                q = _rows_of_linear(linear, x, b.hidden_size)
                q = q.view(q.shape[0], q.shape[1], b.num_heads, -1).transpose(1, 2)
                self._queries[key] = norm.query_norm(q).to(x.dtype)
        return self._queries[key]


def unrope(x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """The inverse of comfy.ldm.flux.math's RoPE: pe holds a 2x2 rotation per position and frequency
    ([B, 1, L, D/2, 2, 2]); its transpose turns a rotated query back."""
    pe_t = pe.transpose(-1, -2)
    x_ = x.to(pe.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    return (pe_t[..., 0] * x_[..., 0] + pe_t[..., 1] * x_[..., 1]).reshape(*x.shape).to(x.dtype)


def _rows_of_linear(linear: torch.nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """linear(x)[..., :n]: only those rows of the weight where it is a plain layer in x's dtype and device (no cast,
    no weight patch function, no quantised weight), else the whole layer, sliced."""
    weight, bias = getattr(linear, "weight", None), getattr(linear, "bias", None)
    plain = (isinstance(linear, torch.nn.Linear) and not getattr(linear, "comfy_cast_weights", False)
             and not getattr(linear, "weight_function", None) and not getattr(linear, "bias_function", None)
             and weight is not None and weight.dtype == x.dtype and weight.device == x.device)
    if plain:
        return torch.nn.functional.linear(x, weight[:n], None if bias is None else bias[:n])
    return linear(x)[..., :n]


class BlockCall:
    """What a contribution learns about the block call it is part of, for the rows it is given."""

    def __init__(self, state: BlockState, rows, chunks: tuple[int, ...], chunk_size: int):
        self.state = state
        self.rows = rows                  # None (every row), a slice or an index tensor into the batch
        self.chunks = chunks              # cond (0) / uncond (1) of each chunk of rows passed to block_delta
        self.chunk_size = chunk_size

    @cached_property
    def input(self) -> dict:
        return {k: _take(v, self.rows, self.state.batch) for k, v in self.state.before.items()}

    @cached_property
    def output(self) -> dict:
        return {k: _take(v, self.rows, self.state.batch) for k, v in self.state.after.items()}

    @property
    def site(self) -> tuple[str, int]:
        return (self.state.kind, self.state.index)

    @property
    def block(self) -> torch.nn.Module:
        return self.state.block

    @property
    def transformer_options(self) -> dict:
        return self.state.before.get("transformer_options") or {}

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.state.layout.latent_hw

    @property
    def grid_hw(self) -> tuple[int, int]:
        return self.state.layout.grid_hw

    @property
    def n_img(self) -> int:
        return self.state.before["img"].shape[1]

    @property
    def n_txt(self) -> int:
        return self.state.before["txt"].shape[1]

    def image_qkv(self):
        q, k, v = self.state.image_qkv()
        return tuple(_take(t, self.rows, t.shape[0]) for t in (q, k, v))

    def image_query(self) -> torch.Tensor:
        """The image tokens' attention query of this block, [rows, heads, N_img, head_dim], after QK-norm and
        before RoPE; computed once per block call, shared by every contribution there."""
        return _take(self.state.query(), self.rows, self.state.batch)

    def joint_query(self) -> torch.Tensor:
        """The query of text then image tokens, as a single block's attention sees them (before RoPE)."""
        return _take(self.state.query(joint=True), self.rows, self.state.batch)
