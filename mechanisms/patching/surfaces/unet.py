"""Attention sites of a UNet, discovered from the model itself.

A site is one transformer block, addressed the way ComfyUI addresses it in `extra_options`:
`(block, block_number, depth_index)`, e.g. ("input", 4, 0), ("middle", 0, 7), ("output", 3, 1).
Sites are listed in diffusers' attention-processor order (down blocks, then up blocks, then the middle
block), which is how IP-Adapter-style files number their layers: processor 2n is the self-attention
(attn1) and 2n+1 the cross-attention (attn2) of the n-th site in this order.
"""
from __future__ import annotations

from dataclasses import dataclass

from ....core.errors import InfuseError

SiteKey = tuple[str, int, int]

# diffusers registers down_blocks, then up_blocks, then mid_block: processor order follows that.
_PROCESSOR_ORDER = ("input", "output", "middle")

SUPPORTED_FAMILIES = ("sd15", "sdxl")
_FAMILY_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}


@dataclass(frozen=True)
class Site:
    block: str          # "input" | "middle" | "output"
    number: int         # index of the block in ComfyUI's input_blocks / output_blocks (0 for middle)
    depth: int          # index of the transformer block inside its SpatialTransformer
    inner_dim: int      # width of q/k/v after projection (heads * dim_head)
    heads: int
    context_dim: int    # width of the cross-attention context (text tokens) at this site
    path: str           # module path in the diffusion model, e.g. "input_blocks.1.1.transformer_blocks.0"

    @property
    def key(self) -> SiteKey:
        return (self.block, self.number, self.depth)

    def __str__(self) -> str:
        return f"{self.block}:{self.number}:{self.depth}"


def _transformer_sites(block_name: str, number: int, module, prefix: str) -> list[Site]:
    from comfy.ldm.modules.attention import SpatialTransformer

    sites = []
    for position, layer in enumerate(module):
        if not isinstance(layer, SpatialTransformer):
            continue
        for depth, tb in enumerate(layer.transformer_blocks):
            sites.append(Site(block_name, number, depth, tb.attn2.to_q.out_features, tb.n_heads,
                              tb.attn2.to_k.in_features, f"{prefix}.{position}.transformer_blocks.{depth}"))
    return sites


def discover_sites(diffusion_model) -> list[Site]:
    """Every transformer block of an openaimodel UNet, in attention-processor order."""
    found: dict[str, list[Site]] = {"input": [], "middle": [], "output": []}
    for i, module in enumerate(diffusion_model.input_blocks):
        found["input"] += _transformer_sites("input", i, module, f"input_blocks.{i}")
    if getattr(diffusion_model, "middle_block", None) is not None:
        found["middle"] += _transformer_sites("middle", 0, diffusion_model.middle_block, "middle_block")
    for i, module in enumerate(diffusion_model.output_blocks):
        found["output"] += _transformer_sites("output", i, module, f"output_blocks.{i}")
    return [s for block in _PROCESSOR_ORDER for s in found[block]]


def comfy_model_type(model) -> str:
    """The ComfyUI model class a patcher holds (`SD15`, `SDXL`, `Flux`, ...), for messages."""
    import comfy.supported_models as sm

    config = getattr(getattr(model, "model", None), "model_config", None)
    if config is None:
        return type(getattr(model, "model", model)).__name__
    for cls in type(config).__mro__:
        if getattr(sm, cls.__name__, None) is cls:
            return cls.__name__
    return type(config).__name__


def model_family(model) -> str:
    """'sd15' or 'sdxl' for a ComfyUI ModelPatcher; anything else is an error naming the node."""
    import comfy.supported_models as sm
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    config = getattr(getattr(model, "model", None), "model_config", None)
    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    family = None
    if isinstance(diffusion_model, UNetModel):
        if isinstance(config, sm.SD15):
            family = "sd15"
        elif isinstance(config, sm.SDXL):
            family = "sdxl"
    if family is None:
        raise InfuseError(
            f"the model is a {comfy_model_type(model)} model; Infuse patches SD1.5 and SDXL UNets only.",
            "connect an SD1.5 or SDXL checkpoint (Load Checkpoint) to this node.",
            input_name="model",
        )
    return family


def family_name(family: str) -> str:
    return _FAMILY_NAMES.get(family, family)


def model_sites(model) -> list[Site]:
    """The attention sites of a supported ModelPatcher (raises for unsupported families)."""
    return list(unet_target(model).sites)


@dataclass(frozen=True)
class UNetTarget:
    """What an apply needs to know about a supported UNet, read once and passed down."""
    family: str                 # "sd15" | "sdxl"
    sites: tuple[Site, ...]     # in attention-processor order
    model_type: str             # the ComfyUI model class, for messages (SDXL, SSD1B, ...)


def unet_target(model) -> UNetTarget:
    """The family (checked: SD1.5 / SDXL UNets only), sites and model type of a ModelPatcher."""
    family = model_family(model)
    return UNetTarget(family, tuple(discover_sites(model.model.diffusion_model)), comfy_model_type(model))
