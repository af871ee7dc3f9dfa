"""IP-Adapter from a node's inputs: the checks that need no image first, then the encoder, the image tokens (once per
run), the decoupled cross-attention with its per-block weights, and FaceID's LoRA, on a clone of the model. The
model's family and sites are read once and passed down."""
from __future__ import annotations

from ...core.errors import InfuseError, check_percent_range
from ...extractors.clip_vision import encode, one_encoder
from ..decoupled_attention.block_weights import weights_per_site
from ..decoupled_attention.ipadapter import apply_faceid_lora, apply_ipadapter, check_family, image_tokens
from ..patching.surfaces.unet import unet_target
from .flux_ipadapter import check_base, flux_ipadapter_on_model


def _embeds(adapter, image, embeds, encoder, crop, input_name):
    if embeds is not None or not adapter.uses_clip or image is None:
        return embeds
    return encode(encoder(), image, crop, input_name)


def _embeds_input(image_embeds, clip_vision, open_clip) -> str:
    if image_embeds is not None:
        return "image_embeds"
    return "open_clip" if open_clip is not None and clip_vision is None else "clip_vision"


def ipadapter_on_model(model, ipadapter, weight, start_percent, end_percent, image=None, clip_vision=None,
                       open_clip=None, image_embeds=None, face_embeds=None, negative_image=None, attn_mask=None,
                       weight_type="linear", composition_weight=1.0, combine="concat", crop="crop", block_weights="",
                       faceid_lora_strength=1.0, faceid_v2=True, faceid_v2_weight=1.0, mask_mode="reference"):
    """A clone of `model` with the adapter applied. Face entries without a face (Face Analysis' pass_through) are
    left out, with the images / embeds made from their crops; with none left the clone is the model unchanged.
    Flux adapters go to the Flux recipe (the face, composition and FaceID inputs mean nothing there)."""
    check_base(model, ipadapter)
    if ipadapter.family == "flux":
        return flux_ipadapter_on_model(model, ipadapter, weight, start_percent, end_percent, image=image,
                                       clip_vision=clip_vision, open_clip=open_clip, image_embeds=image_embeds,
                                       negative_image=negative_image, attn_mask=attn_mask, weight_type=weight_type,
                                       combine=combine, crop=crop, block_weights=block_weights, mask_mode=mask_mode,
                                       embeds_input=_embeds_input(image_embeds, clip_vision, open_clip))
    target = unet_target(model)
    check_family(target, ipadapter)
    if ipadapter.uses_clip and image is None and image_embeds is None:
        raise InfuseError(f"'{ipadapter.name}' ({ipadapter.describe()}) needs a reference image.",
                          "connect an image and a CLIP vision model, or image_embeds.", input_name="image")
    check_percent_range(start_percent, end_percent)
    site_weights = weights_per_site(target.sites, target.family, weight_type, weight, composition_weight,
                                    block_weights)
    if ipadapter.uses_face and face_embeds is not None and face_embeds.missing:
        found = face_embeds.found
        face_embeds = face_embeds.present()
        if face_embeds is None:
            return model.clone()
        if image is not None and image.shape[0] == len(found):               # FaceID-Plus: the faces' crops
            image = image[found]
        if image_embeds is not None and len(image_embeds) == len(found):
            image_embeds = image_embeds.select(found)
    encoder = lambda: one_encoder(clip_vision, open_clip)
    embeds = _embeds(ipadapter, image, image_embeds, encoder, crop, "image")
    negative = _embeds(ipadapter, negative_image, None, encoder, crop, "negative_image")
    try:
        cond, uncond = image_tokens(ipadapter, embeds=embeds, faces=face_embeds, negative=negative,
                                    combine=combine, faceid_v2=faceid_v2, faceid_v2_weight=faceid_v2_weight)
    except InfuseError as e:      # embeds of the wrong width: name the input they came through
        if e.input_name != "clip_vision":
            raise
        raise e.at_input(_embeds_input(image_embeds, clip_vision, open_clip)) from None

    patched = model.clone()
    apply_ipadapter(patched, ipadapter, cond, uncond, target, weight=1.0, site_weights=site_weights,
                    start_percent=start_percent, end_percent=end_percent, mask=attn_mask, mask_mode=mask_mode)
    apply_faceid_lora(patched, ipadapter, faceid_lora_strength, target)
    return patched
