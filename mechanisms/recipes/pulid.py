"""PuLID from a node's inputs: the checks that need no image first, then the face features (ArcFace of Infuse Face
Analysis, EVA-CLIP of the parsed, aligned face), the ID tokens (once per run), and the ID attention on the model's
base (SDXL: every cross-attention; Flux: after every 2nd double / 4th single block), on a clone of the model."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...core.errors import InfuseError, check_percent_range
from ...extractors.pulid_face import id_features
from ..decoupled_attention.pulid import PROJECTIONS, apply_pulid_sdxl
from ..decoupled_attention.pulid_flux import apply_pulid_flux
from ..decoupled_attention.pulid_model import PulidModel
from ..patching.surfaces.dit import is_flux
from ..patching.surfaces.unet import comfy_model_type, unet_target

# method -> version -> (zero tokens, projection): v1 as the v1 app's modes; v1.1 as its app (20 zero tokens by
# default, ortho v2; its hidden ortho choice 'v1' for style)
METHODS = {"fidelity": {"v1": (8, "ortho_v2"), "v1.1": (20, "ortho_v2")},
           "style": {"v1": (16, "ortho"), "v1.1": (20, "ortho")},
           "neutral": {"v1": (0, "none"), "v1.1": (0, "none")}}
COMBINE = ("mean", "concat")
ARCFACE_PACK = "antelopev2"


@dataclass(eq=False)
class PulidBundle:
    """What Infuse Load PuLID gives: the PuLID file, the EVA-CLIP tower and the face parser."""
    model: PulidModel
    eva: object
    parser: object

    def describe(self) -> str:
        return f"{self.model.describe()}; EVA02-CLIP-L-14-336; BiSeNet face parsing"


def check_base(model, pulid: PulidModel):
    """The model's UNetTarget for an SDXL file on an SDXL model; None for a Flux file on Flux; else an error."""
    flux = is_flux(model)
    if pulid.base == "flux" and not flux or pulid.base == "sdxl" and flux:
        wants = "a Flux model (Load Diffusion Model: flux1-dev)" if pulid.base == "flux" else "an SDXL checkpoint"
        raise InfuseError(f"'{pulid.name}' is {pulid.describe().split(' (')[0]} but the model is a "
                          f"{comfy_model_type(model)} model.",
                          f"connect {wants}, or load the PuLID file made for this model.", input_name="model")
    if flux:
        return None
    target = unet_target(model)
    if target.family != "sdxl":
        raise InfuseError(f"PuLID SDXL needs an SDXL model; this one is {comfy_model_type(model)}.",
                          "connect an SDXL checkpoint.", input_name="model")
    return target


def _faces(face_embeds, image):
    if face_embeds.model != ARCFACE_PACK:
        raise InfuseError(f"the faces were analysed with '{face_embeds.model}'; PuLID was trained with "
                          f"{ARCFACE_PACK}'s ArcFace.", f"set model_pack to {ARCFACE_PACK} on Infuse Face Analysis.",
                          input_name="face_embeds")
    if image.shape[0] != len(face_embeds) or any(tuple(hw) != tuple(image.shape[1:3])
                                                  for hw in face_embeds.image_hw.int().tolist()):
        raise InfuseError(f"the {image.shape[0]} image(s) are not the {len(face_embeds)} the faces were found in.",
                          "connect the same images to Infuse Face Analysis and to image here.", input_name="image")
    found = face_embeds.found
    present = face_embeds.present()
    if present is None:
        return None, None
    return present, image[found]


@torch.no_grad()
def pulid_tokens(pulid: PulidModel, id_cond: torch.Tensor, hidden: list[torch.Tensor], combine: str):
    """(cond, uncond) ID tokens [1, T, 2048]. Several faces: their tokens averaged (mean, as the ComfyUI ports), or
    the reference's several-image input (concat: IDEncoder's tokens side by side; IDFormer reads them together).
    Uncond: the encoder on zero inputs, as the reference (IDFormer: one zero face, as v1.1; IDEncoder with concat:
    one zero face per face, so cond and uncond have as many tokens)."""
    if combine not in COMBINE:
        raise InfuseError(f"combine must be one of {COMBINE}, got '{combine}'.", "pick mean or concat.",
                          input_name="combine")
    encoder = pulid.encoder.float()
    n = id_cond.shape[0]
    zero_cond, zero_hidden = torch.zeros_like(id_cond[:1]), [torch.zeros_like(h[:1]) for h in hidden]
    uncond = encoder(zero_cond, zero_hidden)
    if combine == "mean" or n == 1:
        cond = encoder(id_cond, hidden).mean(0, keepdim=True)
    elif hasattr(encoder, "queries"):                            # IDFormer: [1, n, 1280], hidden tokens side by side
        cond = encoder(id_cond[None], [h.reshape(1, -1, h.shape[-1]) for h in hidden])
    else:
        cond = encoder(id_cond, hidden).reshape(1, -1, encoder.context_dim)
        uncond = uncond.repeat(1, n, 1)
    return cond, uncond


def pulid_on_model(model, bundle: PulidBundle, face_embeds, image, weight, start_percent, end_percent,
                   method="fidelity", combine="mean", attn_mask=None, projection="auto", zero_tokens=-1):
    """A clone of `model` with PuLID applied; the faces' entries without a face are left out (no face at all: the
    clone is the model unchanged)."""
    pulid = bundle.model
    target = check_base(model, pulid)
    check_percent_range(start_percent, end_percent)
    if method not in METHODS:
        raise InfuseError(f"method must be one of {tuple(METHODS)}, got '{method}'.", "pick one in the node.",
                          input_name="method")
    if projection != "auto" and projection not in PROJECTIONS:
        raise InfuseError(f"projection must be auto or one of {PROJECTIONS}, got '{projection}'.",
                          "pick one in the node.", input_name="projection")
    faces, images = _faces(face_embeds, image)
    if faces is None:
        return model.clone()
    id_cond, hidden, _ = id_features(images, faces, bundle.eva, bundle.parser)
    cond, uncond = pulid_tokens(pulid, id_cond, hidden, combine)
    patched = model.clone()
    schedule = dict(weight=weight, start_percent=start_percent, end_percent=end_percent, mask=attn_mask)
    if target is None:
        apply_pulid_flux(patched, pulid.ca_layers, cond, uncond, f"'{pulid.name}'", pulid.ca_patcher(), **schedule)
    else:
        num_zero, auto_projection = METHODS[method][pulid.version]
        apply_pulid_sdxl(patched, pulid.kv, cond, uncond, f"'{pulid.name}'",
                         num_zero=num_zero if zero_tokens < 0 else zero_tokens,
                         projection=auto_projection if projection == "auto" else projection, target=target, **schedule)
    return patched
