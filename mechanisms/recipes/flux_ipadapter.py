"""A Flux IP-Adapter from a node's inputs: the checks that need no image first, the encoder, the image tokens (once
per run), the image attention on the DiT blocks with per-block weights, on a clone of the model."""
from __future__ import annotations

import torch

from ...core.errors import InfuseError, check_percent_range
from ...extractors.clip_vision import encode, one_encoder
from ..decoupled_attention.block_weights import flux_block_weights
from ..decoupled_attention.flux_adapter import FluxIPAdapterModel
from ..decoupled_attention.flux_attention import (adapter_layers, apply_flux_ipadapter, check_pooled_width,
                                                  flux_image_tokens)
from ..patching.surfaces.dit import block_sites, is_flux
from ..patching.surfaces.unet import comfy_model_type, family_name


def check_base(model, adapter) -> None:
    """A Flux adapter on a UNet model, or an SD1.5 / SDXL adapter on Flux, is an error naming both."""
    flux_adapter, flux_model = isinstance(adapter, FluxIPAdapterModel), is_flux(model)
    if flux_adapter and not flux_model:
        raise InfuseError(f"'{adapter.name}' is a {adapter.describe().split(' (')[0]} but the model is a "
                          f"{comfy_model_type(model)} model.",
                          "connect a Flux model (Load Diffusion Model with flux1-dev), or use an SD1.5 / SDXL "
                          "IP-Adapter with this model.", input_name="ipadapter")
    if flux_model and not flux_adapter:
        raise InfuseError(f"'{adapter.name}' is an {family_name(adapter.family)} IP-Adapter but the model is Flux.",
                          "use a Flux IP-Adapter with this model (XLabs flux-ip-adapter-v2, InstantX "
                          "FLUX.1-dev-IP-Adapter), or an SD1.5 / SDXL checkpoint with this adapter.",
                          input_name="ipadapter")


def _uncond_embeds(adapter, negative_image, encoder, crop):
    """The negative image's embeds; without one, XLabs' default negative (a black image, as x-flux and diffusers
    encode it) where an encoder is connected; None otherwise (zero embeds, or InstantX's: the image's own)."""
    if negative_image is not None:
        return encode(encoder(), negative_image, crop, "negative_image")
    if adapter.variant == "xlabs" and encoder is not None:
        return encode(encoder(), torch.zeros(1, 224, 224, 3), crop, "negative_image")
    return None


def flux_ipadapter_on_model(model, adapter: FluxIPAdapterModel, weight, start_percent, end_percent, image=None,
                            clip_vision=None, open_clip=None, image_embeds=None, negative_image=None, attn_mask=None,
                            weight_type="linear", combine="concat", crop="crop", block_weights="",
                            mask_mode="reference", embeds_input="clip_vision"):
    """A clone of `model` (a Flux) with the Flux IP-Adapter applied."""
    sites = block_sites(model)
    layers = adapter_layers(adapter, sites)
    if image is None and image_embeds is None:
        raise InfuseError(f"'{adapter.name}' ({adapter.describe()}) needs a reference image.",
                          f"connect an image and {adapter.encoder}, or image_embeds.", input_name="image")
    check_percent_range(start_percent, end_percent)
    site_weights = flux_block_weights(sites, weight_type, weight, block_weights)
    connected = clip_vision is not None or open_clip is not None
    encoder = None
    if connected:
        the_encoder = one_encoder(clip_vision, open_clip)
        width = getattr(the_encoder, "pooled_dim", None)
        if width is not None and (image_embeds is None or negative_image is not None):
            check_pooled_width(adapter, the_encoder.name, width, embeds_input if image_embeds is None else
                               "clip_vision")
        encoder = lambda: the_encoder
    elif image_embeds is None:
        raise InfuseError(f"no image encoder is connected; '{adapter.name}' takes {adapter.encoder}.",
                          "connect that encoder to clip_vision.", input_name="clip_vision")
    embeds = image_embeds if image_embeds is not None else encode(encoder(), image, crop, "image")
    try:
        cond, uncond = flux_image_tokens(adapter, embeds, _uncond_embeds(adapter, negative_image, encoder, crop),
                                         combine, uncond_same=adapter.variant == "instantx")
    except InfuseError as e:
        if e.input_name != "clip_vision":
            raise
        raise e.at_input(embeds_input) from None
    patched = model.clone()
    apply_flux_ipadapter(patched, adapter, cond, uncond, list(layers), weight=1.0, site_weights=site_weights,
                         start_percent=start_percent, end_percent=end_percent, mask=attn_mask, mask_mode=mask_mode)
    return patched
