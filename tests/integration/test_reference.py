"""Reference attention (double UNet) on real ComfyUI models and samplers."""
import pytest
import torch
import torch.nn.functional as F

from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.mechanisms.reference_attention.reference import (ReferenceAttention, apply_reference,
                                                                     attn1_projections)

NODE = "Infuse Reference"


def make(model, mode="concat", weight=1.0, cache_every=1, seed=0, **kw):
    sites = model_sites(model)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    m = model.clone()
    c = ReferenceAttention(NODE, mode, model.model.process_latent_in(latent), attn1_projections(m, sites),
                           weight=weight, cache_every=cache_every, **kw)
    apply_reference(m, c, sites)
    return m, c


@pytest.fixture(params=["tiny_sd15", "tiny_sdxl"])
def setup(request, tiny):
    name = request.param
    model = tiny.build_model(name, seed=6)
    pos, neg = tiny.text_conditioning(name, 1), tiny.text_conditioning(name, 2)
    return model, (lambda m, **kw: tiny.sample(m, pos, neg, **kw))


def test_weight_zero_is_bit_identical_and_runs_no_reference_pass(setup):
    model, run = setup
    m, c = make(model, weight=0.0)
    assert torch.equal(run(m), run(model)) and c.passes == 0


@pytest.mark.parametrize("mode", ["concat", "cross"])
def test_reference_changes_the_output_with_one_pass_per_step(setup, mode):
    model, run = setup
    m, c = make(model, mode=mode)
    out = run(m, steps=3)
    assert not torch.equal(out, run(model, steps=3)) and torch.isfinite(out).all()
    assert c.passes == 3                     # once per step for the batch, not once per CFG copy


def test_features_come_from_every_self_attention_input(setup):
    model, run = setup
    m, c = make(model)
    run(m, steps=1)
    sites = model_sites(model)
    assert set(c.features) == {s.key for s in sites}
    assert all(c.features[s.key].shape[0] == 1 and c.features[s.key].shape[-1] == s.inner_dim for s in sites)


def test_cache_reuses_features_for_k_steps(setup):
    model, run = setup
    m, c = make(model, cache_every=4)
    run(m, steps=6)
    assert c.passes == 2


def test_concat_equals_idm_vton_attention_and_uncond_sees_zeros(setup):
    """At one site: cat([x, ref]) as keys/values, attend, keep the first N tokens; uncond rows get zeros."""
    model, run = setup
    m, c = make(model)
    run(m, steps=1)
    site = model_sites(model)[0]
    to_k, to_v = c.projections[site.key]
    heads = site.heads
    g = torch.Generator().manual_seed(0)
    n = c.features[site.key].shape[1]
    q, k, v = (torch.randn(2, n, site.inner_dim, generator=g) for _ in range(3))
    ref = c.features[site.key]

    def attend(q, k, v):
        split = lambda t: t.reshape(t.shape[0], -1, heads, t.shape[-1] // heads).transpose(1, 2)
        return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(q.shape)

    extra = {"n_heads": heads, "cond_or_uncond": [1, 0], "original_shape": [1, 4, 8, 8],
             "sigmas": torch.tensor([1.0, 1.0])}
    out = dispatcher.SiteDispatcher(site.key, "attn1", None, (c,))(q, k, v, extra)
    with torch.no_grad():
        k_cond = torch.cat([k[1:], to_k(ref)], dim=1)
        v_cond = torch.cat([v[1:], to_v(ref)], dim=1)
        zeros = torch.zeros(1, ref.shape[1], site.inner_dim)
        k_unc, v_unc = torch.cat([k[:1], zeros], dim=1), torch.cat([v[:1], zeros], dim=1)
        expected = torch.cat([attend(q[:1], k_unc, v_unc), attend(q[1:], k_cond, v_cond)])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_node_refuses_a_latent_of_another_model(tiny):
    from comfyui_infuse.core.errors import InfuseError
    from comfyui_infuse.nodes.reference_nodes import InfuseReferenceOnly

    model = tiny.build_model("tiny_sd15")
    with pytest.raises(InfuseError, match="Infuse Reference Only, input 'reference': the reference latent has shape "
                                          r"\(1, 16, 8, 8\); this model's latents have 4 channels"):
        InfuseReferenceOnly.execute(model, {"samples": torch.zeros(1, 16, 8, 8)}, "concat", 1.0, 0.0, 1.0, 1, 0)
    patched = InfuseReferenceOnly.execute(model, {"samples": torch.zeros(2, 4, 6, 10)}, "cross", 0.5, 0.0, 1.0, 2,
                                          0).args[0]
    (c,) = dispatcher.contributions(patched.model_options)
    assert c.mode == "cross" and c.latent.shape == (1, 4, 6, 10) and c.cache_every == 2


def test_partial_weight_blends_plain_and_concat_attention(setup):
    model, run = setup
    m, c = make(model)
    run(m, steps=1)
    site = model_sites(model)[0]
    n = c.features[site.key].shape[1]
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, n, site.inner_dim, generator=g) for _ in range(3))
    extra = {"n_heads": site.heads, "cond_or_uncond": [1, 0], "original_shape": [1, 4, 8, 8],
             "sigmas": torch.tensor([1.0, 1.0])}
    plain = dispatcher.SiteDispatcher(site.key, "attn1", None, ())(q, k, v, extra)
    full = dispatcher.SiteDispatcher(site.key, "attn1", None, (c,))(q, k, v, extra)
    c.weight = 0.5
    half = dispatcher.SiteDispatcher(site.key, "attn1", None, (c,))(q, k, v, extra)
    torch.testing.assert_close(half, 0.5 * plain + 0.5 * full, rtol=0, atol=1e-5)


