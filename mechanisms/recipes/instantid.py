"""InstantID = a face embedding through a Resampler into decoupled cross-attention (the adapter), plus
IdentityNet: a ControlNet whose cross-attention context is the 16 face tokens instead of the text and whose
condition image is the drawn facial keypoints.

The adapter is an IP-Adapter-layout file (image_proj Resampler 512 -> 16 x 2048, ip_adapter 1..139), so it
goes through the same decoupled cross-attention as IP-Adapter. IdentityNet sees the face tokens through the
conditioning's `cross_attn_controlnet`, which ComfyUI hands to a ControlNet instead of the text.
"""
from __future__ import annotations

import torch

from ...core.errors import InfuseError, check_percent_range
from ...core.records import FaceEmbeds
from ...extractors.clip_vision import as_rgb
from ...extractors.keypoints import keypoints_images
from ..decoupled_attention.adapter import IPAdapterModel
from ..decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from ..patching.surfaces.conditioning import ConditioningGate
from ..patching.surfaces.unet import UNetTarget, unet_target
from ..residual.controlnet import controlnet_conditioning


def check_instantid(adapter: IPAdapterModel, input_name: str = "instantid") -> None:
    if adapter.image_input != "face_raw" or adapter.family != "sdxl":
        raise InfuseError(f"'{adapter.name}' is not an InstantID adapter (it is an {adapter.describe()}).",
                          "load InstantID's ip-adapter.bin with Infuse Load InstantID.", input_name=input_name)


def face_tokens(adapter: IPAdapterModel, faces: FaceEmbeds, combine: str = "average",
                noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) face tokens [1, 16 (x N for concat), C]. The unconditional input is the zero embedding,
    or, with `noise` > 0, uniform noise of that amount, seeded by the embedding so runs repeat."""
    check_instantid(adapter)
    negative = None
    if noise > 0:
        seed = int(faces.embedding.double().abs().sum().item() * 1000) % (2 ** 31)
        g = torch.Generator().manual_seed(seed)
        negative = torch.rand(faces.embedding.shape, generator=g) * noise
    return image_tokens(adapter, faces=faces, combine=combine, negative_face=negative)


def controlnet_context_dim(control_net) -> int:
    from comfy.ldm.modules.attention import CrossAttention

    for name, module in control_net.control_model.named_modules():
        if isinstance(module, CrossAttention) and name.endswith("attn2"):
            return module.to_k.in_features
    raise ValueError("no cross-attention in the ControlNet")


def check_identitynet(control_net, tokens: torch.Tensor) -> None:
    try:
        width = controlnet_context_dim(control_net)
    except (AttributeError, ValueError):
        raise InfuseError("the ControlNet has no cross-attention (a T2I-Adapter or another kind of control).",
                          "load InstantID's IdentityNet (ControlNetModel/diffusion_pytorch_model.safetensors) with "
                          "Load ControlNet Model.", input_name="control_net") from None
    if width != tokens.shape[-1]:
        raise InfuseError(f"the ControlNet's cross-attention takes {width}-wide context but the face tokens "
                          f"are {tokens.shape[-1]} wide: it is not an SDXL ControlNet like IdentityNet.",
                          "load InstantID's IdentityNet (an SDXL ControlNet).", input_name="control_net")


def identitynet_conditioning(positive: list, negative: list, control_net, keypoints: torch.Tensor,
                             cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor, strength: float,
                             start_percent: float, end_percent: float,
                             mask: torch.Tensor | None = None) -> tuple[list, list]:
    """Add IdentityNet to both conditionings: the ControlNet gets the keypoint image as its hint and the face
    tokens (cond) or unconditional tokens (negative) as its context, never the text. A mask limits its
    residuals to a region."""
    check_identitynet(control_net, cond_tokens)
    gate = ConditioningGate(strength, start_percent, end_percent, mask=mask)
    return controlnet_conditioning(positive, negative, control_net, keypoints, gate, (cond_tokens, uncond_tokens))


def _check_sdxl(target: UNetTarget) -> None:
    if target.family != "sdxl":
        raise InfuseError("InstantID needs an SDXL model; this one is SD1.5.",
                          "load an SDXL checkpoint for InstantID.", input_name="model")


def keypoint_condition(faces: FaceEmbeds, keypoints: torch.Tensor | None) -> torch.Tensor:
    """IdentityNet's condition image: the keypoints image given, else the reference face's own keypoints drawn."""
    if keypoints is not None:
        return as_rgb(keypoints, "keypoints")     # the ControlNet hint takes 3 channels
    if faces.kps.abs().sum() == 0 or faces.image_hw.min() <= 0:
        raise InfuseError("the face embeds carry no keypoints (they were not made by Infuse Face Analysis).",
                          "connect a keypoints image (Infuse Face Analysis or Infuse Face Keypoints).",
                          input_name="keypoints")
    hw = tuple(int(v) for v in faces.image_hw[0].tolist())
    return keypoints_images(faces.kps[:1], hw, hw)


def instantid_adapter(model, adapter: IPAdapterModel, faces: FaceEmbeds, combine: str, noise: float, weight: float,
                      start_percent: float, end_percent: float, mask=None, prefix: str = ""):
    """The face adapter on a clone of `model` (the model itself when no entry of `faces` has a face)."""
    target = unet_target(model)
    _check_sdxl(target)
    check_percent_range(start_percent, end_percent, prefix)
    faces = faces.present()
    if faces is None:
        return model
    cond, uncond = face_tokens(adapter, faces, combine, noise)
    patched = model.clone()
    apply_ipadapter(patched, adapter, cond, uncond, target, weight=weight, start_percent=start_percent,
                    end_percent=end_percent, mask=mask)
    return patched


def instantid_identitynet(positive: list, negative: list, control_net, adapter: IPAdapterModel, faces: FaceEmbeds,
                          combine: str, noise: float, strength: float, start_percent: float, end_percent: float,
                          keypoints=None, mask=None, prefix: str = "") -> tuple[list, list, torch.Tensor | None]:
    """IdentityNet on both conditionings, and the condition image it uses (None, and the conditionings unchanged,
    when no entry of `faces` has a face)."""
    check_percent_range(start_percent, end_percent, prefix)
    faces = faces.present()
    if faces is None:
        return positive, negative, None
    cond, uncond = face_tokens(adapter, faces, combine, noise)
    condition = keypoint_condition(faces, keypoints)
    positive, negative = identitynet_conditioning(positive, negative, control_net, condition, cond, uncond, strength,
                                                  start_percent, end_percent, mask)
    return positive, negative, condition
