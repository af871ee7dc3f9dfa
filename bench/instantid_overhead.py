"""Step time of an SDXL UNet with InstantID's face adapter (16 face tokens), and with IP-Adapter + InstantID
stacked, vs plain; random weights in the real layouts (InstantID: Resampler 512 -> 16 x 2048).

    python bench/instantid_overhead.py --model sdxl --latent 64 --steps 2 --rounds 3      # CPU: minutes
    python bench/instantid_overhead.py --model sdxl --latent 128 --dtype fp16              # on a GPU
"""
from harness import parser, run  # first: puts tests/ on sys.path, imports ComfyUI, loads the pack

import torch

from comfyui_infuse.core.records import FaceEmbeds, ImageEmbeds
from comfyui_infuse.mechanisms.decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from comfyui_infuse.mechanisms.loaders.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.mechanisms.recipes.instantid import face_tokens
from support import ipadapter_files as f


def variants(model):
    sites = model_sites(model)
    ctx = sites[0].context_dim
    widths = [s.inner_dim for s in sites]
    instantid = parse_ipadapter({"image_proj": f.image_proj("resampler", cross=ctx, clip_hidden=512,
                                                            resampler_dim=1280 if ctx == 2048 else 128),
                                 "ip_adapter": f.ip_layers(widths, ctx, seed=2)}, "instantid")
    ipadapter = parse_ipadapter({"image_proj": f.image_proj("linear", cross=ctx, clip_pooled=1024),
                                 "ip_adapter": f.ip_layers(widths, ctx, seed=3)}, "ip-adapter")
    faces = FaceEmbeds.from_raw("bench", torch.randn(1, 512) * 20)
    embeds = ImageEmbeds("bench", torch.randn(1, 1024), torch.randn(1, 257, 1280), torch.randn(1, 257, 1280))
    id_c, id_u = face_tokens(instantid, faces)
    ip_c, ip_u = image_tokens(ipadapter, embeds=embeds)
    face_only = model.clone()
    apply_ipadapter(face_only, instantid, id_c, id_u, weight=0.8)
    both = face_only.clone()
    apply_ipadapter(both, ipadapter, ip_c, ip_u, weight=0.6)
    return {"instantid adapter (16 tokens)": face_only, "ip-adapter + instantid adapter": both}


if __name__ == "__main__":
    run(parser(__doc__).parse_args(), variants)
