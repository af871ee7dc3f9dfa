"""Step time of IDM-VTON try-on (garment UNet pass + concat self-attention + image prompt) vs the plain try-on
UNet (same 13-channel UNet, same concat conditioning, no garment, no image prompt), exact and cached; and what
the cache changes in the output, against what the garment changes.

    python bench/tryon_overhead.py                         # SDXL structure at half width, 256 px, CPU
    python bench/tryon_overhead.py --width 320 --latent 128 --dtype fp16   # real size, 1024 px, on a GPU
"""
from harness import parser, run, torch_dtype  # first: puts tests/ on sys.path, imports ComfyUI, loads the pack

import comfy.model_management as mm
import comfy.model_patcher
import torch

from comfyui_infuse.core.records import ImageEmbeds
from comfyui_infuse.mechanisms.loaders.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.loaders.tryon_models import GarmentSDXL, TryOnSDXL
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.mechanisms.recipes.idm_vton import apply_tryon, with_concat
from support import ipadapter_files, tiny_models

CLIP_HIDDEN = 1280


def build(config_cls, unet: dict, seed: int, dtype):
    config = config_cls(unet)
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    tiny_models.randomize(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def tryon_parts(width: int, dtype):
    unet = dict(tiny_models.SDXL_UNET, model_channels=width)
    tryon = build(TryOnSDXL, dict(unet, in_channels=13), 0, dtype)
    garment = build(GarmentSDXL, dict(unet, adm_in_channels=None, num_classes=None), 1, dtype)
    sites = model_sites(tryon)
    ctx = unet["context_dim"]
    adapter = parse_ipadapter({"image_proj": ipadapter_files.image_proj("resampler", cross=ctx, clip_hidden=CLIP_HIDDEN,
                                                                        resampler_dim=1280, depth=4),
                               "ip_adapter": ipadapter_files.ip_layers([s.inner_dim for s in sites], ctx)},
                              "idm-vton unet")
    return tryon, garment, adapter


def variants(model, garment, adapter, latent_side):
    g = torch.Generator().manual_seed(0)
    garment_latent = model.model.process_latent_in(torch.randn(1, 4, latent_side, latent_side, generator=g))
    context = torch.randn(1, 77, tiny_models.SDXL_UNET["context_dim"], generator=g)
    embeds = ImageEmbeds("bench", torch.randn(1, 1024, generator=g), torch.randn(1, 257, CLIP_HIDDEN, generator=g),
                         torch.randn(1, 257, CLIP_HIDDEN, generator=g))
    out = {}
    for label, k, garment_weight in (("try-on, exact (garment UNet every step)", 1, 1.0),
                                     ("try-on, cache k=4", 4, 1.0),
                                     ("image prompt only (garment weight 0)", 1, 0.0)):
        m = model.clone()
        apply_tryon(m, garment, garment_latent, context, embeds, adapter, garment_weight=garment_weight,
                    cache_every=k)
        out[label] = m
    return out


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--width", type=int, default=160, help="model_channels (320 = real SDXL)")
    p.set_defaults(model="sdxl", latent=32, steps=8, rounds=3)
    args = p.parse_args()
    tryon, garment, adapter = tryon_parts(args.width, torch_dtype(args))
    g = torch.Generator().manual_seed(1)
    concat = torch.randn(1, 9, args.latent, args.latent, generator=g)
    pos = with_concat(tiny_models.text_conditioning("sdxl", 1), concat)
    neg = with_concat(tiny_models.text_conditioning("sdxl", 2), concat)
    print(f"SDXL structure, model_channels {args.width}; plain = the try-on UNet with its concat input only")
    outs = run(args, lambda m: variants(m, garment, adapter, args.latent), model=tryon, conditioning=(pos, neg))
    exact, cached, no_garment = (outs[k] for k in list(outs)[1:])
    print(f"  output change from caching (k=4 vs exact, {args.steps} steps): {relative(cached, exact):.4f} of "
          f"|exact|; from the garment itself (garment weight 0 vs 1): {relative(no_garment, exact):.4f}")
