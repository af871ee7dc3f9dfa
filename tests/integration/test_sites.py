"""Site discovery against the published IP-Adapter numbering: diffusers' processor order (down, up, mid),
attn1 at even and attn2 at odd indices, mapped to ComfyUI's keys by ComfyUI's own diffusers key table."""
import re

import comfy.utils
import pytest

from comfyui_infuse.core.errors import InfuseError, reported_as
from comfyui_infuse.mechanisms.patching.surfaces.unet import discover_sites, model_family, model_sites

# Published numbering of the real files: width of `N.to_k_ip.weight` (out features) for each cross-attention
# index N of ip-adapter_sd15 / ip-adapter_sdxl; the last entries are the middle block.
SD15_WIDTHS = [320] * 2 + [640] * 2 + [1280] * 2 + [1280] * 3 + [640] * 3 + [320] * 3 + [1280]
SDXL_WIDTHS = [640] * 4 + [1280] * 20 + [1280] * 30 + [640] * 6 + [1280] * 10


def meta_model(tiny, name):
    """A real-size model on the meta device: the true structure, no memory."""
    return tiny.model_config(name).get_model({}, device="meta").diffusion_model


@pytest.mark.parametrize("name, widths, middle_depth", [("sd15", SD15_WIDTHS, 1), ("sdxl", SDXL_WIDTHS, 10)])
def test_real_size_order_matches_published_numbering(tiny, name, widths, middle_depth):
    sites = discover_sites(meta_model(tiny, name))
    assert [s.inner_dim for s in sites] == widths
    assert 2 * len(sites) - 1 == {"sd15": 31, "sdxl": 139}[name]          # last cross-attention index
    assert [s.key for s in sites[-middle_depth:]] == [("middle", 0, d) for d in range(middle_depth)]
    assert sites[0].key == {"sd15": ("input", 1, 0), "sdxl": ("input", 4, 0)}[name]
    assert sites[len(sites) - middle_depth].key == ("middle", 0, 0)       # ComfyUI's key, never ("middle", 1)


def _diffusers_unet(name):
    from diffusers import UNet2DConditionModel

    if name == "tiny_sd15":
        cfg = dict(down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                   up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                   block_out_channels=(32, 64, 128, 128), cross_attention_dim=64, attention_head_dim=8)
    else:
        cfg = dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                   block_out_channels=(32, 64, 128), transformer_layers_per_block=(1, 2, 10),
                   cross_attention_dim=160, attention_head_dim=(1, 8, 16), use_linear_projection=True)
    return UNet2DConditionModel(sample_size=8, layers_per_block=2, **cfg)


@pytest.mark.parametrize("name", ["tiny_sd15", "tiny_sdxl"])
def test_order_equals_diffusers_processor_order(tiny, name):
    """IP-Adapter files index `unet.attn_processors`; map each processor to ComfyUI and compare."""
    unet = _diffusers_unet(name)
    _, unet_config = tiny.MODELS[name]
    to_comfy = comfy.utils.unet_to_diffusers(dict(unet_config))
    expected = []
    for proc in unet.attn_processors:                      # insertion order = file numbering
        module = proc.removesuffix(".processor")
        comfy_key = to_comfy[module + ".to_k.weight"]
        m = re.match(r"(input|middle|output)_blocks?\.(\d+\.)?\d+\.transformer_blocks\.(\d+)\.(attn[12])", comfy_key)
        block, number, depth, kind = m.groups()
        number = int(number[:-1]) if number else 0        # middle_block.1.transformer_blocks...
        expected.append(((block, number, int(depth)), kind))
    ours = [(s.key, kind) for s in discover_sites(tiny.build_model(name).model.diffusion_model)
            for kind in ("attn1", "attn2")]
    assert ours == expected


def test_sites_carry_heads_and_context_width(tiny):
    sites = discover_sites(tiny.build_model("tiny_sdxl").model.diffusion_model)
    assert {s.context_dim for s in sites} == {tiny.TINY_SDXL_CONTEXT}
    assert all(s.heads * 8 == s.inner_dim for s in sites)             # num_head_channels 8


def test_family_of_supported_models(tiny):
    assert model_family(tiny.build_model("tiny_sd15")) == "sd15"
    assert model_family(tiny.build_model("tiny_sdxl")) == "sdxl"


def test_unsupported_family_is_rejected_naming_node_and_model_type(tiny):
    with pytest.raises(InfuseError) as e, reported_as("Infuse Test Node"):
        model_sites(tiny.build_model("tiny_sd21"))
    msg = str(e.value)
    assert msg.startswith("Infuse Test Node, input 'model': the model is a SD20 model")
    assert "SD1.5 or SDXL" in msg
