"""diffusers as a test-only reference for Flux: a FluxTransformer2DModel with the same weights as a ComfyUI Flux
(mapped by ComfyUI's own diffusers key table, comfy.utils.flux_to_diffusers), and the two called on the same
inputs (ComfyUI's latent layout in and out)."""
from __future__ import annotations

import torch

import comfy.patcher_extension
import comfy.utils

from . import tiny_flux


def diffusers_flux(comfy_model) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    cfg = tiny_flux.TINY_FLUX_UNET
    heads = cfg["num_heads"]
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=cfg["in_channels"] * 4, num_layers=cfg["depth"],
        num_single_layers=cfg["depth_single_blocks"], attention_head_dim=cfg["hidden_size"] // heads,
        num_attention_heads=heads, joint_attention_dim=cfg["context_in_dim"], pooled_projection_dim=cfg["vec_in_dim"],
        guidance_embeds=cfg["guidance_embed"], axes_dims_rope=tuple(cfg["axes_dim"]))
    comfy_sd = comfy_model.model.diffusion_model.state_dict()
    sd, key_map = {}, comfy.utils.flux_to_diffusers(cfg)
    for key in model.state_dict():
        target = key_map[key]
        if isinstance(target, str):
            sd[key] = comfy_sd[target]
        elif target[1] is None:                   # (name, None, convert): e.g. norm_out's swapped scale / shift
            sd[key] = target[2](comfy_sd[target[0]])
        else:
            dim, start, size = target[1]
            sd[key] = comfy_sd[target[0]].narrow(dim, start, size)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def inputs(seed: int = 0, batch: int = 1, hw=(8, 8), tokens: int = 8):
    g = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(batch, tiny_flux.LATENT_CHANNELS, *hw, generator=g),
                context=torch.randn(batch, tokens, tiny_flux.CONTEXT_DIM, generator=g),
                y=torch.randn(batch, tiny_flux.VEC_DIM, generator=g),
                t=torch.full((batch,), 0.7), guidance=torch.full((batch,), 3.5))


def comfy_forward(model, x, context, y, t, guidance, cond_or_uncond=(0,)) -> torch.Tensor:
    """ComfyUI's Flux forward through the model's DIFFUSION_MODEL wrappers and patches, as apply_model runs it."""
    options = dict(model.model_options["transformer_options"], cond_or_uncond=list(cond_or_uncond), sigmas=t,
                   wrappers=model.wrappers)                    # as comfy.sampler_helpers.prepare_model_patcher
    dm = model.model.diffusion_model
    wrappers = comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, options)
    with torch.no_grad():
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(dm.forward, dm, wrappers).execute(
            x, t, context, y, guidance, None, None, options)


def diffusers_forward(model, x, context, y, t, guidance, **joint_attention_kwargs) -> torch.Tensor:
    """The same call on diffusers' transformer; its packed output unpacked to ComfyUI's latent layout."""
    b, c, h, w = x.shape
    packed = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)
    img_ids = torch.zeros(h // 2, w // 2, 3)
    img_ids[..., 1] = torch.arange(h // 2)[:, None]
    img_ids[..., 2] = torch.arange(w // 2)[None, :]
    with torch.no_grad():
        out = model(hidden_states=packed, encoder_hidden_states=context, pooled_projections=y, timestep=t,
                    img_ids=img_ids.reshape(-1, 3), txt_ids=torch.zeros(context.shape[1], 3), guidance=guidance,
                    joint_attention_kwargs=joint_attention_kwargs or None, return_dict=False)[0]
    return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
