"""InstantID = a face embedding through a Resampler into decoupled cross-attention (the adapter), plus
IdentityNet: a ControlNet whose cross-attention context is the 16 face tokens instead of the text and whose
condition image is the drawn facial keypoints.

The adapter is an IP-Adapter-layout file (image_proj Resampler 512 -> 16 x 2048, ip_adapter 1..139), so it
goes through the same decoupled cross-attention as IP-Adapter. IdentityNet sees the face tokens through the
conditioning's `cross_attn_controlnet`, which ComfyUI hands to a ControlNet instead of the text.
"""
from __future__ import annotations

import torch

from ...core.errors import InfuseError
from ...core.records import FaceEmbeds
from ..decoupled_attention.adapter import IPAdapterModel
from ..decoupled_attention.ipadapter import image_tokens


def check_instantid(adapter: IPAdapterModel, node: str, input_name: str = "instantid") -> None:
    if adapter.image_input != "face_raw" or adapter.family != "sdxl":
        raise InfuseError(node, f"'{adapter.name}' is not an InstantID adapter (it is an {adapter.describe()}).",
                          "load InstantID's ip-adapter.bin with Infuse Load InstantID.", input_name=input_name)


def face_tokens(adapter: IPAdapterModel, faces: FaceEmbeds, node: str, combine: str = "average",
                noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) face tokens [1, 16 (x N for concat), C]. The unconditional input is the zero embedding,
    or, with `noise` > 0, uniform noise of that amount, seeded by the embedding so runs repeat."""
    check_instantid(adapter, node)
    negative = None
    if noise > 0:
        seed = int(faces.embedding.double().abs().sum().item() * 1000) % (2 ** 31)
        g = torch.Generator().manual_seed(seed)
        negative = torch.rand(faces.embedding.shape, generator=g) * noise
    return image_tokens(adapter, node, faces=faces, combine=combine, negative_face=negative)


def controlnet_context_dim(control_net) -> int:
    from comfy.ldm.modules.attention import CrossAttention

    for name, module in control_net.control_model.named_modules():
        if isinstance(module, CrossAttention) and name.endswith("attn2"):
            return module.to_k.in_features
    raise ValueError("no cross-attention in the ControlNet")


def check_identitynet(control_net, tokens: torch.Tensor, node: str) -> None:
    try:
        width = controlnet_context_dim(control_net)
    except (AttributeError, ValueError):
        raise InfuseError(node, "the ControlNet has no cross-attention (a T2I-Adapter or another kind of control).",
                          "load InstantID's IdentityNet (ControlNetModel/diffusion_pytorch_model.safetensors) with "
                          "Load ControlNet Model.", input_name="control_net") from None
    if width != tokens.shape[-1]:
        raise InfuseError(node, f"the ControlNet's cross-attention takes {width}-wide context but the face tokens "
                                f"are {tokens.shape[-1]} wide: it is not an SDXL ControlNet like IdentityNet.",
                          "load InstantID's IdentityNet (an SDXL ControlNet).", input_name="control_net")


def identitynet_conditioning(positive: list, negative: list, control_net, keypoints: torch.Tensor,
                             cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor, strength: float,
                             start_percent: float, end_percent: float, node: str,
                             mask: torch.Tensor | None = None) -> tuple[list, list]:
    """Add IdentityNet to both conditionings: the ControlNet gets the keypoint image as its hint and the face
    tokens (cond) or unconditional tokens (negative) as its context, never the text. A mask limits its
    residuals to a region."""
    check_identitynet(control_net, cond_tokens, node)
    if strength == 0:
        return positive, negative
    if mask is not None:
        from ..patching.gate import normalize_mask
        from ..residual.controlnet import masked_controlnet

        control_net = masked_controlnet(control_net, normalize_mask(mask, node))
    hint = keypoints.movedim(-1, 1)
    out = []
    made: dict = {}
    for conditioning, tokens in ((positive, cond_tokens), (negative, uncond_tokens)):
        branch = []
        for embeds, options in conditioning:
            d = options.copy()
            previous = d.get("control", None)
            if previous not in made:
                c_net = control_net.copy().set_cond_hint(hint, strength, (start_percent, end_percent))
                c_net.set_previous_controlnet(previous)
                made[previous] = c_net
            d["control"] = made[previous]
            d["control_apply_to_uncond"] = False
            d["cross_attn_controlnet"] = tokens.to(embeds.dtype)
            branch.append([embeds, d])
        out.append(branch)
    return out[0], out[1]
