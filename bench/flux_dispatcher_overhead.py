"""Step time of the DiT-block dispatcher on every block of a Flux vs plain sampling, same model, one run.

    python bench/flux_dispatcher_overhead.py                              # tiny Flux (hidden 64, 2 + 2 blocks)
    python bench/flux_dispatcher_overhead.py --hidden 3072 --heads 24 --depth 19 --single 38 --latent 128 \
        --dtype bf16                                                     # Flux-dev size, random weights, on a GPU

Variants: the dispatcher with one weight-0 contribution (never computed), and with a cheap nonzero one (a
learned-bias-sized constant added to the image tokens, which also snapshots the block inputs).
"""
from __future__ import annotations

import harness  # puts tests/ on sys.path, imports ComfyUI, loads the pack

import argparse

import comfy.model_management as mm
import torch

from comfyui_infuse.mechanisms.patching.surfaces import dit
from support import tiny_flux


class ZeroWeight(dit.BlockContribution):
    def block_delta(self, block_input, block_output, call):
        raise AssertionError("a zero-weight contribution is never computed")


class Bias(dit.BlockContribution):
    def __init__(self, width: int):
        super().__init__("bench", weight=0.5)
        self.bias = torch.randn(width) * 0.01

    def block_delta(self, block_input, block_output, call):
        return self.bias.to(block_output["img"]).expand_as(block_output["img"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--single", type=int, default=2)
    p.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]

    head = args.hidden // args.heads
    axes = [head - 2 * (3 * head // 8), 3 * head // 8, 3 * head // 8]
    tiny_flux.TINY_FLUX_UNET.update(hidden_size=args.hidden, num_heads=args.heads, depth=args.depth,
                                    depth_single_blocks=args.single, axes_dim=axes)
    model = tiny_flux.build_model(seed=0, dtype=dtype)
    pos, neg = tiny_flux.conditioning(1), tiny_flux.conditioning(2)
    zero, bias = model.clone(), model.clone()
    dit.add_block_contribution(zero, ZeroWeight("bench", weight=0.0))
    dit.add_block_contribution(bias, Bias(args.hidden))
    runs = {"plain": model, "dispatcher, one weight-0 contribution": zero, "dispatcher, one constant-bias delta": bias}
    times, _ = harness.interleaved(runs, lambda m: tiny_flux.sample(m, pos, neg, latent_hw=(args.latent, args.latent),
                                                                  steps=args.steps), args.steps, args.rounds)
    harness.report(f"Flux hidden {args.hidden}, {args.depth} double + {args.single} single blocks "
                   f"({len(dit.block_sites(model))} dispatchers), latent {args.latent}x{args.latent}, batch 1 "
                   f"with CFG, {args.dtype}, device {mm.get_torch_device()}, {args.steps} steps x {args.rounds} rounds, "
                   f"torch {torch.__version__}", times)

if __name__ == "__main__":
    main()
