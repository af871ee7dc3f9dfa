"""Small SD1.5- and SDXL-structured models with random weights, in ComfyUI's real classes and key layouts.

The block structure (levels, resblocks, transformer depths, middle block, cross-attention placement) is
exactly SD1.5's / SDXL's; only the widths are small. Each tiny config is a subclass of ComfyUI's own
`comfy.supported_models.SD15` / `SDXL`, so `isinstance` checks, latent formats and sampling settings are
the real ones. `register()` adds them to ComfyUI's model detection, so a checkpoint written by
`write_checkpoint` loads through the real `CheckpointLoaderSimple` like a user's file.

Real-size configs (`SD15`, `SDXL`) are here too, for benchmarks.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from .comfy_env import import_comfyui

import_comfyui()

import comfy.model_management as mm  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.sd1_clip  # noqa: E402
import comfy.sdxl_clip  # noqa: E402
import comfy.supported_models as sm  # noqa: E402
import comfy.supported_models_base  # noqa: E402
import comfy.utils  # noqa: E402

# --- UNet configs (ComfyUI's own SD15/SDXL/SD21 configs from model_detection, widths changed) ---------
SD15_UNET = {
    'use_checkpoint': False, 'image_size': 32, 'out_channels': 4, 'use_spatial_transformer': True, 'legacy': False,
    'adm_in_channels': None, 'in_channels': 4, 'model_channels': 320, 'num_res_blocks': [2, 2, 2, 2],
    'transformer_depth': [1, 1, 1, 1, 1, 1, 0, 0], 'channel_mult': [1, 2, 4, 4], 'transformer_depth_middle': 1,
    'use_linear_in_transformer': False, 'context_dim': 768, 'num_heads': 8,
    'transformer_depth_output': [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    'use_temporal_attention': False, 'use_temporal_resblock': False,
}
SDXL_UNET = {
    'use_checkpoint': False, 'image_size': 32, 'out_channels': 4, 'use_spatial_transformer': True, 'legacy': False,
    'num_classes': 'sequential', 'adm_in_channels': 2816, 'in_channels': 4, 'model_channels': 320,
    'num_res_blocks': [2, 2, 2], 'transformer_depth': [0, 0, 2, 2, 10, 10], 'channel_mult': [1, 2, 4],
    'transformer_depth_middle': 10, 'use_linear_in_transformer': True, 'context_dim': 2048, 'num_head_channels': 64,
    'transformer_depth_output': [0, 0, 0, 2, 2, 2, 10, 10, 10],
    'use_temporal_attention': False, 'use_temporal_resblock': False,
}
SD21_UNET = {**{k: v for k, v in SD15_UNET.items() if k != "num_heads"},     # SD1.5's layout, SD2.x's attention
             'use_linear_in_transformer': True, 'context_dim': 1024, 'num_head_channels': 64}

TINY_CHANNELS = 32
TINY_CLIP_L = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3,
               "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
               "layer_norm_eps": 1e-5, "projection_dim": 64, "bos_token_id": 0, "eos_token_id": 49407,
               "pad_token_id": 1}
TINY_CLIP_G = dict(TINY_CLIP_L, hidden_size=96, intermediate_size=192, num_attention_heads=2, projection_dim=96,
                   hidden_act="gelu")
TINY_SDXL_CONTEXT = TINY_CLIP_L["hidden_size"] + TINY_CLIP_G["hidden_size"]
TINY_SDXL_ADM = TINY_CLIP_G["projection_dim"] + 6 * 256   # pooled text + 6 size/crop embeddings, as SDXL


# --- tiny text encoders ----------------------------------------------------------------------------------
class TinySD1ClipModel(comfy.sd1_clip.SD1ClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        clip = functools.partial(comfy.sd1_clip.SDClipModel, textmodel_json_config=TINY_CLIP_L,
                                 return_projected_pooled=False)
        super().__init__(device=device, dtype=dtype, model_options=model_options, clip_model=clip, **kwargs)


class TinySDXLClipModel(comfy.sdxl_clip.SDXLClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        torch.nn.Module.__init__(self)
        self.clip_l = comfy.sd1_clip.SDClipModel(layer="hidden", layer_idx=-2, device=device, dtype=dtype,
                                                 layer_norm_hidden_state=False, model_options=model_options,
                                                 textmodel_json_config=TINY_CLIP_L)
        self.clip_g = comfy.sd1_clip.SDClipModel(
            layer="hidden", layer_idx=-2, device=device, dtype=dtype, textmodel_json_config=TINY_CLIP_G,
            special_tokens={"start": 49406, "end": 49407, "pad": 0}, layer_norm_hidden_state=False,
            return_projected_pooled=True, model_options={**model_options, "model_name": "clip_g"})
        self.dtypes = {dtype}


# --- tiny model configs: subclasses of ComfyUI's own, so family checks see SD15 / SDXL ---------------
class TinySD15(sm.SD15):
    unet_config = {"context_dim": TINY_CLIP_L["hidden_size"], "model_channels": TINY_CHANNELS,
                   "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, TinySD1ClipModel)


class TinySDXL(sm.SDXL):
    unet_config = {"model_channels": TINY_CHANNELS, "use_linear_in_transformer": True,
                   "transformer_depth": [0, 0, 2, 2, 10, 10], "context_dim": TINY_SDXL_CONTEXT,
                   "adm_in_channels": TINY_SDXL_ADM, "use_temporal_attention": False}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 8}

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClipModel)


class TinySSD1B(sm.SSD1B):
    """A distilled SDXL (Segmind's SSD-1B layout: fewer transformer blocks), ComfyUI's own SSD1B config."""
    unet_config = dict(TinySDXL.unet_config, transformer_depth=[0, 0, 2, 2, 4, 4])
    unet_extra_config = TinySDXL.unet_extra_config

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClipModel)


class TinySD21(sm.SD20):
    """A UNet family Infuse does not support (SD2.x), for the rejection tests."""
    unet_config = {"context_dim": 96, "model_channels": TINY_CHANNELS, "use_linear_in_transformer": True,
                   "adm_in_channels": None, "use_temporal_attention": False}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 8, "attn_precision": torch.float32}


def _tiny(config: dict, cls) -> dict:
    out = dict(config, model_channels=TINY_CHANNELS, context_dim=cls.unet_config["context_dim"])
    if cls.unet_config.get("adm_in_channels"):
        out["adm_in_channels"] = cls.unet_config["adm_in_channels"]
    return out


MODELS = {
    "tiny_sd15": (TinySD15, _tiny(SD15_UNET, TinySD15)),
    "tiny_sdxl": (TinySDXL, _tiny(SDXL_UNET, TinySDXL)),
    "tiny_sd21": (TinySD21, _tiny(SD21_UNET, TinySD21)),
    "tiny_ssd1b": (TinySSD1B, _tiny(dict(SDXL_UNET, transformer_depth=[0, 0, 2, 2, 4, 4], transformer_depth_middle=0,
                                         transformer_depth_output=[0, 0, 0, 0, 1, 2, 1, 1, 4]), TinySSD1B)),
    "sd15": (sm.SD15, SD15_UNET),
    "sdxl": (sm.SDXL, SDXL_UNET),
}
TINY_CLASSES = (TinySD15, TinySDXL, TinySD21)


def register() -> None:
    """Let ComfyUI's checkpoint detection recognise the tiny configs (idempotent)."""
    for cls in TINY_CLASSES:
        if not any(m.__name__ == cls.__name__ for m in sm.models):
            sm.models.insert(0, cls)


# --- weights ---------------------------------------------------------------------------------------------
@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int) -> None:
    """Deterministic random weights with unit-scale activations (ComfyUI's ops leave weights uninitialised)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
        elif name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        else:  # norm scales, learned scalars
            p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.02)


def model_config(name: str):
    cls, unet = MODELS[name]
    return cls(dict(unet))


def build_model(name: str, seed: int = 0, dtype=torch.float32) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around a random-weight model of one of MODELS, on ComfyUI's devices."""
    return patcher_for(model_config(name), seed, dtype)


