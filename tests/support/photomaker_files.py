"""Random PhotoMaker weights in the published key layouts (TencentARC/PhotoMaker photomaker-v1.bin / -v2.bin).

`id_encoder`: the state dict of HF `CLIPVisionModelWithProjection` (ViT-L/14 at 224 px: 24 layers, 1024 wide,
16 heads, mlp 4096, 257 positions, patch conv without bias, the `pre_layrnorm` spelling, no `position_ids`) plus
`visual_projection_2` and `fuse_module.*` (v1: 407 keys), and for v2 the 56 `qformer_perceiver.*` keys (463 keys).
Keys come in the modules' registration order. The tower can be made smaller for fast tests (layers / width);
the projections, the fuse module and the perceiver keep their real sizes (768 / 1280 / 2048, ArcFace 512), only
their inputs from the tower follow `width`.

`lora_weights`: the old diffusers LoRAAttnProcessor format PhotoMaker ships,
`unet.<diffusers transformer block>.attn{1,2}.processor.to_{q,k,v,out}_lora.{down,up}.weight`, no alpha
(ComfyUI maps it in `comfy.lora.model_lora_keys_unet` and applies it with scale 1).

`.bin`: `torch.save({"id_encoder": ..., "lora_weights": ...})`; `.safetensors`: one flat dict with `id_encoder.` /
`lora_weights.` prefixes (what TencentARC's `load_photomaker_adapter` reads from a safetensors file).
"""
from __future__ import annotations

from pathlib import Path

from .ipadapter_files import Randn, _linear, _perceiver, write_parts

LAYERS, WIDTH, HEADS = 24, 1024, 16          # CLIP ViT-L/14 (PhotoMaker's VISION_CONFIG_DICT)
PATCH, IMAGE = 14, 224
PROJ_L, PROJ_G, EMBED, ARCFACE = 768, 1280, 2048, 512
V2_TOKENS, V2_DEPTH, V2_HEADS, V2_DIM_HEAD = 2, 4, 16, 128


