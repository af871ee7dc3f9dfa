"""IDM-VTON virtual try-on on ComfyUI models: the inputs prepared as IDM-VTON's pipeline prepares them, and
its two mechanisms wired onto the try-on UNet.

- concat conditioning: [mask, masked person latent, pose latent] (9 channels) at latent size, the mask
  binarised at 0.5 and resized by nearest neighbour, the masked person grey (0 in [-1, 1]) under the mask;
- garment net -> try-on net: reference attention in concat mode, the garment UNet on the clean garment latent
  at the current timestep with the garment description's text tokens; zero features for the uncond rows;
- image prompt: the try-on UNet's own IP-Adapter-plus weights on the garment's CLIP hidden states (uncond:
  the encoder's zero image), through the decoupled cross-attention.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core.errors import InfuseError, current_node
from ...extractors.clip_vision import ComfyClipVision, as_rgb, encode
from ..decoupled_attention.adapter import IPAdapterModel
from ..decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from ..loaders.tryon_models import CONCAT_KEY, TRYON_CHANNELS
from ..patching.surfaces.conditioning import with_options
from ..patching.surfaces.unet import UNetTarget, discover_sites, unet_target
from ..reference_attention.reference import ReferenceAttention, apply_reference, attn1_projections

LATENT_SCALE = 8
ASPECT_TOLERANCE = 0.02
MIN_SIZE = 32
GARMENT_PROMPT = "a photo of {}"          # what IDM-VTON's pipeline gives the garment UNet


def _hw(images: torch.Tensor) -> tuple[int, int]:
    return images.shape[1], images.shape[2]


def latent_grid_crop(images: torch.Tensor) -> torch.Tensor:
    """Centre-crop [B, H, W, C] images to multiples of 8 px (VAE Encode crops the same way)."""
    h, w = _hw(images)
    nh, nw = h // LATENT_SCALE * LATENT_SCALE, w // LATENT_SCALE * LATENT_SCALE
    top, left = (h - nh) // 2, (w - nw) // 2
    return images[:, top:top + nh, left:left + nw]


def resize_images(images: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [B, H, W, C] images to (H, W)."""
    if _hw(images) == hw:
        return images
    import comfy.utils

    return comfy.utils.common_upscale(images.movedim(-1, 1), hw[1], hw[0], "bilinear", "disabled").movedim(1, -1)


def person_mask(mask: torch.Tensor, person_hw: tuple[int, int]) -> torch.Tensor:
    """The inpaint mask as [1, H, W] in {0, 1} (white = replaced by the garment); it must be the person's size."""
    mask = mask[None] if mask.ndim == 2 else mask
    if mask.ndim != 3 or mask.shape[0] == 0:
        raise InfuseError(f"the mask has shape {tuple(mask.shape)}.", "connect a MASK.", input_name="mask")
    if tuple(mask.shape[-2:]) != person_hw:
        raise InfuseError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} but the person image is "
                          f"{person_hw[1]}x{person_hw[0]}.",
                          "make the mask from the person image (Infuse Try-On Mask, or a segmentation node run on "
                          "the same image), or scale it to the person's size.", input_name="mask")
    return (mask[:1].float() >= 0.5).float()


def pose_to_person(pose: torch.Tensor, person_hw: tuple[int, int]) -> torch.Tensor:
    """The pose image resized to the person's size; its aspect ratio must be the person's."""
    ph, pw = _hw(pose)
    if abs(pw / ph - person_hw[1] / person_hw[0]) > ASPECT_TOLERANCE * person_hw[1] / person_hw[0]:
        raise InfuseError(f"the pose image is {pw}x{ph} but the person image is {person_hw[1]}x{person_hw[0]} "
                          "(another aspect ratio).",
                          "run the DensePose preprocessor on the person image itself.", input_name="pose")
    return resize_images(pose[:1], person_hw)


