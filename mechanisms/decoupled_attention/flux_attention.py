"""Flux IP-Adapters on the DiT blocks. At every block b that has image K / V layers:

    ip_b = Attn(Q_b, K_i, V_i),   K_i = c W_k (+ b_k),   V_i = c W_v (+ b_v)    (per head; InstantX: RMS-normed)

`Q_b` is the block's own attention query after QK-norm and before RoPE (image tokens; in InstantX's single blocks
text and image tokens), `c` the image tokens; the image keys get no RoPE. Where it goes:
- XLabs (x-flux IPDoubleStreamBlockProcessor, diffusers FluxIPAdapterAttnProcessor): `img += w * ip_b` onto the
  double block's image output, after its MLP;
- InstantX (IPAFluxAttnProcessor2_0): `attn += w * ip_b` into the joint attention's output, before the block's
  projection, gate and MLP, in double and single blocks.
K_i and V_i depend on the image tokens only: computed once per block, branch, device and dtype, reused every step.
"""
from __future__ import annotations

import torch

from ...core.errors import InfuseError, current_node
from ...core.records import ImageEmbeds
from ..patching.surfaces.dit import BlockContribution, BlockKey, BlockSite, add_block_contribution, block_sites
from .attention import rows_kv
from .flux_adapter import FluxIPAdapterModel, FluxIPLayer

RMS_EPS = 1e-5      # InstantX: diffusers RMSNorm(128, eps=1e-5, elementwise_affine=False)
COMBINE = ("concat", "average")


