"""Residual injection (ControlNet, T2I-Adapter, IdentityNet) on top of ComfyUI's own ControlNet, under the Gate of
the conditioning surface.

`masked_controlnet` limits a ControlNet's residuals to a region: each residual is multiplied by the mask
resized to its feature map, before ComfyUI merges it with earlier ControlNets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..patching.surfaces.conditioning import ConditioningGate, gated


def _mask_like(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    m = F.interpolate(mask[:, None].to(x.device, x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return m[torch.arange(x.shape[0], device=x.device) % m.shape[0]]


def masked_controlnet(control_net, mask: torch.Tensor):
    """A copy of a ComfyUI ControlNet whose residuals are scaled by `mask` ([B, H, W], 0..1)."""
    import comfy.controlnet

    class MaskedControlNet(type(control_net)):
        region = mask

        def copy(self):
            c = MaskedControlNet(None, global_average_pooling=self.global_average_pooling,
                                 load_device=self.load_device, manual_cast_dtype=self.manual_cast_dtype)
            c.control_model = self.control_model
            c.control_model_wrapped = self.control_model_wrapped
            self.copy_to(c)
            return c

        def control_merge(self, control, control_prev, output_dtype):
            masked = {k: [None if x is None else x * _mask_like(self.region, x) for x in v] for k, v in control.items()}
            return super().control_merge(masked, control_prev, output_dtype)

    if not isinstance(control_net, comfy.controlnet.ControlNet):
        raise TypeError("only ControlNets (not T2I-Adapters or Control-LoRAs) can be masked")
    return MaskedControlNet.copy(control_net)


def controlnet_conditioning(positive: list, negative: list, control_net, hint: torch.Tensor, gate: ConditioningGate,
                            contexts: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[list, list]:
    """A ControlNet on the conditioning under the Gate, the way core's Apply ControlNet chains it: strength and
    sigma range on the ControlNet, its residuals masked by the gate's mask, only on the branches the gate selects.
    `contexts`: what the ControlNet's cross-attention reads instead of the text, per branch (IdentityNet's face
    tokens)."""
    if gate.mask is not None:
        control_net = masked_controlnet(control_net, gate.mask)
    hint = hint.movedim(-1, 1)
    made: dict = {}

    def attach(embeds, options, branch):
        previous = options.get("control", None)
        if previous not in made:
            c_net = control_net.copy().set_cond_hint(hint, gate.strength, (gate.start_percent, gate.end_percent))
            c_net.set_previous_controlnet(previous)
            made[previous] = c_net
        options["control"] = made[previous]
        options["control_apply_to_uncond"] = False
        if contexts is not None:
            options["cross_attn_controlnet"] = contexts[branch].to(embeds.dtype)
        return embeds, options

    return gated(positive, negative, gate, attach, ranged=False)
