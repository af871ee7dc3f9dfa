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

import torch

from comfyui_infuse.mechanisms.decoupled_attention.flux_adapter import FluxIPAdapterModel, FluxIPLayer
from comfyui_infuse.mechanisms.decoupled_attention.flux_attention import apply_flux_ipadapter
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
    args = harness.flux_parser(__doc__, hidden=256, heads=2, depth=2, single=4, steps=3, rounds=5).parse_args()
    model = harness.flux_model(args)
    runs = {"plain": model}
    for name, variant, tokens, layers in (("XLabs v2 (16 tokens, double blocks)", "xlabs", 16, args.depth),
                                          ("InstantX (128 tokens, every block)", "instantx", 128,
                                           args.depth + args.single)):
        g = torch.Generator().manual_seed(tokens)
        cond, uncond = (torch.randn(1, tokens, tiny_flux.CONTEXT_DIM, generator=g) for _ in range(2))
        patched = model.clone()
        apply_flux_ipadapter(patched, adapter(variant, args.hidden, layers, tokens), cond, uncond, weight=0.8)
        runs[name] = patched
    harness.flux_run(args, runs)


if __name__ == "__main__":
    main()
