"""The conditioning surface's Gate through ComfyUI's sampling on a tiny SD1.5: what `gated` writes samples exactly
like the same edit built with core's own nodes (Conditioning Set Timestep Range / Set Mask / Combine)."""
import pytest
import torch
from nodes import ConditioningCombine, ConditioningSetMask, ConditioningSetTimestepRange

from comfyui_infuse.mechanisms.patching.surfaces.conditioning import ConditioningGate, gated

NAME = "tiny_sd15"


@pytest.fixture(scope="module")
def setup(tiny):
    model = tiny.build_model(NAME, seed=4)
    pos, neg, other = (tiny.text_conditioning(NAME, s) for s in (1, 2, 3))
    run = lambda p, n: tiny.sample(model, p, n, latent_hw=(8, 8), steps=4)
    return run, pos, neg, other


def replace_with(conditioning):
    return lambda embeds, options, branch: (conditioning[0][0], options)


def ranged(conditioning, start, end):
    return ConditioningSetTimestepRange().set_range(conditioning, start, end)[0]


def test_off_is_bit_identical_and_the_branch_gets_the_edit(setup):
    run, pos, neg, other = setup
    plain = run(pos, neg)
    assert torch.equal(run(*gated(pos, neg, ConditioningGate(strength=0.0), replace_with(other))), plain)
    assert torch.equal(run(*gated(pos, neg, ConditioningGate(apply_to="uncond"), replace_with(other))),
                       run(pos, other))
    assert torch.equal(run(*gated(pos, neg, ConditioningGate(apply_to="cond"), replace_with(other))),
                       run(other, neg))


def test_a_sigma_range_samples_like_cores_timestep_ranges(setup):
    run, pos, neg, other = setup
    edited, _ = gated(pos, neg, ConditioningGate(start_percent=0.5, end_percent=1.0, apply_to="cond"),
                      replace_with(other))
    core = ConditioningCombine().combine(ranged(other, 0.5, 1.0), ranged(pos, 0.0, 0.5))[0]
    out = run(edited, neg)
    assert torch.allclose(out, run(core, neg), atol=1e-5)
    assert not torch.allclose(out, run(pos, neg), atol=1e-3) and not torch.allclose(out, run(other, neg), atol=1e-3)


def test_a_mask_samples_like_cores_masked_conditioning(setup):
    run, pos, neg, other = setup
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0
    edited, _ = gated(pos, neg, ConditioningGate(apply_to="cond", mask=mask), replace_with(other))
    set_mask = ConditioningSetMask().append
    core = ConditioningCombine().combine(set_mask(other, mask, "default", 1.0)[0],
                                         set_mask(pos, 1.0 - mask, "default", 1.0)[0])[0]
    out = run(edited, neg)
    assert torch.allclose(out, run(core, neg), atol=1e-5)
    left, right = out[..., :4], out[..., 4:]
    assert not torch.allclose(left, run(pos, neg)[..., :4], atol=1e-3)
    assert not torch.allclose(right, run(other, neg)[..., 4:], atol=1e-3)
