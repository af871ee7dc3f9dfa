"""IP-Adapter: image features -> image tokens (once per run) -> decoupled cross-attention at every site."""
from __future__ import annotations

import re

import torch

from ...core.errors import InfuseError, current_node
from ...core.records import FaceEmbeds, ImageEmbeds
from ..patching.dispatcher import add_contribution
from ..patching.surfaces.unet import UNetTarget, family_name, unet_target
from .adapter import IPAdapterModel
from .attention import DecoupledCrossAttention, site_kv_weights

COMBINE = ("concat", "average")


def _cycle(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[torch.arange(n) % x.shape[0]]


def _check_width(got: int, want: int, adapter: IPAdapterModel, what: str, input_name: str) -> None:
    if got != want:
        raise InfuseError(f"the image embeds have {what} {got} wide, but '{adapter.name}' "
                          f"({adapter.describe()}) takes {want}.",
                          "use the CLIP vision model this adapter was trained with (ViT-H for most SD1.5 "
                          "and '_vit-h' SDXL adapters, ViT-bigG for ip-adapter_sdxl and SD1.5 vit-G).",
                          input_name=input_name)


@torch.no_grad()
def image_tokens(adapter: IPAdapterModel, embeds: ImageEmbeds | None = None,
                 faces: FaceEmbeds | None = None, negative: ImageEmbeds | None = None, combine: str = "concat",
                 faceid_v2: bool = True, faceid_v2_weight: float = 1.0,
                 negative_face: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) image tokens, each [1, T, C]: several images are concatenated along the tokens (as the
    reference pipelines do) or averaged before projection. Unconditional inputs follow the reference code:
    zero embeds for pooled / face inputs, the encoder's zero image for hidden-state inputs, unless a
    negative image (or, for face inputs, `negative_face` of the face input's shape) is given."""
    if combine not in COMBINE:
        raise InfuseError(f"combine must be one of {COMBINE}, got '{combine}'.",
                          "pick concat or average in the node (an API workflow may carry an old value).",
                          input_name="combine")
    if adapter.uses_clip and embeds is None:
        raise InfuseError(f"'{adapter.name}' ({adapter.describe()}) needs CLIP image embeds.",
                          "connect an image (or Infuse Encode Image's embeds).", input_name="image")
    if adapter.uses_face and faces is None:
        raise InfuseError(f"'{adapter.name}' ({adapter.describe()}) needs face embeddings.",
                          "connect FACE_EMBEDS from a face analysis node.", input_name="face_embeds")
    if embeds is not None and len(embeds) == 0 or faces is not None and len(faces) == 0:
        raise InfuseError("the image batch is empty.", "connect at least one image.", input_name="image")

    n = len(faces) if adapter.uses_face else len(embeds)
    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []          # (cond, uncond) per projection argument
    if adapter.uses_face:
        if adapter.image_input == "face_raw":
            face = faces.embedding.float()[:, None]          # raw ArcFace (InstantID, Portrait unnorm): 1 token
        else:
            face = faces.normed.float()
        uncond_face = torch.zeros_like(face) if negative_face is None else negative_face.float().reshape(face.shape)
        inputs.append((face, uncond_face))
    if adapter.image_input == "pooled":
        _check_width(embeds.pooled_dim, adapter.image_dim, adapter, "pooled embeds", "clip_vision")
        x = embeds.pooled.float()
        neg = _cycle(negative.pooled.float(), n) if negative is not None else torch.zeros_like(x)
        inputs.append((x, neg))
    elif "hidden" in adapter.image_input:
        _check_width(embeds.hidden_dim, adapter.image_dim, adapter, "hidden states", "clip_vision")
        x = _cycle(embeds.hidden.float(), n)
        neg_source = negative.hidden if negative is not None else embeds.uncond_hidden
        inputs.append((x, _cycle(neg_source.float(), n)))

    if combine == "average":
        inputs = [(c.mean(0, keepdim=True), u.mean(0, keepdim=True)) for c, u in inputs]

    projection = adapter.projection.float()
    extra = {"shortcut": faceid_v2, "shortcut_scale": faceid_v2_weight} if adapter.projection_kind == "faceid_plus" else {}
    cond = projection(*(c for c, _ in inputs), **extra)
    uncond = projection(*(u for _, u in inputs), **extra)
    return cond.reshape(1, -1, cond.shape[-1]), uncond.reshape(1, -1, uncond.shape[-1])


def check_family(target: UNetTarget, adapter: IPAdapterModel) -> None:
    """The adapter fits the model: same family and one K/V pair per cross-attention (distilled SDXL models such as
    SSD-1B have fewer). Cheap: run it before encoding any image."""
    family, sites = target.family, target.sites
    if adapter.family != family:
        raise InfuseError(f"'{adapter.name}' is an {family_name(adapter.family)} IP-Adapter but the model "
                          f"is {family_name(family)}.",
                          f"use an {family_name(family)} IP-Adapter with this model, or an "
                          f"{family_name(adapter.family)} checkpoint.", input_name="ipadapter")
    if len(adapter.kv) != len(sites):
        kind = target.model_type
        raise InfuseError(f"'{adapter.name}' was trained for the full {family_name(family)} UNet "
                          f"({len(adapter.kv)} cross-attention layers), but the model is {kind}, an "
                          f"{family_name(family)}-type model with {len(sites)}.",
                          f"use an IP-Adapter trained for {kind}, or a full {family_name(family)} checkpoint.",
                          input_name="model")


def apply_ipadapter(model, adapter: IPAdapterModel, cond: torch.Tensor, uncond: torch.Tensor,
                    target: UNetTarget | None = None, **schedule) -> DecoupledCrossAttention:
    """Register the adapter's decoupled cross-attention on `model` (a clone the caller owns). `target`: the model's
    UNetTarget where the caller has it."""
    target = target or unet_target(model)
    check_family(target, adapter)
    kv = site_kv_weights(adapter.kv, target.sites, f"'{adapter.name}'")
    contribution = DecoupledCrossAttention(current_node(), kv, cond, uncond, **schedule)
    add_contribution(model, contribution, target.sites)
    return contribution


_LORA_KEY = re.compile(r"(\d+)\.(to_q|to_k|to_v|to_out)_lora\.down\.weight")
_LORA_MODULE = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}


def faceid_lora_patches(adapter: IPAdapterModel, sites) -> dict:
    """FaceID's LoRA (q/k/v/out of every attention processor, scale 1 as in the reference) as ComfyUI weight
    patches keyed by the model's own parameter names. Processor 2n is site n's attn1, 2n+1 its attn2."""
    from comfy.weight_adapter.lora import LoRAAdapter

    patches = {}
    for key, down in adapter.lora.items():
        m = _LORA_KEY.fullmatch(key)
        if m is None:
            continue
        index, proj = int(m.group(1)), m.group(2)
        site = sites[index // 2]
        attn = "attn1" if index % 2 == 0 else "attn2"
        up = adapter.lora[f"{index}.{proj}_lora.up.weight"]
        target = f"diffusion_model.{site.path}.{attn}.{_LORA_MODULE[proj]}.weight"
        patches[target] = LoRAAdapter(set(), (up, down, None, None, None, None))
    return patches


def apply_faceid_lora(model, adapter: IPAdapterModel, strength: float, target: UNetTarget | None = None) -> int:
    """Add the file's FaceID LoRA to `model` (a clone) through ComfyUI's weight patches; returns the count."""
    target = target or unet_target(model)
    check_family(target, adapter)
    if not adapter.lora or strength == 0.0:
        return 0
    patches = faceid_lora_patches(adapter, target.sites)
    applied = model.add_patches(patches, strength)
    if len(applied) != len(patches):
        raise InfuseError(f"'{adapter.name}': {len(patches) - len(applied)} of its LoRA weights match no layer "
                          "of the model.", "use an adapter made for this model family.", input_name="model")
    return len(applied)
