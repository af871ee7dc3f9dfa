"""IP-Adapter: image features -> image tokens (once per run) -> decoupled cross-attention at every site."""
from __future__ import annotations

import torch

from ..extractors.features import FaceEmbeds, ImageEmbeds
from .cross_attention import DecoupledCrossAttention, site_kv_weights
from .errors import InfuseError
from .hooks import add_contribution
from .ipadapter_file import IPAdapterModel
from .sites import family_name, model_family, model_sites

COMBINE = ("concat", "average")


def _cycle(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[torch.arange(n) % x.shape[0]]


def _check_width(got: int, want: int, adapter: IPAdapterModel, what: str, node: str, input_name: str) -> None:
    if got != want:
        raise InfuseError(node, f"the image embeds have {what} {got} wide, but '{adapter.name}' "
                                f"({adapter.describe()}) takes {want}.",
                          "use the CLIP vision model this adapter was trained with (ViT-H for most SD1.5 "
                          "and '_vit-h' SDXL adapters, ViT-bigG for ip-adapter_sdxl and SD1.5 vit-G).",
                          input_name=input_name)


@torch.no_grad()
def image_tokens(adapter: IPAdapterModel, node: str, embeds: ImageEmbeds | None = None,
                 faces: FaceEmbeds | None = None, negative: ImageEmbeds | None = None, combine: str = "concat",
                 faceid_v2: bool = True, faceid_v2_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) image tokens, each [1, T, C]: several images are concatenated along the tokens (as the
    reference pipelines do) or averaged before projection. Unconditional inputs follow the reference code:
    zero embeds for pooled / face inputs, the encoder's zero image for hidden-state inputs, unless a
    negative image is given."""
    if combine not in COMBINE:
        raise InfuseError(node, f"combine must be one of {COMBINE}, got '{combine}'.", "", input_name="combine")
    if adapter.uses_clip and embeds is None:
        raise InfuseError(node, f"'{adapter.name}' ({adapter.describe()}) needs CLIP image embeds.",
                          "connect an image (or Infuse Encode Image's embeds).", input_name="image")
    if adapter.uses_face and faces is None:
        raise InfuseError(node, f"'{adapter.name}' ({adapter.describe()}) needs face embeddings.",
                          "connect FACE_EMBEDS from a face analysis node.", input_name="face_embeds")
    if embeds is not None and len(embeds) == 0 or faces is not None and len(faces) == 0:
        raise InfuseError(node, "the image batch is empty.", "connect at least one image.", input_name="image")

    n = len(faces) if adapter.uses_face else len(embeds)
    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []          # (cond, uncond) per projection argument
    if adapter.uses_face:
        face = faces.embedding.float()
        inputs.append((face, torch.zeros_like(face)))
    if adapter.image_input == "pooled":
        _check_width(embeds.pooled_dim, adapter.image_dim, adapter, "pooled embeds", node, "clip_vision")
        x = embeds.pooled.float()
        neg = _cycle(negative.pooled.float(), n) if negative is not None else torch.zeros_like(x)
        inputs.append((x, neg))
    elif "hidden" in adapter.image_input:
        _check_width(embeds.hidden_dim, adapter.image_dim, adapter, "hidden states", node, "clip_vision")
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


def apply_ipadapter(model, adapter: IPAdapterModel, cond: torch.Tensor, uncond: torch.Tensor, node: str,
                    **schedule) -> DecoupledCrossAttention:
    """Register the adapter's decoupled cross-attention on `model` (a clone the caller owns)."""
    family = model_family(model, node)
    if adapter.family != family:
        raise InfuseError(node, f"'{adapter.name}' is an {family_name(adapter.family)} IP-Adapter but the model "
                                f"is {family_name(family)}.",
                          f"use an {family_name(family)} IP-Adapter with this model, or an "
                          f"{family_name(adapter.family)} checkpoint.", input_name="ipadapter")
    sites = model_sites(model, node)
    kv = site_kv_weights(adapter.kv, sites, node, f"'{adapter.name}'")
    contribution = DecoupledCrossAttention(node, kv, cond, uncond, **schedule)
    add_contribution(model, contribution, sites)
    return contribution
