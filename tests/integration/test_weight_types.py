"""Weight types target the blocks InstantStyle names (diffusers names, mapped by ComfyUI's own key table)."""
import comfy.utils
import pytest

from comfyui_infuse.core.errors import InfuseError, reported_as
from comfyui_infuse.mechanisms.decoupled_attention.block_weights import WEIGHT_TYPES, block_weights, parse_block_weights
from comfyui_infuse.mechanisms.patching.surfaces.unet import discover_sites

INSTANTSTYLE = {  # diffusers attention modules
    "sdxl": {"style": {"up_blocks.0.attentions.1"}, "composition": {"down_blocks.2.attentions.1"}},
    "sd15": {"style": {"up_blocks.1.attentions.0", "up_blocks.1.attentions.1", "up_blocks.1.attentions.2"},
             "composition": {"down_blocks.2.attentions.0", "down_blocks.2.attentions.1", "mid_block.attentions.0"}},
}


def diffusers_block_names(tiny, name):
    """ComfyUI (block, number) -> diffusers attention module name."""
    to_comfy = comfy.utils.unet_to_diffusers(dict(tiny.MODELS[name][1]))
    out = {}
    for d_key, c_key in to_comfy.items():
        if ".attentions." in d_key and d_key.endswith(".transformer_blocks.0.attn2.to_k.weight"):
            module = d_key.split(".transformer_blocks.")[0]
            parts = c_key.split(".")
            block = ("middle", 0) if parts[0] == "middle_block" else (parts[0].split("_")[0], int(parts[1]))
            out[block] = module
    return out


@pytest.mark.parametrize("name", ["tiny_sd15", "tiny_sdxl"])
@pytest.mark.parametrize("weight_type, target", [("style transfer", "style"), ("composition", "composition")])
def test_style_and_composition_hit_instantstyle_blocks(tiny, name, weight_type, target):
    family = name.removeprefix("tiny_")
    sites = discover_sites(tiny.build_model(name).model.diffusion_model)
    weights = block_weights(sites, family, weight_type, 0.9, composition_weight=0.7)
    names = diffusers_block_names(tiny, name)
    active = {names[(k[0], k[1])] for k, w in weights.items() if w != 0}
    assert active == INSTANTSTYLE[family][target]
    assert set(weights.values()) == {0.0, 0.9 if target == "style" else 0.7}


def test_every_weight_type_is_defined_and_ramps_stay_in_range(tiny):
    sites = discover_sites(tiny.build_model("tiny_sdxl").model.diffusion_model)
    for wt in WEIGHT_TYPES:
        w = block_weights(sites, "sdxl", wt, 1.0)
        assert set(w) == {s.key for s in sites} and all(0.0 <= v <= 1.0 for v in w.values())
    ramp = block_weights(sites, "sdxl", "ease out", 1.0)
    assert ramp[("input", 4, 0)] < ramp[("middle", 0, 0)] < ramp[("output", 5, 1)]


def test_block_weight_rules_and_their_errors(tiny):
    sites = discover_sites(tiny.build_model("tiny_sd15").model.diffusion_model)
    f = parse_block_weights("output=0.5, output:3=2, output:3:0=3", sites)
    assert f[("output", 3, 0)] == 3 and f[("output", 4, 0)] == 0.5 and f[("input", 1, 0)] == 1.0
    with pytest.raises(InfuseError, match="N, input 'block_weights': cannot read the rule 'middle:x=1'"), reported_as("N"):
        parse_block_weights("middle:x=1", sites)
    with pytest.raises(InfuseError, match="the rule 'input:3=1' matches no attention site"):
        parse_block_weights("input:3=1", sites)
