"""Step time of sampling with IP-Adapter (random weights in the real layout for the model) vs plain.

    python bench/ipadapter_overhead.py                          # real-size SD1.5, base and plus adapters
    python bench/ipadapter_overhead.py --model sdxl --latent 128 --dtype fp16   # on a GPU
"""
from harness import parser, run  # first: puts tests/ on sys.path, imports ComfyUI, loads the pack

import torch

from comfyui_infuse.core.records import ImageEmbeds
from comfyui_infuse.mechanisms.decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from comfyui_infuse.mechanisms.loaders.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from support import ipadapter_files as f


def variants(model, name):
    sites = model_sites(model)
    ctx = sites[0].context_dim
    embeds = ImageEmbeds("bench", torch.randn(1, 1024), torch.randn(1, 257, 1280), torch.randn(1, 257, 1280))
    out = {}
    for label, proj in (("ip-adapter base (4 tokens)", f.image_proj("linear", cross=ctx)),
                        ("ip-adapter plus (16 tokens)", f.image_proj("resampler", cross=ctx,
                                                                      resampler_dim=768 if ctx == 768 else 1280))):
        adapter = parse_ipadapter({"image_proj": proj, "ip_adapter": f.ip_layers([s.inner_dim for s in sites], ctx)},
                                  label)
        cond, uncond = image_tokens(adapter, embeds=embeds)
        m = model.clone()
        apply_ipadapter(m, adapter, cond, uncond)
        out[label] = m
    return out


if __name__ == "__main__":
    args = parser(__doc__).parse_args()
    run(args, lambda model: variants(model, args.model))
