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

import torch
import torch.nn.functional as F

from ...core.errors import InfuseError
from ..decoupled_attention.adapter import IPAdapterModel
from ..decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from ..loaders.tryon_models import CONCAT_KEY, TRYON_CHANNELS
from ..patching.surfaces.unet import discover_sites, model_sites
from ..reference_attention.reference import ReferenceAttention, apply_reference, attn1_projections

LATENT_SCALE = 8
ASPECT_TOLERANCE = 0.02


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


def person_mask(mask: torch.Tensor, person_hw: tuple[int, int], node: str) -> torch.Tensor:
    """The inpaint mask as [1, H, W] in {0, 1} (white = replaced by the garment); it must be the person's size."""
    mask = mask[None] if mask.ndim == 2 else mask
    if mask.ndim != 3 or mask.shape[0] == 0:
        raise InfuseError(node, f"the mask has shape {tuple(mask.shape)}.", "connect a MASK.", input_name="mask")
    if tuple(mask.shape[-2:]) != person_hw:
        raise InfuseError(node, f"the mask is {mask.shape[-1]}x{mask.shape[-2]} but the person image is "
                                f"{person_hw[1]}x{person_hw[0]}.",
                          "make the mask from the person image (Infuse Try-On Mask, or a segmentation node run on "
                          "the same image), or scale it to the person's size.", input_name="mask")
    return (mask[:1].float() >= 0.5).float()


def pose_to_person(pose: torch.Tensor, person_hw: tuple[int, int], node: str) -> torch.Tensor:
    """The pose image resized to the person's size; its aspect ratio must be the person's."""
    ph, pw = _hw(pose)
    if abs(pw / ph - person_hw[1] / person_hw[0]) > ASPECT_TOLERANCE * person_hw[1] / person_hw[0]:
        raise InfuseError(node, f"the pose image is {pw}x{ph} but the person image is {person_hw[1]}x{person_hw[0]} "
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


def check_tryon_model(model, node: str) -> IPAdapterModel:
    """The image-prompt adapter of a try-on UNet loaded by Infuse; anything else is an error."""
    model_sites(model, node)
    channels = getattr(model.model.diffusion_model, "in_channels", None)
    adapter = getattr(model.model, "infuse_tryon_adapter", None)
    fix = "load IDM-VTON's unet/ with Infuse Load IDM-VTON and connect its tryon_model output."
    if channels != TRYON_CHANNELS:
        raise InfuseError(node, f"the model takes {channels} input channels; IDM-VTON's try-on UNet takes "
                                f"{TRYON_CHANNELS} (latent, mask, masked person, pose).", fix, input_name="model")
    if adapter is None:
        raise InfuseError(node, "the model is a 13-channel UNet but was not loaded as IDM-VTON's try-on UNet "
                                "(its image prompt weights are missing).", fix, input_name="model")
    return adapter


def check_garment_unet(model, garment, node: str) -> None:
    """The garment UNet must have a self-attention of the same width at every site of the try-on UNet."""
    ours = {s.key: s.inner_dim for s in model_sites(model, node)}
    theirs = {s.key: s.inner_dim for s in discover_sites(garment.model.diffusion_model)}
    if ours != theirs:
        differing = sorted(set(ours.items()) ^ set(theirs.items()))
        raise InfuseError(node, f"the garment UNet's transformer blocks do not match the try-on UNet's "
                                f"({len(theirs)} vs {len(ours)} blocks; first difference at "
                                f"{':'.join(map(str, differing[0][0]))}).",
                          "load the garment UNet (unet_encoder/) from the same IDM-VTON release as the try-on "
                          "UNet.", input_name="garment_unet")


def apply_tryon(model, garment_unet, garment_latent: torch.Tensor, garment_context: torch.Tensor,
                garment_embeds, adapter: IPAdapterModel, node: str, garment_weight: float = 1.0,
                ip_weight: float = 1.0, cache_every: int = 1) -> tuple:
    """Wire the garment net (reference concat) and the image prompt onto `model` (a clone the caller owns).
    Returns the two contributions."""
    check_garment_unet(model, garment_unet, node)
    sites = model_sites(model, node)
    reference = ReferenceAttention(node, "concat", garment_latent, attn1_projections(model, sites),
                                   source=garment_unet, noised=False, cache_every=cache_every,
                                   context=garment_context, weight=garment_weight)
    apply_reference(model, reference, sites)
    cond, uncond = image_tokens(adapter, node, embeds=garment_embeds)
    image_prompt = apply_ipadapter(model, adapter, cond, uncond, node, weight=ip_weight)
    return reference, image_prompt


def with_concat(conditioning: list, concat: torch.Tensor) -> list:
    """A copy of a CONDITIONING with the try-on concat attached to every entry."""
    return [[c, dict(extra, **{CONCAT_KEY: concat})] for c, extra in conditioning]
