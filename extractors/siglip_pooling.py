"""SigLIP's attention-pooling ("MAP") head, and which ComfyUI CLIP_VISION object has one.

ComfyUI builds SigLIP without this head: its CLIP_VISION gives the 729 post-LN tokens, never the pooled [B, 1152]
vector (transformers' `SiglipVisionModel(...).pooler_output`) that the InstantX FLUX IP-Adapter reads. The head is
restated here from transformers' SiglipMultiheadAttentionPoolingHead: a learned probe token attends to the tokens
(nn.MultiheadAttention layout), then a residual MLP on the layer-normed result. Its weights use the file's key names
(`vision_model.head.probe`, `...attention.in_proj_weight`, `...layernorm.*`, `...mlp.fc1.*`, ...).

The registry keys heads weakly by ComfyUI's own ClipVisionModel object, so that object travels through the graph
unchanged (nothing set on it, no subclass) and the head goes when ComfyUI drops the model.
"""
from __future__ import annotations

import os
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import InfuseError
from ..core.files import load_weights, safetensors_keys

HEAD_PREFIXES = ("vision_model.head.", "head.")
LAYER_NORM_EPS = 1e-6        # every SigLIP config; the file does not record it
# A packed MultiheadAttention weight does not record its head count, so it comes from the published SigLIP configs
# (width -> heads): base 768/12, large 1024/16, so400m 1152/16 (head dim 72), giant 1536/16. Other widths need `heads`.
SIGLIP_HEADS = {768: 12, 1024: 16, 1152: 16, 1536: 16}


def heads_for(width: int, heads: int | None = None) -> int:
    """The attention heads of a SigLIP of this width: `heads` when given, else the published configs' count."""
    heads = heads or SIGLIP_HEADS.get(width)
    if not heads or width % heads:
        raise ValueError(f"no SigLIP config of width {width} is known; pass its attention head count")
    return heads


class _PackedAttention(nn.Module):
    """nn.MultiheadAttention's parameters (q, k, v packed in in_proj), computed with scaled_dot_product_attention."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        split = lambda x: x.unflatten(-1, (self.heads, -1)).transpose(1, 2)       # [B, N, W] -> [B, h, N, W/h]
        q, k, v = split(F.linear(query, wq, bq)), split(F.linear(tokens, wk, bk)), split(F.linear(tokens, wv, bv))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.out_proj(out)


class _MLP(nn.Module):
    def __init__(self, width: int, inner: int):
        super().__init__()
        self.fc1 = nn.Linear(width, inner)
        self.fc2 = nn.Linear(inner, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))      # SigLIP's gelu_pytorch_tanh


class SiglipPoolingHead(nn.Module):
    """[B, tokens, W] post-LN SigLIP tokens -> [B, W] pooled output."""

    def __init__(self, width: int, inner: int, heads: int | None = None):
        super().__init__()
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        self.attention = _PackedAttention(width, heads_for(width, heads))
        self.layernorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = _MLP(width, inner)

    @property
    def width(self) -> int:
        return self.probe.shape[-1]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.probe.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens)
        x = x + self.mlp(self.layernorm(x))
        return x[:, 0]


def head_weights(sd: dict) -> dict[str, torch.Tensor]:
    """The pooling head's weights of a state dict (keys under `vision_model.head.` or `head.`), prefix removed."""
    for prefix in HEAD_PREFIXES:
        found = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if found:
            return found
    return {}


def head_from_state_dict(sd: dict, heads: int | None = None) -> SiglipPoolingHead | None:
    """The head in a state dict (fp32, CPU, eval), or None when it has no head keys; sizes come from the shapes."""
    weights = head_weights(sd)
    if not weights:
        return None
    width, inner = weights["probe"].shape[-1], weights["mlp.fc1.weight"].shape[0]
    head = SiglipPoolingHead(width, inner, heads)
    head.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return head.eval().requires_grad_(False)


def read_head(path: str, input_name: str = "clip_name") -> SiglipPoolingHead | None:
    """The pooling head of a weights file, or None. From .safetensors only the head's few tensors are read."""
    keys = safetensors_keys(path, input_name)
    if keys is None:
        sd = load_weights(path, input_name)
    else:
        from safetensors import safe_open

        wanted = [k for k in keys if k.startswith(HEAD_PREFIXES[0])]
        with safe_open(path, framework="pt") as f:
            sd = {k: f.get_tensor(k) for k in wanted}
    try:
        return head_from_state_dict(sd)
    except (KeyError, RuntimeError, ValueError) as e:
        raise InfuseError(f"'{os.path.basename(path)}' has SigLIP pooling-head weights (vision_model.head.*) this "
                          f"pack cannot read ({type(e).__name__}: {str(e).splitlines()[0]}).",
                          "use google's siglip-so400m-patch14-384 model.safetensors or Comfy-Org's "
                          "sigclip_vision_patch14_384.safetensors.", input_name=input_name) from e


_HEADS: "weakref.WeakKeyDictionary[object, SiglipPoolingHead]" = weakref.WeakKeyDictionary()


def remember_head(clip_vision, head: SiglipPoolingHead) -> None:
    """Note the pooling head of a ComfyUI CLIP_VISION object, for as long as that object lives."""
    _HEADS[clip_vision] = head


def head_of(clip_vision) -> SiglipPoolingHead | None:
    """The pooling head remembered for this CLIP_VISION object, or None (loaded by another node, or no head)."""
    return _HEADS.get(clip_vision)
