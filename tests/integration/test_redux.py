"""Infuse Redux on ComfyUI's own pieces: a Redux file in the real layout and sizes (random weights) loaded by core's
Load Style Model loader, a 2-layer SigLIP (width 1152, 384 px, patch 14: 27x27 tokens) in ComfyUI's ClipVisionModel,
the tiny Flux sampled with ComfyUI's sampler. Parity with core Apply Style Model, the downsampling and mask
restated, the range through sampling, and the errors as the node reports them."""
import json

import pytest
import torch
import torch.nn.functional as F

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.text_embedding.redux import apply_redux, redux_tokens
from comfyui_infuse.nodes.redux_nodes import InfuseRedux
from support import tiny_flux
from support.tiny_models import randomize

TINY_SIGLIP = {"num_channels": 3, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 1152, "image_size": 384,
               "intermediate_size": 64, "model_type": "siglip_vision_model", "num_attention_heads": 2,
               "num_hidden_layers": 2, "patch_size": 14, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
DEFAULTS = dict(strength=1.0, strength_type="multiply", downsampling_factor=1, downsampling_mode="area",
                start_percent=0.0, end_percent=1.0)
C = tiny_flux.CONTEXT_DIM


@pytest.fixture(scope="module")
def redux(tmp_path_factory):
    """flux1-redux-dev's keys and shapes (Linear 1152 -> 12288, 12288 -> 4096) in fp16, through core's loader."""
    import comfy.sd

    from support import flux_files

    path = flux_files.write_redux(tmp_path_factory.mktemp("style_models") / "flux1-redux-dev.safetensors")
    return comfy.sd.load_style_model(str(path))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """A real CLIP_VISION_OUTPUT of one 512x448 image from ComfyUI's SigLIP class (center crop, as CLIP Vision
    Encode does)."""
    import comfy.clip_vision

    config = tmp_path_factory.mktemp("clip_vision") / "tiny_siglip.json"
    config.write_text(json.dumps(TINY_SIGLIP))
    cv = comfy.clip_vision.ClipVisionModel(str(config))
    cv.model.float()
    randomize(cv.model, 1)
    image = torch.rand(1, 448, 512, 3, generator=torch.Generator().manual_seed(2))
    return cv.encode_image(image, crop=True)


@pytest.fixture(scope="module")
def core_tokens(redux, encoded):
    return redux.get_cond(encoded)                      # [1, 729, 4096]


def run(conditioning, redux, encoded, **args):
    return InfuseRedux.execute(conditioning, redux, encoded, **{**DEFAULTS, **args}).args[0]


def assert_same_conditioning(ours, core):
    assert len(ours) == len(core)
    for (e1, o1), (e2, o2) in zip(ours, core):
        assert torch.equal(e1, e2) and o1.keys() == o2.keys()
        for key, value in o1.items():
            assert torch.equal(value, o2[key]) if torch.is_tensor(value) else value == o2[key], key


@pytest.mark.parametrize("strength_type", ["multiply", "attn_bias"])
def test_full_range_equals_core_apply_style_model(redux, encoded, strength_type):
    import nodes

    (txt, opts), (txt2, opts2) = tiny_flux.conditioning(1)[0], tiny_flux.conditioning(2)[0]
    bias = torch.rand(1, 9, 9, generator=torch.Generator().manual_seed(3)) > 0.3      # 8 text tokens + 1 ref
    conditioning = [[txt, opts], [txt2, {**opts2, "attention_mask": bias}]]
    ours = run(conditioning, redux, encoded, strength=0.7, strength_type=strength_type)
    core = nodes.StyleModelApply().apply_stylemodel(conditioning, redux, encoded, 0.7, strength_type)[0]
    assert ours[0][0].shape == (1, 8 + 729, C) and "attention_mask" in ours[1][1]
    assert_same_conditioning(ours, core)
    assert conditioning[1][1]["attention_mask"] is bias and "attention_mask" not in opts     # inputs untouched


def test_strength_zero_is_the_input_itself(redux, encoded):
    conditioning = tiny_flux.conditioning(1)
    for strength_type in ("multiply", "attn_bias"):
        assert run(conditioning, redux, encoded, strength=0.0, strength_type=strength_type) is conditioning
        assert apply_redux(conditioning, torch.ones(1, 5, C), 0.0, strength_type) is conditioning


def test_downsampling_averages_the_token_grid(redux, encoded, core_tokens):
    tokens = redux_tokens(redux, encoded, downsampling_factor=3, downsampling_mode="area")
    blocks = core_tokens.view(1, 9, 3, 9, 3, C).mean(dim=(2, 4))            # area 27 -> 9: mean of 3x3 tokens
    assert tokens.shape == (1, 81, C)
    assert torch.allclose(tokens, blocks.reshape(1, 81, C), atol=1e-5)
    bicubic = redux_tokens(redux, encoded, downsampling_factor=2, downsampling_mode="bicubic")
    grid = core_tokens.view(1, 27, 27, C).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(14, 14), mode="bicubic").permute(0, 2, 3, 1).reshape(1, 196, C)
    assert torch.allclose(bicubic, expected, atol=1e-5)


