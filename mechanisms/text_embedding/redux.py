"""Flux Redux: SigLIP so400m-384 tokens of a reference image, projected to T5 width by the Redux encoder
(`comfy/ldm/flux/redux.py`: redux_down(silu(redux_up(x)))) and appended to every text embedding, as core's
StyleModelApply does, plus the controls of kaibioinfo's ComfyUI_AdvancedRefluxControl: a token grid downsampled
(fewer tokens, a weaker image), a mask over the reference selecting its tokens, and the conditioning Gate's
sigma range.

    tokens = redux_tokens(style_model, clip_vision_output, downsampling_factor=3)
    positive = apply_redux(positive, tokens, 1.0, "multiply", 0.0, 1.0)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...core.errors import InfuseError
from ..patching.gate import ApplyTo, normalize_mask
from ..patching.surfaces.conditioning import Conditioning, ConditioningGate, gated

STRENGTH_TYPES = ("multiply", "attn_bias")
DOWNSAMPLING_MODES = ("area", "bicubic", "bilinear", "nearest-exact")
SIGLIP_FILE = "sigclip_vision_patch14_384.safetensors"


def redux_tokens(style_model, clip_vision_output, downsampling_factor: int = 1, downsampling_mode: str = "area",
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """The Redux tokens of every image of `clip_vision_output`, as one sequence [1, N, 4096]: each image's token
    grid downsampled by `downsampling_factor`, then only the tokens where `mask` (a MASK over the reference, in the
    framing the encoder saw) is >= 0.5. Everything is checked before the encoder runs."""
    encoder = _redux_encoder(style_model)
    hidden = clip_vision_output.last_hidden_state
    _check_width(hidden, encoder.redux_up.in_features)
    side = grid_side(hidden.shape[1])
    if downsampling_mode not in DOWNSAMPLING_MODES:
        raise InfuseError(f"downsampling_mode {downsampling_mode!r} is not one of {', '.join(DOWNSAMPLING_MODES)}.",
                          "pick one from the list.", input_name="downsampling_mode")
    if downsampling_factor < 1:
        raise InfuseError(f"downsampling_factor {downsampling_factor} is below 1.",
                          "use 1 (all 27x27 tokens) to 9.", input_name="downsampling_factor")
    side_out = max(1, round(side / downsampling_factor))
    keep = None if mask is None else token_mask(mask, hidden.shape[0], side_out)

    tokens = style_model.get_cond(clip_vision_output)          # [B, side * side, C], core's StyleModel
    if side_out != side:
        tokens = downsample(tokens, side, side_out, downsampling_mode)
    tokens = tokens[keep.to(tokens.device)] if keep is not None else tokens.flatten(0, 1)
    return tokens.unsqueeze(0)


def grid_side(count: int) -> int:
    side = math.isqrt(count)
    if side * side != count:
        raise InfuseError(f"the CLIP vision output has {count} tokens per image, not a square grid of patches "
                          "(Redux reads the 27x27 patch tokens of SigLIP so400m-384).",
                          f"encode the image with {SIGLIP_FILE} (CLIP Vision Encode).",
                          input_name="clip_vision_output")
    return side


def downsample(tokens: torch.Tensor, side: int, side_out: int, mode: str) -> torch.Tensor:
    """[B, side * side, C] -> [B, side_out * side_out, C], the grid interpolated with `mode`."""
    b, _, c = tokens.shape
    grid = tokens.view(b, side, side, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(side_out, side_out), mode=mode)
    return grid.permute(0, 2, 3, 1).reshape(b, side_out * side_out, c)


def token_mask(mask: torch.Tensor, images: int, side: int) -> torch.Tensor:
    """Which tokens of each image's side x side grid a MASK selects: [images, side * side] bool, the mask resized
    to the grid by area (a token's share of white), kept where >= 0.5. One mask serves every image."""
    mask = normalize_mask(mask, input_name="mask")
    if mask.shape[0] not in (1, images):
        raise InfuseError(f"the mask batch has {mask.shape[0]} masks for {images} reference images.",
                          "connect one mask (used for every image) or one mask per image.", input_name="mask")
    grid = F.interpolate(mask[:, None], size=(side, side), mode="area")[:, 0]
    keep = (grid >= 0.5).reshape(grid.shape[0], -1).expand(images, -1)
    if not keep.any():
        raise InfuseError(f"the mask selects none of the reference's {side}x{side} tokens (no region is at "
                          "least half white at that grid).",
                          "paint the region to keep white (larger than one token: 1/27 of the image, more with "
                          "downsampling), or disconnect the mask.", input_name="mask")
    return keep


def _redux_encoder(style_model):
    model = getattr(style_model, "model", None)
    if hasattr(model, "redux_up") and hasattr(model, "redux_down"):
        return model
    what = "a T2I-Adapter style model (SD1.5)" if hasattr(model, "style_embedding") else \
        f"a {type(model).__name__}"
    raise InfuseError(f"the style model is {what}, not Flux Redux.",
                      "load flux1-redux-dev.safetensors (models/style_models) with Load Style Model.",
                      input_name="style_model")


def _check_width(hidden: torch.Tensor, width: int) -> None:
    if hidden.ndim != 3 or hidden.shape[-1] != width:
        raise InfuseError(f"the CLIP vision output has tokens of shape {tuple(hidden.shape[1:])}; Redux reads "
                          f"{width}-wide SigLIP so400m-384 tokens (a CLIP ViT-L / ViT-H encoder gives 1024 / 1280).",
                          f"load {SIGLIP_FILE} (models/clip_vision) with Load CLIP Vision and encode the image "
                          "with it.", input_name="clip_vision_output")


def apply_redux(conditioning: Conditioning, tokens: torch.Tensor, strength: float, strength_type: str,
                start_percent: float = 0.0, end_percent: float = 1.0) -> Conditioning:
    """`conditioning` with the Redux tokens appended to every entry between start and end (the original entry for
    the rest of the schedule). Strength 0 returns the input itself, in both strength types: no token is added."""
    if strength_type not in STRENGTH_TYPES:
        raise InfuseError(f"strength_type {strength_type!r} is not one of {', '.join(STRENGTH_TYPES)}.",
                          "pick one from the list.", input_name="strength_type")
    gate = ConditioningGate(strength=strength, start_percent=start_percent, end_percent=end_percent,
                            apply_to=ApplyTo.COND)

    def append(txt, options, branch):
        return append_tokens(txt, options, tokens, strength, strength_type)

    return gated(conditioning, [], gate, append)[0]


def append_tokens(txt: torch.Tensor, options: dict, tokens: torch.Tensor, strength: float,
                  strength_type: str) -> tuple[torch.Tensor, dict]:
    """One entry with the tokens appended, as core's StyleModelApply writes it: multiply scales the tokens;
    attn_bias (or an entry that already has an attention_mask) widens the additive attention mask, with
    log(strength) on the Redux columns (log(1) = 0 for multiply)."""
    cond = tokens * strength if strength_type == "multiply" else tokens
    n = cond.shape[1]
    options = options.copy()
    if "attention_mask" in options or (strength_type == "attn_bias" and strength != 1.0):
        bias = torch.log(torch.Tensor([strength if strength_type == "attn_bias" else 1.0]))
        ref_size = options.get("attention_mask_img_shape", (1, 1))
        n_ref = ref_size[0] * ref_size[1]
        n_txt = txt.shape[1]
        mask = options.get("attention_mask")
        if mask is None:
            mask = torch.zeros((txt.shape[0], n_txt + n_ref, n_txt + n_ref), dtype=torch.float16)
        if mask.dtype == torch.bool:                # a boolean mask as a bias: log(True) = 0, log(False) = -inf
            mask = torch.log(mask.to(dtype=torch.float16))
        wide = torch.zeros((txt.shape[0], n_txt + n + n_ref, n_txt + n + n_ref), dtype=torch.float16)
        wide[:, :n_txt, :n_txt] = mask[:, :n_txt, :n_txt]
        wide[:, :n_txt, n_txt + n:] = mask[:, :n_txt, n_txt:]
        wide[:, n_txt + n:, :n_txt] = mask[:, n_txt:, :n_txt]
        wide[:, n_txt + n:, n_txt + n:] = mask[:, n_txt:, n_txt:]
        wide[:, :n_txt, n_txt:n_txt + n] = bias
        wide[:, n_txt + n:, n_txt:n_txt + n] = bias
        options["attention_mask"] = wide.to(txt.device)
        options["attention_mask_img_shape"] = ref_size
    return torch.cat((txt, cond), dim=1), options
