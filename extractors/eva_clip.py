"""EVA02-CLIP-L-14-336's image tower, as PuLID uses it: the L2-normalised projected CLS token [B, 768] and the
residual stream entering blocks 4, 8, 12, 16, 20 ([B, 577, 1024] each, CLS first) of a face image.

The file users have is EVA-CLIP's own checkpoint (`EVA02_CLIP_L_336_psz14_s6B.pt`, QuanSun/EVA-CLIP; the whole CLIP,
`visual.*` keys in EVA's naming). It is read with torch.load(weights_only=True) and mapped onto timm's Eva
(`eva02_large_patch14_clip_336`, the same network open-clip builds for EVA02-L-14-336) by timm's own
`checkpoint_filter_fn`: q_bias / v_bias -> q_proj / v_proj biases, inner_attn_ln -> attn.norm, the SwiGLU w1 / w2 /
ffn_ln / w3 -> fc1_g / fc1_x / norm / fc2, RoPE buffers dropped (timm computes them). timm comes with open-clip.
"""
from __future__ import annotations

import torch

from ..core.errors import InfuseError
from ..core.files import load_weights
from ..core.managed import managed
from .deps import require

TIMM_ARCH = "eva02_large_patch14_clip_336"
HIDDEN_LAYERS = (3, 7, 11, 15, 19)          # outputs of these blocks = inputs of blocks 4, 8, 12, 16, 20
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SIZE = 336


def _unwrap(sd: dict) -> dict:
    for key in ("model", "module", "state_dict"):     # EVA-CLIP's loader accepts these wrappers
        if isinstance(sd.get(key), dict):
            sd = sd[key]
    return {k.removeprefix("module."): v for k, v in sd.items()}


class EvaClipVision:
    def __init__(self, model: torch.nn.Module):
        self.model = model.eval().requires_grad_(False)
        self.patcher = managed(self.model)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """pixels: [B, 3, 336, 336], normalised with MEAN / STD."""
        import comfy.model_management as mm

        mm.load_model_gpu(self.patcher)
        p = next(self.model.parameters())
        final, hidden = self.model.forward_intermediates(pixels.to(p.device, p.dtype), indices=list(HIDDEN_LAYERS),
                                                         return_prefix_tokens=True, norm=False, output_fmt="NLC")
        cls = self.model.forward_head(final).float()
        cls = cls / cls.norm(dim=-1, keepdim=True)
        hidden = [torch.cat([prefix, tokens], dim=1).float() for tokens, prefix in hidden]
        return cls.cpu(), [h.cpu() for h in hidden]


def load_eva_clip(path: str, input_name: str = "eva_clip") -> EvaClipVision:
    timm = require("timm")
    from timm.models.eva import checkpoint_filter_fn

    sd = _unwrap(load_weights(path, input_name))
    if "visual.pos_embed" not in sd and "pos_embed" not in sd:
        raise InfuseError("the file holds no EVA-CLIP image tower (no visual.pos_embed).",
                          "choose EVA02_CLIP_L_336_psz14_s6B.pt (QuanSun/EVA-CLIP) from models/clip_vision.",
                          input_name=input_name)
    depth = len({k.split(".")[2] for k in sd if k.startswith("visual.blocks.")}) or 24
    width = sd["visual.pos_embed"].shape[-1] if "visual.pos_embed" in sd else 1024
    embed = sd["visual.head.weight"].shape[0] if "visual.head.weight" in sd else 768
    if depth <= max(HIDDEN_LAYERS):
        raise InfuseError(f"the EVA-CLIP tower has {depth} blocks; PuLID reads the inputs of blocks 4 to 20.",
                          "choose EVA02_CLIP_L_336_psz14_s6B.pt (QuanSun/EVA-CLIP).", input_name=input_name)
    model = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=embed, global_pool="token", depth=depth,
                              embed_dim=width, num_heads=max(1, width // 64))       # as the file's shapes say
    try:
        model.load_state_dict(checkpoint_filter_fn(sd, model), strict=True)
    except RuntimeError as e:
        raise InfuseError(f"the file is not EVA02-CLIP-L-14-336's image tower ({str(e).splitlines()[0]}...).",
                          "choose EVA02_CLIP_L_336_psz14_s6B.pt (QuanSun/EVA-CLIP).", input_name=input_name) from e
    return EvaClipVision(model)
