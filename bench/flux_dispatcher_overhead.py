"""Step time of the DiT-block dispatcher on every block of a Flux vs plain sampling, same model, one run.

    python bench/flux_dispatcher_overhead.py                              # tiny Flux (hidden 64, 2 + 2 blocks)
    python bench/flux_dispatcher_overhead.py --hidden 3072 --heads 24 --depth 19 --single 38 --latent 128 \
        --dtype bf16                                                     # Flux-dev size, random weights, on a GPU

Variants: the dispatcher with one weight-0 contribution (never computed), and with a cheap nonzero one (a
learned-bias-sized constant added to the image tokens, which also snapshots the block inputs).
"""
from __future__ import annotations

import harness  # puts tests/ on sys.path, imports ComfyUI, loads the pack

import torch

from comfyui_infuse.mechanisms.patching.surfaces import dit


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
    args = harness.flux_parser(__doc__, hidden=64, heads=2, depth=2, single=2, steps=4, rounds=7).parse_args()
    model = harness.flux_model(args)
    zero, bias = model.clone(), model.clone()
    dit.add_block_contribution(zero, ZeroWeight("bench", weight=0.0))
    dit.add_block_contribution(bias, Bias(args.hidden))
    harness.flux_run(args, {"plain": model, "dispatcher, one weight-0 contribution": zero,
                            "dispatcher, one constant-bias delta": bias})


if __name__ == "__main__":
    main()