def masked_person(person: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The person with the masked area grey (0 in the VAE's [-1, 1] range), [1, H, W, 3]."""
    return (person[:1] - 0.5) * (1.0 - mask[..., None]) + 0.5


def concat_conditioning(model, vae, person: torch.Tensor, mask: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """[1, 9, h, w]: the latent mask, the masked person latent and the pose latent, in the model's latent space."""
    def encode(pixels):
        return model.model.process_latent_in(vae.encode(pixels[..., :3]).float())

    masked = encode(masked_person(person, mask))
    pose_latent = encode(pose)
    latent_mask = F.interpolate(mask[:, None], size=masked.shape[-2:])
    return torch.cat([latent_mask.to(masked), masked, pose_latent], dim=1)


def check_tryon_model(model, target: UNetTarget | None = None) -> IPAdapterModel:
    """The image-prompt adapter of a try-on UNet loaded by Infuse; anything else is an error."""
    target or unet_target(model)        # an SD1.5 / SDXL UNet at all
    channels = getattr(model.model.diffusion_model, "in_channels", None)
    adapter = getattr(model.model, "infuse_tryon_adapter", None)
    fix = "load IDM-VTON's unet/ with Infuse Load IDM-VTON and connect its tryon_model output."
    if channels != TRYON_CHANNELS:
        raise InfuseError(f"the model takes {channels} input channels; IDM-VTON's try-on UNet takes "
                          f"{TRYON_CHANNELS} (latent, mask, masked person, pose).", fix, input_name="model")
    if adapter is None:
        raise InfuseError("the model is a 13-channel UNet but was not loaded as IDM-VTON's try-on UNet "
                          "(its image prompt weights are missing).", fix, input_name="model")
    return adapter


def check_garment_unet(model, garment, target: UNetTarget | None = None) -> None:
    """The garment UNet must have a self-attention of the same width at every site of the try-on UNet."""
    ours = {s.key: s.inner_dim for s in (target or unet_target(model)).sites}
    theirs = {s.key: s.inner_dim for s in discover_sites(garment.model.diffusion_model)}
    if ours != theirs:
        differing = sorted(set(ours.items()) ^ set(theirs.items()))
        raise InfuseError(f"the garment UNet's transformer blocks do not match the try-on UNet's "
                          f"({len(theirs)} vs {len(ours)} blocks; first difference at "
                          f"{':'.join(map(str, differing[0][0]))}).",
                          "load the garment UNet (unet_encoder/) from the same IDM-VTON release as the try-on "
                          "UNet.", input_name="garment_unet")


def apply_tryon(model, garment_unet, garment_latent: torch.Tensor, garment_context: torch.Tensor,
                garment_embeds, adapter: IPAdapterModel, garment_weight: float = 1.0,
                ip_weight: float = 1.0, cache_every: int = 1, target: UNetTarget | None = None) -> tuple:
    """Wire the garment net (reference concat) and the image prompt onto `model` (a clone the caller owns).
    Returns the two contributions."""
    target = target or unet_target(model)
    check_garment_unet(model, garment_unet, target)
    sites = list(target.sites)
    reference = ReferenceAttention(current_node(), "concat", garment_latent, attn1_projections(model, sites),
                                   source=garment_unet, noised=False, cache_every=cache_every,
                                   context=garment_context, weight=garment_weight)
    apply_reference(model, reference, sites)
    cond, uncond = image_tokens(adapter, embeds=garment_embeds)
    image_prompt = apply_ipadapter(model, adapter, cond, uncond, target, weight=ip_weight)
    return reference, image_prompt


@dataclass
class TryOnImages:
    """The pipeline's inputs at the person's size, cropped to the latent grid: one person, one garment."""
    person: torch.Tensor        # [1, H, W, 3]
    garment: torch.Tensor       # [1, H, W, 3], resized to the person's size
    mask: torch.Tensor          # [1, H, W] in {0, 1}
    pose: torch.Tensor          # [1, H, W, 3]
    extra: list[str]            # inputs that had more than one image (the first is used)


def prepare_images(person, garment, mask, pose) -> TryOnImages:
    """Crop, binarise and resize as IDM-VTON's pipeline does, before anything is encoded."""
    extra = [f"{name}: {len(images)} images, the first is used" for name, images in
             (("person", person), ("garment", garment)) if len(images) > 1]
    person = as_rgb(person, "person")[:1]
    hw = _hw(person)
    mask = latent_grid_crop(person_mask(mask, hw))
    pose = latent_grid_crop(pose_to_person(as_rgb(pose, "pose"), hw))
    garment = latent_grid_crop(resize_images(as_rgb(garment, "garment")[:1], hw))
    person = latent_grid_crop(person)
    if person.shape[1] < MIN_SIZE or person.shape[2] < MIN_SIZE:
        raise InfuseError(f"the person image is {hw[1]}x{hw[0]}.", f"use an image of at least "
                          f"{MIN_SIZE}x{MIN_SIZE} (the reference uses 768x1024).", input_name="person")
    return TryOnImages(person, garment, mask, pose, extra)


def garment_context(clip, garment_unet, description: str) -> torch.Tensor:
    """The garment description's text tokens, as the garment UNet reads them."""
    context = clip.encode_from_tokens(clip.tokenize(GARMENT_PROMPT.format(description)))
    width = discover_sites(garment_unet.model.diffusion_model)[0].context_dim
    if context.shape[-1] != width:
        raise InfuseError(f"the text encoder gives {context.shape[-1]}-wide tokens; the garment UNet "
                          f"reads {width}.", "connect the SDXL checkpoint's CLIP.", input_name="clip")
    return context


def try_on(model, garment_unet, vae, clip, clip_vision, positive: list, negative: list, images: TryOnImages,
           description: str, garment_weight: float = 1.0, ip_weight: float = 1.0, cache_every: int = 1,
           progress=None) -> tuple:
    """IDM-VTON on a clone of the try-on UNet: (model, positive, negative, empty latent). `progress(n)` is told
    after each of the three encodes (VAE, garment text, garment CLIP)."""
    target = unet_target(model)
    adapter = check_tryon_model(model, target)
    check_garment_unet(model, garment_unet, target)
    step = progress or (lambda n: None)
    concat = concat_conditioning(model, vae, images.person, images.mask, images.pose)
    garment_latent = model.model.process_latent_in(vae.encode(images.garment).float())
    step(1)
    context = garment_context(clip, garment_unet, description)
    step(1)
    embeds = encode(ComfyClipVision(clip_vision), images.garment, "crop", "garment")
    step(1)
    patched = model.clone()
    apply_tryon(patched, garment_unet, garment_latent, context, embeds, adapter, garment_weight=garment_weight,
                ip_weight=ip_weight, cache_every=cache_every, target=target)
    h, w = images.person.shape[1] // LATENT_SCALE, images.person.shape[2] // LATENT_SCALE
    latent = {"samples": torch.zeros(1, 4, h, w)}
    return patched, with_concat(positive, concat), with_concat(negative, concat), latent


def with_concat(conditioning: list, concat: torch.Tensor) -> list:
    """A copy of a CONDITIONING with the try-on concat attached to every entry."""
    return with_options(conditioning, **{CONCAT_KEY: concat})
