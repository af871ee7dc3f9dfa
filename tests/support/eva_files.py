"""EVA02-CLIP-L-14-336 checkpoints in EVA-CLIP's own layout (QuanSun/EVA-CLIP's EVA02_CLIP_L_336_psz14_s6B.pt: the
whole CLIP under "model", `visual.*` in EVA's naming, RoPE buffers, a text tower beside it), made from a timm Eva with
random weights."""
from __future__ import annotations

from pathlib import Path

import torch

from .tiny_models import randomize

EVA_NAMES = (("attn.q_proj.bias", "attn.q_bias"), ("attn.v_proj.bias", "attn.v_bias"), ("attn.norm.", "attn.inner_attn_ln."),
             ("mlp.fc1_g.", "mlp.w1."), ("mlp.fc1_x.", "mlp.w2."), ("mlp.norm.", "mlp.ffn_ln."), ("mlp.fc2.", "mlp.w3."))


def eva_layout(model) -> dict:
    """A timm Eva's weights under EVA-CLIP's names, with some of the RoPE buffers and text-tower keys the real file
    has besides (the loader must ignore them)."""
    sd = {}
    for key, value in model.state_dict().items():
        for timm_name, eva_name in EVA_NAMES:
            key = key.replace(timm_name, eva_name)
        sd[f"visual.{key}"] = value
    sd |= {f"visual.blocks.{i}.attn.rope.freqs_cos": torch.zeros(576, 64) for i in range(2)}
    sd |= {"visual.rope.freqs_cos": torch.zeros(576, 64), "text.positional_embedding": torch.zeros(77, 8),
           "logit_scale": torch.tensor(4.6)}
    return sd


def eva_model(seed: int = 0, depth: int = 24, width: int = 1024, embed: int = 768):
    """timm's EVA02-L-14-336 image tower (real size by default: 24 blocks of 1024, 16 heads, 768 projection)."""
    import timm

    from comfyui_infuse.extractors.eva_clip import TIMM_ARCH

    model = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=embed, global_pool="token", depth=depth,
                              embed_dim=width, num_heads=max(1, width // 64)).eval()
    with torch.no_grad():
        randomize(model, seed)
    return model


def write_eva02_l_336(path: Path, seed: int = 0, dtype=torch.float16, **sizes) -> Path:
    """The checkpoint as published (fp16, ~600 MB of image tower at real size), saved with torch.save."""
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in
          eva_layout(eva_model(seed, **sizes)).items()}
    torch.save({"model": sd}, path)
    return Path(path)