def test_a_mask_keeps_the_tokens_it_covers(redux, encoded, core_tokens):
    mask = torch.zeros(1, 378, 378)                     # 27 x 14 px: the left 13 token columns white
    mask[:, :, :13 * 14] = 1.0
    tokens = redux_tokens(redux, encoded, mask=mask)
    assert torch.equal(tokens, core_tokens.view(1, 27, 27, C)[:, :, :13].reshape(1, 27 * 13, C))


def test_the_range_acts_only_on_its_steps(core_tokens):
    model = tiny_flux.build_model(seed=5)
    pos, neg = tiny_flux.conditioning(1), tiny_flux.conditioning(2)
    sample = lambda start, end: tiny_flux.sample(model, apply_redux(pos, core_tokens, 1.0, "multiply", start, end),
                                                 neg, steps=3)
    (embeds, options), = apply_redux(pos, core_tokens, 1.0, "multiply", 0.5, 0.5)    # an empty range: no edit
    assert embeds is pos[0][0] and options is pos[0][1]
    plain = tiny_flux.sample(model, pos, neg, steps=3)
    assert torch.equal(sample(0.9, 1.0), plain)         # steps of 3 sit at 0, 1/3, 2/3 of the schedule
    full, early = sample(0.0, 1.0), sample(0.0, 0.5)
    assert not torch.allclose(full, plain, atol=1e-4) and not torch.allclose(early, plain, atol=1e-4)
    assert not torch.allclose(early, full, atol=1e-4)


def clip_output(hidden):
    import comfy.clip_vision

    out = comfy.clip_vision.Output()
    out["last_hidden_state"] = hidden
    return out


def t2i_style_model():
    import comfy.sd
    from comfy.t2i_adapter.adapter import StyleAdapter

    return comfy.sd.StyleModel(StyleAdapter(width=64, context_dim=32, num_head=2, n_layes=1, num_token=2))


ERRORS = {
    "clip_vision_output": (lambda r, e: dict(clip_vision_output=clip_output(torch.zeros(1, 257, 1024))),
                           "sigclip_vision_patch14_384.safetensors"),
    "non_square": (lambda r, e: dict(clip_vision_output=clip_output(torch.zeros(1, 728, 1152))), "not a square"),
    "style_model": (lambda r, e: dict(style_model=t2i_style_model()), "T2I-Adapter style model"),
    "mask": (lambda r, e: dict(mask=torch.zeros(1, 64, 64)), "selects none"),
    "mask_batch": (lambda r, e: dict(mask=torch.ones(2, 64, 64)), "2 masks for 1 reference images"),
    "start_percent": (lambda r, e: dict(start_percent=0.8, end_percent=0.2), "is not a range"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_input_is_named(redux, encoded, case):
    change, says = ERRORS[case]
    args = {"conditioning": tiny_flux.conditioning(1), "style_model": redux, "clip_vision_output": encoded,
            **DEFAULTS, **change(redux, encoded)}
    name = {"non_square": "clip_vision_output", "mask_batch": "mask"}.get(case, case)
    with pytest.raises(InfuseError) as e:
        InfuseRedux.execute(**args)
    assert str(e.value).startswith(f"Infuse Redux, input '{name}': ") and says in str(e.value)