def _vision(r: Randn, layers: int, width: int, heads: int, scale: bool) -> dict:
    """`vision_model.*` of HF CLIPVisionModel. scale=True: weights ~ randn / sqrt(fan_in), embeddings unit-ish, LN
    weights ~ 1, biases small, so a 24-layer forward stays unit-ish; scale=False: every tensor plain N(0, 1)."""
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")

    def t(*shape, fan_in=None, s=None):
        if not scale:
            return r(*shape, scale=1.0)
        return r(*shape, scale=s if s is not None else fan_in ** -0.5)

    def lin(p, out_dim, in_dim):
        return {f"{p}.weight": t(out_dim, in_dim, fan_in=in_dim), f"{p}.bias": t(out_dim, s=0.02)}

    def ln(p):
        return ({f"{p}.weight": 1.0 + r(width, scale=0.05), f"{p}.bias": r(width, scale=0.05)} if scale
                else {f"{p}.weight": r(width, scale=1.0), f"{p}.bias": r(width, scale=1.0)})

    v = "vision_model"
    positions = (IMAGE // PATCH) ** 2 + 1
    sd = {f"{v}.embeddings.class_embedding": t(width, s=1.0),
          f"{v}.embeddings.patch_embedding.weight": t(width, 3, PATCH, PATCH, fan_in=3 * PATCH * PATCH),
          f"{v}.embeddings.position_embedding.weight": t(positions, width, s=0.1)}
    sd |= ln(f"{v}.pre_layrnorm")
    for i in range(layers):
        p = f"{v}.encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            sd |= lin(f"{p}.self_attn.{proj}", width, width)
        sd |= ln(f"{p}.layer_norm1") | lin(f"{p}.mlp.fc1", 4 * width, width) | lin(f"{p}.mlp.fc2", width, 4 * width)
        sd |= ln(f"{p}.layer_norm2")
    return sd | ln(f"{v}.post_layernorm")


def _fuse(r: Randn, embed: int = EMBED) -> dict:
    """FuseModule(2048): mlp1 = LN(4096) 4096 -> 2048 -> 2048, mlp2 = LN(2048) 2048 -> 2048 -> 2048, layer_norm."""
    sd = {}
    for name, in_dim in (("mlp1", 2 * embed), ("mlp2", embed)):
        p = f"fuse_module.{name}"
        sd |= r.norm(in_dim, f"{p}.layernorm") | _linear(r, f"{p}.fc1", embed, in_dim)
        sd |= _linear(r, f"{p}.fc2", embed, embed)
    return sd | r.norm(embed, "fuse_module.layer_norm")


def id_encoder_v1(seed: int = 0, scale_vision: bool = True, layers: int = LAYERS, width: int = WIDTH,
                  heads: int = HEADS, projections: tuple[int, int] = (PROJ_L, PROJ_G)) -> dict:
    """photomaker-v1.bin's `id_encoder` (PhotoMakerIDEncoder): 407 keys, 326,273,024 values at the real size.
    `heads` is not stored in the file (only checked to divide width): give the reference the same count.
    `projections`: the text encoders' widths (real: CLIP-L 768 + CLIP-G 1280; a tiny SDXL's text width in tests)."""
    r = Randn(seed)
    sd = _vision(r, layers, width, heads, scale_vision)
    sd["visual_projection.weight"] = r(projections[0], width)
    sd["visual_projection_2.weight"] = r(projections[1], width)
    return sd | _fuse(r, sum(projections))


def qformer_perceiver(seed: int = 0, width: int = WIDTH, embed: int = EMBED) -> dict:
    """v2's 56 `qformer_perceiver.*` keys: token_proj 512 -> 2048 -> 2 x 2048, token_norm, and FacePerceiverResampler
    (proj_in width -> 2048, 4 layers of 16 heads x 128, FF x4 without bias, proj_out, norm_out; no latents)."""
    r = Randn(seed)
    q = "qformer_perceiver"
    sd = _linear(r, f"{q}.token_proj.0", 4 * ARCFACE, ARCFACE)
    sd |= _linear(r, f"{q}.token_proj.2", V2_TOKENS * embed, 4 * ARCFACE)
    sd |= r.norm(embed, f"{q}.token_norm")
    p = f"{q}.perceiver_resampler"
    sd |= _linear(r, f"{p}.proj_in", embed, width) | _linear(r, f"{p}.proj_out", embed, embed)
    sd |= r.norm(embed, f"{p}.norm_out")
    # PhotoMaker: embed // 128 heads of 128; _perceiver sizes the inner width as heads x 64 (real: 32 x 64 = 16 x 128)
    return sd | _perceiver(r, f"{p}.", embed, V2_DEPTH, heads=max(1, embed // V2_DIM_HEAD) * V2_DIM_HEAD // 64)


def id_encoder_v2(seed: int = 0, scale_vision: bool = True, layers: int = LAYERS, width: int = WIDTH,
                  heads: int = HEADS, projections: tuple[int, int] = (PROJ_L, PROJ_G)) -> dict:
    """photomaker-v2.bin's `id_encoder` (PhotoMakerIDEncoder_CLIPInsightfaceExtendtoken): the v1 keys (its forward
    leaves the two visual projections unused, the strict load needs them) plus `qformer_perceiver.*`: 463 keys,
    543,395,840 values at the real size. The v1 part equals id_encoder_v1 with the same seed and tower."""
    v1 = id_encoder_v1(seed, scale_vision, layers, width, heads, projections)
    sd = {k: v for k, v in v1.items() if not k.startswith(("fuse_module.", "visual_projection_2."))}
    sd |= {k: v for k, v in v1.items() if k.startswith("fuse_module.")}
    sd["visual_projection_2.weight"] = v1["visual_projection_2.weight"]
    return sd | qformer_perceiver(seed + 1000, width, sum(projections))


def lora_weights(unet_sites: list[tuple[str, int, int]], rank: int = 4, seed: int = 0) -> dict:
    """`lora_weights` for the UNet sites (diffusers transformer-block path, inner width, context width):
    attn1 (self) and attn2 (cross) x to_q / to_k / to_v / to_out, down [rank, in] ~ randn / sqrt(in),
    up [out, rank] ~ randn / sqrt(rank); attn2's to_k / to_v read the context."""
    r = Randn(seed)
    sd = {}
    for path, inner, context in unet_sites:
        for attn, ctx in (("attn1", inner), ("attn2", context)):
            for proj, in_dim in (("to_q", inner), ("to_k", ctx), ("to_v", ctx), ("to_out", inner)):
                p = f"unet.{path}.{attn}.processor.{proj}_lora"
                sd[f"{p}.down.weight"] = r(rank, in_dim)
                sd[f"{p}.up.weight"] = r(inner, rank)
    return sd


def diffusers_attention_paths(model) -> list[tuple[str, int, int]]:
    """(diffusers transformer-block path, inner width, context width) for every transformer block of a ComfyUI
    UNet ModelPatcher, in comfy.utils.unet_to_diffusers' order (down, mid, up), e.g.
    ("down_blocks.1.attentions.0.transformer_blocks.0", 64, 160) on the tiny SDXL: lora_weights' `unet_sites`."""
    import comfy.utils

    weights = model.model.state_dict()
    sites = []
    for key, unet_key in comfy.utils.unet_to_diffusers(model.model.model_config.unet_config).items():
        if key.endswith(".attn2.to_k.weight"):
            inner, context = weights[f"diffusion_model.{unet_key}"].shape
            sites.append((key[:-len(".attn2.to_k.weight")], inner, context))
    return sites


def write(path: Path, id_encoder: dict, lora: dict) -> Path:
    return write_parts(path, {"id_encoder": id_encoder, "lora_weights": lora})
