import math

import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.patching.gate import (ApplyTo, SigmaRange, check_mask_aspect, mask_to_tokens,
                                                     normalize_mask, token_grid)


@pytest.mark.parametrize("latent, level_tokens", [
    ((64, 64), [64 * 64, 32 * 32, 16 * 16, 8 * 8]),
    ((96, 64), [96 * 64, 48 * 32, 24 * 16, 12 * 8]),
    ((15, 9), [15 * 9, 8 * 5, 4 * 3, 2 * 2]),   # odd sides: each UNet downsample rounds up
])
def test_token_grid_follows_unet_downsampling(latent, level_tokens):
    h, w = latent
    for n in level_tokens:
        gh, gw = token_grid(n, latent)
        assert (gh, gw) == (h, w)
        h, w = (h + 1) // 2, (w + 1) // 2


def test_token_grid_rejects_counts_of_no_level():
    with pytest.raises(ValueError):
        token_grid(77, (64, 64))


def test_mask_to_tokens_keeps_layout_row_major():
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1.0            # right half
    tokens = mask_to_tokens(mask, 16 * 16, (64, 64))
    assert tokens.shape == (1, 256, 1)
    grid = tokens.reshape(16, 16)
    assert torch.all(grid[:, :8] == 0) and torch.all(grid[:, 8:] == 1)


def test_normalize_mask_accepts_2d_and_rejects_empty():
    assert normalize_mask(torch.ones(8, 8)).shape == (1, 8, 8)
    with pytest.raises(InfuseError, match="^input 'attn_mask'"):
        normalize_mask(torch.ones(0, 8, 8))


def test_mask_aspect_check_names_input_and_fix():
    check_mask_aspect(torch.ones(1, 512, 768), (64, 96))       # same aspect
    check_mask_aspect(torch.ones(1, 60, 100), (7, 12))         # 100x60 image: latent rounds down
    with pytest.raises(InfuseError) as e:
        check_mask_aspect(torch.ones(1, 512, 512), (64, 96))
    msg = str(e.value)
    assert msg.startswith("input 'attn_mask'") and "768x512" in msg and "Fix:" in msg


def test_sigma_range_binds_with_model_sampling_percent_to_sigma():
    class LinearSampling:   # stands in for a model_sampling object: sigma = 10 * (1 - percent)
        def percent_to_sigma(self, p):
            return 10.0 * (1.0 - p)

    r = SigmaRange(0.2, 0.6)
    r.bind(LinearSampling())
    assert not r.is_full
    assert r.contains(8.0) and r.contains(4.0) and r.contains(6.0)
    assert not r.contains(8.5) and not r.contains(3.9)
    assert SigmaRange().is_full and SigmaRange().contains(math.inf)
    with pytest.raises(ValueError):
        SigmaRange(0.7, 0.2)


def test_apply_to_uses_comfy_cond_uncond_marks():
    assert ApplyTo.COND.accepts(0) and not ApplyTo.COND.accepts(1)
    assert ApplyTo.UNCOND.accepts(1) and not ApplyTo.UNCOND.accepts(0)
    assert ApplyTo("both").accepts(0) and ApplyTo.BOTH.accepts(1)


@pytest.mark.parametrize("latent_hw", [(64, 64), (96, 64)])
@pytest.mark.parametrize("level", [0, 1, 2])
def test_reference_masks_are_diffusers_ip_adapter_masks(latent_hw, level):
    """Binarised at 0.5 at the image's size, then bicubic to the token grid, as diffusers' IPAdapterMaskProcessor
    (preprocess + downsample) does; a coarse random mask puts edges between token centres."""
    from diffusers.image_processor import IPAdapterMaskProcessor

    h, w = latent_hw
    coarse = torch.rand(1, 1, h // 16 + 1, w // 16 + 1, generator=torch.Generator().manual_seed(level))
    mask = torch.nn.functional.interpolate(coarse, size=(h * 2, w * 2), mode="bilinear")[:, 0]
    n_tokens = (h >> level) * (w >> level)
    processed = IPAdapterMaskProcessor().preprocess(mask[:, None], height=h * 8, width=w * 8)
    expected = IPAdapterMaskProcessor.downsample(processed[:, 0], 1, n_tokens, 1)
    ours = mask_to_tokens(mask, n_tokens, latent_hw)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    soft = mask_to_tokens(mask, n_tokens, latent_hw, "soft")
    assert (soft - expected).abs().max() > 0.05        # the old bilinear resize: another image at mask edges