def test_separate_reference_unet_on_the_clean_latent(tiny):
    """IDM-VTON's source: another UNet (the garment net) on the clean reference latent at the current timestep."""
    model = tiny.build_model("tiny_sd15", seed=6)
    garment = tiny.build_model("tiny_sd15", seed=9)
    pos, neg = tiny.text_conditioning("tiny_sd15", 1), tiny.text_conditioning("tiny_sd15", 2)
    same, c_same = make(model)
    other, c_other = make(model, source=garment, noised=False)
    # registered as the model's additional model, so ComfyUI's sampler loads the garment UNet with it
    assert [m.model for m in other.clone().get_nested_additional_models()] == [garment.model]
    a, b = tiny.sample(same, pos, neg, steps=2), tiny.sample(other, pos, neg, steps=2)
    import comfy.model_management as mm
    assert any(loaded.model.model is garment.model for loaded in mm.current_loaded_models)
    assert c_other.passes == 2 and not torch.equal(a, b)
    site = model_sites(model)[0].key
    assert not torch.allclose(c_same.features[site], c_other.features[site])


def test_a_reference_too_small_for_the_unet_is_named_before_sampling(tiny):
    from comfyui_infuse.core.errors import InfuseError
    from comfyui_infuse.nodes.reference_nodes import InfuseReferenceOnly

    model = tiny.build_model("tiny_sd15")
    with pytest.raises(InfuseError, match=r"Infuse Reference Only, input 'reference': the reference latent is 1x1 "
                                          r"\(8x8 px\).*at least 4x4 \(32x32 px\)"):
        InfuseReferenceOnly.execute(model, {"samples": torch.zeros(1, 4, 1, 1)}, "concat", 1.0, 0.0, 1.0, 1, 0)
    InfuseReferenceOnly.execute(model, {"samples": torch.zeros(1, 4, 4, 4)}, "concat", 1.0, 0.0, 1.0, 1, 0)


@pytest.mark.parametrize("gate", ["weight_zero_with_site_weights", "site_weights_all_zero"])
def test_a_reference_gated_off_everywhere_runs_no_pass(setup, gate):
    """One gate for the attention and the reference pass that feeds it: zero at every site means no pass at all."""
    model, run = setup
    keys = [s.key for s in model_sites(model)]
    kw = {"weight_zero_with_site_weights": dict(weight=0.0, site_weights={k: 1.5 for k in keys}),
          "site_weights_all_zero": dict(weight=1.0, site_weights={k: 0.0 for k in keys})}[gate]
    m, c = make(model, **kw)
    out = run(m, steps=2)
    assert c.passes == 0 and torch.equal(out, run(model, steps=2))
