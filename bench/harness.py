"""Shared timing harness: sample the same model plain and patched, interleaved round by round, in one run."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.comfy_env import import_comfyui, load_pack  # noqa: E402

import_comfyui()
load_pack()

import comfy.model_management as mm  # noqa: E402
import torch  # noqa: E402

from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites  # noqa: E402
from support import tiny_models  # noqa: E402


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sd15", choices=sorted(tiny_models.MODELS))
    p.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    return p


def torch_dtype(args) -> torch.dtype:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]


def interleaved(runs: dict, sample, steps: int, rounds: int) -> tuple[dict, dict]:
    """Per-step times of each variant, round by round after one warm-up each, and each one's last output.
    `sample(model)` samples `steps` steps."""
    outputs = {}
    cuda = mm.get_torch_device().type == "cuda"

    def step_time(name, m) -> float:
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        outputs[name] = sample(m)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / steps

    for name, m in runs.items():                 # warm-up: model load, kernels, caches
        step_time(name, m)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, m in runs.items():
            times[name].append(step_time(name, m))
    return times, outputs


def report(title: str, times: dict) -> None:
    """Median ms/step of each variant and its ratio to 'plain' (also of the fastest rounds, steadier on a busy
    machine)."""
    plain, plain_min = statistics.median(times["plain"]), min(times["plain"])
    print(title)
    for name, t in times.items():
        med = statistics.median(t)
        print(f"  {name:<44} {med * 1000:9.2f} ms/step   ratio {med / plain:6.3f}x   "
              f"(spread {min(t) * 1000:.1f}-{max(t) * 1000:.1f} ms; fastest-round ratio {min(t) / plain_min:.3f}x)")


def run(args, make_variants, model=None, conditioning=None) -> dict:
    """`make_variants(model)` -> {name: patched ModelPatcher}; 'plain' is added first. `model` and
    `conditioning` (positive, negative) default to `args.model` with random text conditioning.
    Returns each variant's last sampled latent."""
    if model is None:
        model = tiny_models.build_model(args.model, seed=0, dtype=torch_dtype(args))
    pos, neg = conditioning or (tiny_models.text_conditioning(args.model, 1), tiny_models.text_conditioning(args.model, 2))
    runs = {"plain": model, **make_variants(model)}
    times, outputs = interleaved(runs, lambda m: tiny_models.sample(m, pos, neg, latent_hw=(args.latent, args.latent),
                                                                   steps=args.steps), args.steps, args.rounds)
    report(f"model {args.model} ({len(model_sites(model))} attention sites), latent {args.latent}x"
           f"{args.latent}, batch 1 with CFG, {args.dtype}, device {mm.get_torch_device()}, "
           f"{args.steps} steps x {args.rounds} rounds, torch {torch.__version__}", times)
    return outputs


def flux_parser(doc: str, hidden: int, heads: int, depth: int, single: int, steps: int, rounds: int):
    """The arguments of the Flux benches: the model's size, latent, steps, rounds, dtype."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=hidden)
    p.add_argument("--heads", type=int, default=heads)
    p.add_argument("--depth", type=int, default=depth)
    p.add_argument("--single", type=int, default=single)
    p.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def flux_model(args):
    """A random-weight Flux of the asked size (ComfyUI's classes), RoPE axes split as Flux splits its 128."""
    from support import tiny_flux

    if args.threads:
        torch.set_num_threads(args.threads)
    head = args.hidden // args.heads
    axes = [head - 2 * (3 * head // 8), 3 * head // 8, 3 * head // 8]
    tiny_flux.TINY_FLUX_UNET.update(hidden_size=args.hidden, num_heads=args.heads, depth=args.depth,
                                    depth_single_blocks=args.single, axes_dim=axes)
    return tiny_flux.build_model(seed=0, dtype=torch_dtype(args))


def flux_run(args, runs: dict) -> None:
    """Sample every variant of `runs` ('plain' first) interleaved, and report the ratios."""
    from comfyui_infuse.mechanisms.patching.surfaces import dit
    from support import tiny_flux

    pos, neg = tiny_flux.conditioning(1), tiny_flux.conditioning(2)
    times, _ = interleaved(runs, lambda m: tiny_flux.sample(m, pos, neg, latent_hw=(args.latent, args.latent),
                                                          steps=args.steps), args.steps, args.rounds)
    report(f"Flux hidden {args.hidden}, {args.depth} double + {args.single} single blocks "
           f"({len(dit.block_sites(runs['plain']))} blocks), latent {args.latent}x{args.latent}, batch 1 with CFG, "
           f"{args.dtype}, device {mm.get_torch_device()}, {args.steps} steps x {args.rounds} rounds, "
           f"torch {torch.__version__}", times)
