"""Step time of PuLID vs plain, interleaved in one run: on an SDXL UNet (ID attention at every cross-attention, 10
ID tokens + 8 zero tokens, ortho_v2: the fidelity method) and on a Flux (ID cross-attention after every 2nd double and
4th single block, 32 ID tokens). Random weights in the real layouts; the ID tokens are random too (the encoder runs
once per apply, before sampling).

    python bench/pulid_overhead.py                                # CPU: tiny SDXL, Flux at hidden 256
    python bench/pulid_overhead.py --model sdxl --latent 128 --dtype fp16 --flux-hidden 3072 --flux-heads 24 \
        --flux-depth 19 --flux-single 38                          # on a GPU, real sizes
"""
import harness  # first: puts tests/ on sys.path, imports ComfyUI, loads the pack

import argparse

import torch

from comfyui_infuse.mechanisms.decoupled_attention.pulid import apply_pulid_sdxl
from comfyui_infuse.mechanisms.decoupled_attention.pulid_flux import PerceiverAttentionCA, apply_pulid_flux, ca_sites
from comfyui_infuse.mechanisms.patching.surfaces import dit
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites


def sdxl_variants(model):
    g = torch.Generator().manual_seed(0)
    sites = model_sites(model)
    kv = {n: (torch.randn(s.inner_dim, 2048, generator=g) / 45, torch.randn(s.inner_dim, 2048, generator=g) / 45)
          for n, s in enumerate(sites)}
    cond, uncond = torch.randn(1, 10, 2048, generator=g), torch.randn(1, 10, 2048, generator=g)
    patched = model.clone()
    apply_pulid_sdxl(patched, kv, cond, uncond, "bench", num_zero=8, projection="ortho_v2", weight=0.8)
    return {"PuLID SDXL (fidelity: 10 + 8 zero tokens, ortho_v2)": patched}


def flux_variants(model, hidden):
    g = torch.Generator().manual_seed(1)
    layers = []
    for _ in ca_sites(dit.block_sites(model)):
        layer = PerceiverAttentionCA(hidden, 2048, 2048)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=g) / (p.shape[-1] ** 0.5 if p.ndim > 1 else 1.0))
        layers.append(layer)
    cond, uncond = torch.randn(1, 32, 2048, generator=g), torch.randn(1, 32, 2048, generator=g)
    patched = model.clone()
    apply_pulid_flux(patched, layers, cond, uncond, "bench", weight=1.0)
    return {"PuLID Flux (32 ID tokens)": patched}


def main():
    p = harness.parser(__doc__)
    p.set_defaults(model="tiny_sdxl", steps=3, rounds=5)
    for name, default in (("hidden", 256), ("heads", 2), ("depth", 2), ("single", 4)):
        p.add_argument(f"--flux-{name}", type=int, default=default)
    args = p.parse_args()
    harness.run(args, sdxl_variants)
    flux = argparse.Namespace(**vars(args), hidden=args.flux_hidden, heads=args.flux_heads, depth=args.flux_depth,
                              single=args.flux_single, threads=0)
    model = harness.flux_model(flux)
    harness.flux_run(flux, {"plain": model, **flux_variants(model, flux.hidden)})


if __name__ == "__main__":
    main()
