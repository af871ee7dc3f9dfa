"""Modules run beside the model (an encoder, adapter layers), under ComfyUI's model management: loaded
to the GPU with the model (or for an encode), offloaded and counted like any model."""
from __future__ import annotations


def managed(module):
    """A ComfyUI ModelPatcher over `module`; keep one per module, so ComfyUI tracks one place for it."""
    import comfy.model_management as mm
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(module, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())
