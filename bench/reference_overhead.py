"""Step time of reference-only (the model's own reference pass + concat attention) vs plain, exact and cached.

    python bench/reference_overhead.py                   # real-size SD1.5, 256 px, CPU
"""
from harness import parser, run  # first: puts tests/ on sys.path, imports ComfyUI, loads the pack

import torch

from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.mechanisms.reference_attention.reference import (ReferenceAttention, apply_reference,
                                                                     attn1_projections)


def variants(model, latent_side):
    sites = model_sites(model)
    latent = model.model.process_latent_in(torch.randn(1, 4, latent_side, latent_side))
    out = {}
    for label, k in (("reference-only, exact (every step)", 1), ("reference-only, cache k=4", 4)):
        m = model.clone()
        apply_reference(m, ReferenceAttention("bench", "concat", latent, attn1_projections(m, sites),
                                              cache_every=k), sites)
        out[label] = m
    return out


if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    run(args, lambda model: variants(model, args.latent))
