"""Step time of the Flux IP-Adapters (XLabs v2: 16 image tokens on the double blocks; InstantX: 128 tokens on every
block, inside the attention) vs plain sampling, same model, interleaved in one run.

    python bench/flux_ipadapter_overhead.py                            # CPU: hidden 256 (2 heads of 128), 2 + 4 blocks
    python bench/flux_ipadapter_overhead.py --hidden 3072 --heads 24 --depth 19 --single 38 --latent 128 \
        --dtype bf16 --steps 4 --rounds 5                              # Flux-dev size, random weights, on a GPU

The adapters' layers are random, in the files' shapes at this width; the image tokens are random too (the projection
runs once per apply, before sampling, and is not what is measured here).
"""
from __future__ import annotations

import harness  # puts tests/ on sys.path, imports ComfyUI, loads the pack

import argparse

import comfy.model_management as mm
import torch

from comfyui_infuse.mechanisms.decoupled_attention.flux_adapter import FluxIPAdapterModel, FluxIPLayer
from comfyui_infuse.mechanisms.decoupled_attention.flux_attention import apply_flux_ipadapter
from comfyui_infuse.mechanisms.patching.surfaces import dit
from support import tiny_flux


def adapter(variant: str, width: int, n_layers: int, seed: int) -> FluxIPAdapterModel:
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g) / shape[-1] ** 0.5
    bias = variant == "xlabs"
    layers = [FluxIPLayer(rand(width, tiny_flux.CONTEXT_DIM), rand(width, tiny_flux.CONTEXT_DIM),
                          rand(width) if bias else None, rand(width) if bias else None) for _ in range(n_layers)]
    return FluxIPAdapterModel(name=variant, variant=variant, version="v2" if bias else "", projection=None,
                              image_dim=0, token_dim=tiny_flux.CONTEXT_DIM, layers=layers, all_blocks=not bias,
                              adds_to="block" if bias else "attention", norm_kv=not bias)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--single", type=int, default=4)
    p.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    args = p.parse_args()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]

    head = args.hidden // args.heads
    axes = [head - 2 * (3 * head // 8), 3 * head // 8, 3 * head // 8]
    tiny_flux.TINY_FLUX_UNET.update(hidden_size=args.hidden, num_heads=args.heads, depth=args.depth,
                                    depth_single_blocks=args.single, axes_dim=axes)
    model = tiny_flux.build_model(seed=0, dtype=dtype)
    pos, neg = tiny_flux.conditioning(1), tiny_flux.conditioning(2)
    runs = {"plain": model}
    for name, variant, tokens, layers in (("XLabs v2 (16 tokens, double blocks)", "xlabs", 16, args.depth),
                                          ("InstantX (128 tokens, every block)", "instantx", 128,
                                           args.depth + args.single)):
        g = torch.Generator().manual_seed(tokens)
        cond, uncond = (torch.randn(1, tokens, tiny_flux.CONTEXT_DIM, generator=g) for _ in range(2))
        patched = model.clone()
        apply_flux_ipadapter(patched, adapter(variant, args.hidden, layers, tokens), cond, uncond, weight=0.8)
        runs[name] = patched
    times, _ = harness.interleaved(runs, lambda m: tiny_flux.sample(m, pos, neg, latent_hw=(args.latent, args.latent),
                                                                  steps=args.steps), args.steps, args.rounds)
    harness.report(f"Flux hidden {args.hidden}, {args.depth} double + {args.single} single blocks "
                   f"({len(dit.block_sites(model))} blocks), latent {args.latent}x{args.latent}, batch 1 with CFG, "
                   f"{args.dtype}, device {mm.get_torch_device()}, {args.steps} steps x {args.rounds} rounds, "
                   f"torch {torch.__version__}", times)


if __name__ == "__main__":
    main()