def _per_head(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _rms(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS)


class FluxImageAttention(BlockContribution):
    reads_query = True
    def __init__(self, node: str, layers: dict[BlockKey, FluxIPLayer], heads: dict[BlockKey, int],
                 cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor, adds_to: str, norm_kv: bool, **schedule):
        super().__init__(node, **schedule)
        self.layers, self.heads = layers, heads
        self.tokens = {0: cond_tokens, 1: uncond_tokens}     # ComfyUI: 0 = cond, 1 = uncond
        self.acts_in_attention = adds_to == "attention"
        self.norm_kv = norm_kv
        self._kv: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def sites(self) -> list[BlockKey]:
        return list(self.layers)

    def _branch_kv(self, site: BlockKey, branch: int, like: torch.Tensor):
        key = (site, branch, like.device, like.dtype)
        kv = self._kv.get(key)
        if kv is None:
            layer, heads = self.layers[site], self.heads[site]
            tokens = self.tokens[branch].to(like.device, torch.float32)
            out = []
            for w, b in ((layer.to_k, layer.k_bias), (layer.to_v, layer.v_bias)):
                b = None if b is None else b.to(like.device, torch.float32)
                x = _per_head(torch.nn.functional.linear(tokens, w.to(like.device, torch.float32), b), heads)
                out.append((_rms(x) if self.norm_kv else x).to(like.dtype))
            kv = tuple(out)
            self._kv[key] = kv
        return kv

    def _rows_kv(self, call, like: torch.Tensor):
        return rows_kv(self._kv, call, lambda branch: self._branch_kv(call.site, branch, like), like)

    def _image_attention(self, q: torch.Tensor, call) -> torch.Tensor:
        from comfy.ldm.modules.attention import optimized_attention

        k, v = self._rows_kv(call, q)
        return optimized_attention(q, k, v, q.shape[1], skip_reshape=True)      # [rows, N, heads * head_dim]

    def block_delta(self, block_input, block_output, call) -> torch.Tensor:
        return self._image_attention(call.image_query(), call)

    def attention_delta(self, call) -> torch.Tensor:
        q = call.joint_query() if call.site[0] == "single_block" else call.image_query()
        return self._image_attention(q, call)


def check_pooled_width(adapter: FluxIPAdapterModel, encoder: str, width: int, input_name: str) -> None:
    """The encoder's pooled output fits the adapter; `encoder` names it (ImageEmbeds.encoder or an encoder's name).
    Run it on the encoder before encoding where the width is known (a wrong ViT-H or SigLIP costs a whole encode)."""
    if width == adapter.image_dim:
        return
    got = encoder.split(":", 1)[-1]
    problem = f"the encoder ({got}) gives no pooled output" if width == 0 else \
        f"the image embeds are {width} wide ({got})"
    raise InfuseError(f"{problem}, but '{adapter.name}' ({adapter.describe()}) takes {adapter.image_dim}-wide "
                      "pooled embeds.", f"connect {adapter.encoder}.", input_name=input_name)


@torch.no_grad()
def flux_image_tokens(adapter: FluxIPAdapterModel, embeds: ImageEmbeds, negative: ImageEmbeds | None = None,
                      combine: str = "concat", uncond_same: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) image tokens, each [1, T, C]. Several images: tokens side by side (concat) or one averaged
    embedding. Uncond: the negative image's tokens; without one, the same tokens as cond (`uncond_same`, InstantX's
    ComfyUI pack) or those of zero embeds."""
    if combine not in COMBINE:
        raise InfuseError(f"combine must be one of {COMBINE}, got '{combine}'.", "pick concat or average.",
                          input_name="combine")
    check_pooled_width(adapter, embeds.encoder, embeds.pooled_dim, "clip_vision")
    x = embeds.pooled.float()
    if negative is not None:
        check_pooled_width(adapter, negative.encoder, negative.pooled_dim, "negative_image")
        neg = negative.pooled.float()[torch.arange(len(x)) % len(negative)]
    else:
        neg = x if uncond_same else torch.zeros_like(x)
    if combine == "average":
        x, neg = x.mean(0, keepdim=True), neg.mean(0, keepdim=True)
    projection = adapter.projection.float()
    cond, uncond = projection(x), projection(neg)
    return cond.reshape(1, -1, cond.shape[-1]), uncond.reshape(1, -1, uncond.shape[-1])


def adapter_layers(adapter: FluxIPAdapterModel, sites: list[BlockSite]) -> dict[BlockSite, FluxIPLayer]:
    """The adapter's layer for each block of the model, in order (double blocks, then single blocks where the
    adapter has them); an adapter made for another Flux is an error."""
    double = [s for s in sites if s.kind == "double_block"]
    targets = double + [s for s in sites if s.kind == "single_block"] if adapter.all_blocks else double
    if len(adapter.layers) != len(targets):
        kinds = "double and single" if adapter.all_blocks else "double"
        raise InfuseError(f"'{adapter.name}' has layers for {len(adapter.layers)} {kinds} blocks, but the model has "
                          f"{len(targets)} (Flux.1 dev / schnell: 19 double + 38 single).",
                          "use a Flux IP-Adapter made for this model.", input_name="model")
    layers = dict(zip(targets, adapter.layers))
    for site, layer in layers.items():
        if layer.to_k.shape[0] != site.hidden_size:
            raise InfuseError(f"'{adapter.name}' projects image tokens to {layer.to_k.shape[0]} values per token, but "
                              f"the model's {site} is {site.hidden_size} wide.",
                              "use a Flux IP-Adapter made for this model.", input_name="model")
    return layers


def apply_flux_ipadapter(model, adapter: FluxIPAdapterModel, cond: torch.Tensor, uncond: torch.Tensor,
                         sites: list[BlockSite] | None = None, **schedule) -> FluxImageAttention:
    """Register the adapter's image attention on `model` (a clone the caller owns, holding a Flux model)."""
    sites = sites if sites is not None else block_sites(model)
    layers = adapter_layers(adapter, sites)
    contribution = FluxImageAttention(current_node(), {s.key: layer for s, layer in layers.items()},
                                      {s.key: s.heads for s in layers}, cond, uncond, adapter.adds_to,
                                      adapter.norm_kv, **schedule)
    add_block_contribution(model, contribution, list(layers))
    return contribution