def patcher_for(config, seed: int = 0, dtype=torch.float32) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around a random-weight model of a ComfyUI model config (a supported_models class instance)."""
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def _vae_state_dict(seed: int) -> dict:
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {'double_z': True, 'z_channels': 4, 'resolution': 256, 'in_channels': 3, 'out_ch': 3, 'ch': 128,
                'ch_mult': [1, 2, 4, 4], 'num_res_blocks': 2, 'attn_resolutions': [], 'dropout': 0.0}
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    randomize(vae, seed)
    return vae.state_dict()


def write_checkpoint(path: Path, name: str = "tiny_sd15", seed: int = 0, dtype=torch.float16) -> Path:
    """A single-file checkpoint in the original SD key layout (model.diffusion_model., cond_stage_model.,
    first_stage_model.), loadable by ComfyUI's CheckpointLoaderSimple once `register()` ran."""
    register()
    config = model_config(name)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    text_encoder = config.clip_target().clip(device="cpu", dtype=torch.float32)
    randomize(text_encoder, seed + 1)
    clip_sd = {k: v for k, v in text_encoder.state_dict().items()}
    sd = model.state_dict_for_saving(clip_sd, _vae_state_dict(seed + 2))
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comfy.utils.save_torch_file(sd, str(path))
    return path


# --- conditioning and sampling ---------------------------------------------------------------------------
def text_conditioning(name: str, seed: int, batch: int = 1, tokens: int = 77) -> list:
    """Random conditioning in ComfyUI's CONDITIONING format for a model of MODELS."""
    g = torch.Generator().manual_seed(seed)
    _, unet = MODELS[name]
    cond = torch.randn(batch, tokens, unet["context_dim"], generator=g)
    extra = {}
    if unet.get("adm_in_channels"):
        pooled_dim = unet["adm_in_channels"] - 6 * 256
        extra = {"pooled_output": torch.randn(batch, pooled_dim, generator=g), "width": 512, "height": 512,
                 "crop_w": 0, "crop_h": 0, "target_width": 512, "target_height": 512}
    return [[cond, extra]]


def sample(model, positive, negative, latent_hw=(8, 8), seed: int = 0, steps: int = 3, cfg: float = 5.0,
           sampler: str = "euler", scheduler: str = "normal", batch: int = 1) -> torch.Tensor:
    """Sample through ComfyUI's own sampling entry point (the one KSampler uses)."""
    import comfy.sample

    latent = torch.zeros(batch, 4, *latent_hw)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               disable_pbar=True, seed=seed)


def write_controlnet(path: Path, name: str = "tiny_sdxl", seed: int = 0, dtype=torch.float16) -> Path:
    """A ControlNet in the original single-file layout (`control_model.` keys), shaped like `name`'s UNet, e.g.
    a tiny SDXL IdentityNet. ComfyUI's loader detects its config from the keys, whatever the width."""
    import comfy.cldm.cldm

    _, unet = MODELS[name]
    config = {k: v for k, v in model_config(name).unet_config.items() if k not in ("out_channels",)}
    control = comfy.cldm.cldm.ControlNet(hint_channels=3, device="cpu", **config)
    randomize(control, seed)
    sd = {f"control_model.{k}": v.to(dtype).contiguous() for k, v in control.state_dict().items()}
    comfy.utils.save_torch_file(sd, str(path))
    return Path(path)
