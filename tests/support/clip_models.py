"""CLIP image encoders with random weights: a tiny open-clip architecture (registered through open-clip's own
`add_model_config`), the same weights as a ComfyUI ClipVisionModel, and a real-size ViT-H file in the layout
ComfyUI's CLIPVisionLoader reads."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .comfy_env import import_comfyui
from .tiny_models import randomize

import_comfyui()

TINY_ARCH = "Infuse-Test-ViT-Tiny"
TINY = {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 3, "width": 40, "head_width": 20,
                                         "patch_size": 8, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
TINY_COMFY_CONFIG = {"hidden_act": "gelu", "hidden_size": 40, "image_size": 32, "intermediate_size": 80,
                     "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_attention_heads": 2,
                     "num_channels": 3, "num_hidden_layers": 3, "patch_size": 8, "projection_dim": 24}


def register_tiny_open_clip(workdir: Path) -> str:
    import open_clip

    if TINY_ARCH not in open_clip.list_models():
        path = Path(workdir) / f"{TINY_ARCH}.json"
        path.write_text(json.dumps(TINY))
        open_clip.add_model_config(path)
    return TINY_ARCH


def write_open_clip(path: Path, seed: int = 0) -> dict:
    """A full open-clip checkpoint (visual.* and text keys) of the tiny architecture, as .safetensors."""
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.create_model(TINY_ARCH, pretrained=None)
    randomize(model, seed)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return sd


def comfy_clip_vision_from_open_clip(sd: dict, workdir: Path):
    """ComfyUI's ClipVisionModel with a tiny config, loaded through ComfyUI's own open-clip key conversion."""
    import comfy.clip_vision

    config = Path(workdir) / "tiny_clip_vision.json"
    config.write_text(json.dumps(TINY_COMFY_CONFIG))
    cv = comfy.clip_vision.ClipVisionModel(str(config))
    cv.model.float()        # ComfyUI picks fp16 for text/vision encoders even on CPU; compare in fp32
    converted = comfy.clip_vision.convert_to_transformers({k: v.clone() for k, v in sd.items()}, "visual.")
    missing, _ = cv.load_sd(converted)
    assert not missing, missing
    return cv


def write_comfy_clip_vision(path: Path, config_name: str, seed: int = 0, dtype=torch.float16) -> Path:
    """A real-size CLIP vision file of one of ComfyUI's own configs (comfy/<config_name>) in ComfyUI's
    (transformers) key layout, random weights: what CLIPVisionLoader detects from the layer count, width and
    position count."""
    import comfy.clip_vision
    import comfy.utils

    config = Path(comfy.clip_vision.__file__).parent / config_name
    cv = comfy.clip_vision.ClipVisionModel(str(config))
    randomize(cv.model, seed)
    sd = {k: v.to(dtype).contiguous() for k, v in cv.model.state_dict().items()}
    del cv
    comfy.utils.save_torch_file(sd, str(path))
    return Path(path)


def write_vit_h(path: Path, seed: int = 0, dtype=torch.float16) -> Path:
    """A real-size ViT-H/14 CLIP vision file in ComfyUI's (transformers) key layout, random weights."""
    return write_comfy_clip_vision(path, "clip_vision_config_h.json", seed, dtype)


def write_vit_l(path: Path, seed: int = 0, dtype=torch.float16) -> Path:
    """A real-size CLIP ViT-L/14 (224 px, 257 positions, 768 projection): the layout of openai/clip-vit-large-patch14's
    model.safetensors (its vision half), which the XLabs Flux IP-Adapters take."""
    return write_comfy_clip_vision(path, "clip_vision_config_vitl.json", seed, dtype)


def write_siglip_384(path: Path, seed: int = 0, dtype=torch.float16) -> Path:
    """A real-size SigLIP so400m-patch14-384 (27 layers of 1152, 729 positions): the layout of Comfy-Org's
    sigclip_vision_patch14_384.safetensors, which Flux Redux takes. ComfyUI's detection needs all of it."""
    return write_comfy_clip_vision(path, "clip_vision_siglip_384.json", seed, dtype)
