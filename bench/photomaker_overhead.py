"""Step time of PhotoMaker vs plain, interleaved in one run. PhotoMaker edits the conditioning once per run (the
photos' ID rows fused into the class word's copies, a text-only entry before start_percent) and its LoRA is merged
into the weights when the model loads, so the steps should cost what plain steps cost: the ratio should be ~1.
The once-per-run part (photo encode, two prompt encodes) is timed apart. Interleaving the LoRA variant with the
others makes ComfyUI re-patch the shared weights at every switch (a cost of switching models, not of a step; a
workflow pays it once): read its fastest-round ratio with that in mind.

    python bench/photomaker_overhead.py                    # CPU: tiny SDXL checkpoint, CLIP tower 2 layers
    python bench/photomaker_overhead.py --latent 128 --dtype fp16 --tower-layers 24 --tower-width 1024   # GPU
"""
import harness  # first: puts tests/ on sys.path, imports ComfyUI, loads the pack

import tempfile
import time
from pathlib import Path

import torch

from comfyui_infuse.mechanisms.loaders.photomaker_file import load_photomaker
from comfyui_infuse.mechanisms.recipes.photomaker import photomaker_on
from support import photomaker_files as pf
from support import tiny_models


def main():
    p = harness.parser(__doc__)
    p.set_defaults(model="tiny_sdxl", steps=3, rounds=5)
    p.add_argument("--tower-layers", type=int, default=2)
    p.add_argument("--tower-width", type=int, default=64)
    args = p.parse_args()
    import comfy.sd

    tiny_models.register()
    work = Path(tempfile.mkdtemp(prefix="infuse_pm_bench_"))
    ckpt = tiny_models.write_checkpoint(work / "tiny_sdxl.safetensors", "tiny_sdxl", seed=0)
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=False)
    cond, _ = clip.encode_from_tokens(clip.tokenize("x"), return_pooled=True)
    l_width = clip.cond_stage_model.clip_l.transformer.text_model.embeddings.token_embedding.weight.shape[1]
    tower = dict(layers=args.tower_layers, width=args.tower_width, heads=max(1, args.tower_width // 64),
                 projections=(l_width, cond.shape[-1] - l_width))
    lora = pf.lora_weights(pf.diffusers_attention_paths(model), rank=4, seed=1)
    photomaker = load_photomaker(str(pf.write(work / "photomaker-v1.bin", pf.id_encoder_v1(seed=2, **tower), lora)))
    photos = torch.rand(2, 256, 256, 3, generator=torch.Generator().manual_seed(0))

    t = time.perf_counter()
    pm_model, positive = photomaker_on(model, clip, photomaker, photos, "a photo of a man img, in the snow", "img",
                                       0.2, 1.0, 1.0)
    print(f"once per run (2 photos encoded, the prompt encoded twice, LoRA patches): "
          f"{(time.perf_counter() - t) * 1000:.0f} ms")
    plain_pos, plain_pooled = clip.encode_from_tokens(clip.tokenize("a photo of a man, in the snow"),
                                                      return_pooled=True)
    negative = tiny_models.text_conditioning(args.model, 2)
    _, no_lora_positive = photomaker_on(model, clip, photomaker, photos, "a photo of a man img, in the snow", "img",
                                        0.2, 1.0, 0.0)
    no_lora = model.clone()          # the same weights as plain: the conditioning's cost alone
    runs = {"plain": model, "PhotoMaker v1 conditioning (2 photos, start 0.2)": no_lora,
            "PhotoMaker v1 + its LoRA": pm_model}
    conditioning = {id(model): [[plain_pos, {"pooled_output": plain_pooled}]], id(no_lora): no_lora_positive,
                    id(pm_model): positive}
    times, _ = harness.interleaved(
        runs, lambda m: tiny_models.sample(m, conditioning[id(m)], negative, latent_hw=(args.latent, args.latent),
                                           steps=args.steps), args.steps, args.rounds)
    harness.report(f"tiny SDXL checkpoint, latent {args.latent}x{args.latent}, batch 1 with CFG, {args.dtype}, "
                   f"{args.steps} steps x {args.rounds} rounds, torch {torch.__version__}", times)


if __name__ == "__main__":
    main()
