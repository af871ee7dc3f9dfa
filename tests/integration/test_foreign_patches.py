"""Infuse's dispatcher beside other packs' attention patches: core Self-Attention Guidance (a replace patch at
the middle block), core Perturbed-Attention Guidance (a replace patch set for one call at the (block, number)
key) and a strict stand-in that checks it gets exactly the q / k / v ComfyUI would give it; in both orders.

A foreign patch stays the base attention and sees ComfyUI's own inputs; Infuse's contributions, reference concat
included, are added on top exactly."""
import pytest
import torch
from comfy_extras.nodes_pag import PerturbedAttentionGuidance
from comfy_extras.nodes_sag import SelfAttentionGuidance

from comfyui_infuse.mechanisms.patching.dispatcher import base_attention
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.mechanisms.reference_attention.reference import (ReferenceAttention, apply_reference,
                                                                     attn1_projections)

NODE = "Infuse Reference Only"


def strict_pass_through(calls: list):
    """Another pack's attn1 replace patch: ComfyUI's attention, after checking its inputs are ComfyUI's. A plain
    function, as packs write them (ModelPatcher.clone deep-copies objects but not functions)."""
    def patch(q, k, v, extra_options):
        assert k.shape == q.shape and v.shape == q.shape, (q.shape, k.shape, v.shape)
        calls.append(q.shape)
        return base_attention(q, k, v, extra_options)
    return patch


def with_reference(model, mode="concat", weight=1.0):
    sites = model_sites(model)
    m = model.clone()
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    c = ReferenceAttention(NODE, mode, model.model.process_latent_in(latent), attn1_projections(m, sites),
                           weight=weight)
    apply_reference(m, c, sites)
    return m


def with_strict(model, strict):
    m = model.clone()
    for site in model_sites(model):
        m.set_model_attn1_replace(strict, *site.key)
    return m


def sag(model, scale=0.5):
    return SelfAttentionGuidance.execute(model, scale, 2.0).args[0]


def pag(model, scale=3.0):
    return PerturbedAttentionGuidance.execute(model, scale).args[0]


@pytest.fixture(params=["tiny_sd15", "tiny_sdxl"])
def setup(request, tiny):
    name = request.param
    model = tiny.build_model(name, seed=6)
    pos, neg = tiny.text_conditioning(name, 1), tiny.text_conditioning(name, 2)
    return model, (lambda m, hw=(8, 8): tiny.sample(m, pos, neg, latent_hw=hw, steps=2))


@pytest.mark.parametrize("mode", ["concat", "cross"])
@pytest.mark.parametrize("order", ["foreign_first", "infuse_first"])
def test_a_strict_foreign_patch_sees_comfyuis_inputs_and_the_reference_still_acts(setup, order, mode):
    model, run = setup
    expected = run(with_reference(model, mode))
    calls = []
    strict = strict_pass_through(calls)
    m = with_reference(with_strict(model, strict), mode) if order == "foreign_first" else \
        with_strict(with_reference(model, mode), strict)
    out = run(m)
    assert calls
    # foreign + (Attn(q, [k, k_ref], ..) - Attn(q, k, v)) equals the folded attention up to rounding, which two CFG
    # steps of a random-weight UNet amplify: compare with the reference's own effect
    effect = (expected - run(model)).abs().max()
    assert effect > 0.1 and (out - expected).abs().max() < 1e-2 * effect


@pytest.mark.parametrize("order", ["sag_first", "infuse_first"])
def test_self_attention_guidance_composes_with_reference_only(setup, order):
    model, run = setup
    compose = (lambda s: with_reference(sag(model, s))) if order == "sag_first" else \
        (lambda s: sag(with_reference(model), s))
    hw = (16, 16)                      # SAG itself needs a middle block of more than one token
    reference, plain = run(with_reference(model), hw), run(model, hw)
    # SAG at scale 0 only records the attention it computes: the result is the reference's, at every site
    effect = (reference - plain).abs().max()
    assert effect > 0.1 and (run(compose(0.0), hw) - reference).abs().max() < 1e-2 * effect
    guided = run(compose(0.8), hw)
    assert torch.isfinite(guided).all()
    assert not torch.allclose(guided, reference, atol=1e-3)
    assert not torch.allclose(guided, run(sag(model, 0.8), hw), atol=1e-3)


def test_perturbed_attention_guidance_still_perturbs_under_infuse(setup):
    model, run = setup
    hw = (16, 16)                      # a one-token middle block (8x8 on SD1.5) attends to itself: PAG's identity
    reference = run(with_reference(model), hw)
    pag_first, infuse_first = run(with_reference(pag(model)), hw), run(pag(with_reference(model)), hw)
    # PAG's perturbed pass replaces the middle self-attention for that call; shadowed, it would change nothing
    assert not torch.allclose(pag_first, reference, atol=1e-3)
    torch.testing.assert_close(pag_first, infuse_first, atol=1e-5, rtol=0)
    assert not torch.allclose(pag_first, run(pag(model), hw), atol=1e-3)


def test_foreign_patches_are_not_written_into_the_model(setup):
    model, run = setup
    m = sag(with_reference(model), 0.8)
    before = dict(m.model_options["transformer_options"]["patches_replace"]["attn1"])
    run(m, (16, 16))
    after = m.model_options["transformer_options"]["patches_replace"]["attn1"]
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_a_contribution_added_over_a_foreign_patch_keeps_the_earlier_ones(setup):
    """Infuse, then another pack's patch over a dispatcher, then Infuse again: the new dispatcher there runs both
    contributions on the foreign base, and the result equals the foreign patch installed first."""
    model, run = setup
    calls = []
    strict = strict_pass_through(calls)
    first = with_reference(with_reference(with_strict(model, strict), "cross", 0.7), "concat", 0.4)
    between = with_reference(with_strict(with_reference(model, "cross", 0.7), strict), "concat", 0.4)
    key = model_sites(model)[0].key
    held = between.model_options["transformer_options"]["patches_replace"]["attn1"][key]
    assert len(held.contributions) == 2 and held.base is strict
    assert torch.equal(run(between), run(first)) and calls
