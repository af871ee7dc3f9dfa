"""Flux model files with random weights in the published layouts, for the e2e server: what ComfyUI's own loaders
(Load Diffusion Model, Load VAE, Load Style Model) read from the real files, at the sizes their detection insists on.

- `write_flux_dev`: a Flux dev diffusion model (flux1-dev.safetensors' keys, no prefix). ComfyUI's detection
  (comfy/model_detection.py, the `double_blocks.0.img_attn.norm.key_norm.scale` branch) reads the depths from the
  keys but hard-codes hidden 3072, 24 heads, context 4096 and axes [16, 56, 56]: so the width is real and only the
  depth is small (1 double + 1 single block, ~0.55 B parameters, ~1.1 GB in bf16).
- `write_flux_vae`: the Flux autoencoder (ae.safetensors: `encoder.*` / `decoder.*`, 16 latent channels, no
  quant_conv). ComfyUI's VAE takes its shape from `decoder.conv_in.weight` (16 channels in) and its default
  ddconfig (ch 128, ch_mult [1, 2, 4, 4]), so it is real size (~84 M parameters).
- `write_redux`: flux1-redux-dev.safetensors (Linear 1152 -> 12288, 12288 -> 4096), real size.

Weights follow `tiny_models.randomize` (1 / sqrt(fan_in), unit-scale activations): outputs stay finite in fp32,
bf16 and fp16.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .comfy_env import import_comfyui
from .tiny_models import randomize

import_comfyui()

import comfy.supported_models as sm  # noqa: E402
import comfy.utils  # noqa: E402

TOKEN_DIM = 4096        # T5-XXL width (Flux's context_in_dim)
POOLED_DIM = 768        # CLIP-L pooled width (Flux's vec_in_dim)
SIGLIP_WIDTH = 1152

# what comfy/model_detection.py builds for a Flux dev file, with the depths of the file written here
FLUX_DEV_UNET = {
    "image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2, "vec_in_dim": POOLED_DIM,
    "context_in_dim": TOKEN_DIM, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "depth": 1,
    "depth_single_blocks": 1, "axes_dim": [16, 56, 56], "theta": 10000, "qkv_bias": True, "guidance_embed": True,
}


def _save(sd: dict, path: Path, dtype) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comfy.utils.save_torch_file({k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
                                 for k, v in sd.items()}, str(path))
    return path


@torch.no_grad()
def write_flux_dev(path: Path, seed: int = 0, dtype=torch.bfloat16) -> Path:
    """A Flux dev diffusion model that Load Diffusion Model (UNETLoader) loads and detects as Flux dev (guidance
    embedding, 16 latent channels), built with ComfyUI's own classes (model_base.Flux, comfy.ldm.flux.model.Flux)
    and saved with their key names: 1 double + 1 single block at the real width."""
    config = sm.Flux(dict(FLUX_DEV_UNET))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    sd = model.diffusion_model.state_dict()
    del model
    return _save(sd, path, dtype)


@torch.no_grad()
def write_flux_vae(path: Path, seed: int = 0, dtype=torch.bfloat16) -> Path:
    """The Flux autoencoder's layout (ae.safetensors): ComfyUI's AutoencodingEngine with z_channels 16, as
    comfy.sd.VAE builds it for a file whose decoder.conv_in takes 16 channels and which has no post_quant_conv."""
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    ddconfig = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
        decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": ddconfig})
    randomize(vae, seed)
    return _save(vae.state_dict(), path, dtype)


def redux_state_dict(seed: int = 0, dtype=torch.float16) -> dict:
    """flux1-redux-dev's keys and shapes: redux_up Linear 1152 -> 12288, redux_down Linear 12288 -> 4096."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    shapes = {"redux_up": (3 * TOKEN_DIM, SIGLIP_WIDTH), "redux_down": (TOKEN_DIM, 3 * TOKEN_DIM)}
    for name, (n_out, n_in) in shapes.items():
        sd[f"{name}.weight"] = (torch.randn(n_out, n_in, generator=g) / n_in ** 0.5).to(dtype)
        sd[f"{name}.bias"] = (torch.randn(n_out, generator=g) * 0.02).to(dtype)
    return sd


def write_redux(path: Path, seed: int = 0, dtype=torch.float16) -> Path:
    """flux1-redux-dev.safetensors as Load Style Model (StyleModelLoader) reads it."""
    return _save(redux_state_dict(seed, dtype), path, dtype)


def write_text_encoder_placeholder(path: Path) -> Path:
    """A stand-in listed in models/text_encoders so the shipped workflows' DualCLIPLoader choices (clip_l /
    t5xxl_fp16) exist. It is never loaded: T5-XXL cannot be written small (ComfyUI builds its fixed 24-layer
    config whatever the file holds), so the e2e tests replace the text encoding by a test node
    (tests/e2e/server_plugins/infuse_test_flux_text.py)."""
    return _save({"placeholder": torch.zeros(1)}, path, torch.float16)
