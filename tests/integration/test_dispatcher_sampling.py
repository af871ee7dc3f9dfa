"""The dispatcher on real ComfyUI models, sampled with ComfyUI's own samplers."""
from collections import Counter

import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites


class ImageAttention(dispatcher.Contribution):
    """Decoupled cross-attention over fixed random image tokens, recording where it ran."""

    def __init__(self, width_of, seed=0, tokens=4, **kw):
        super().__init__("Test Contribution", **kw)
        g = torch.Generator().manual_seed(seed)
        self.kv = {w: (torch.randn(1, tokens, w, generator=g), torch.randn(1, tokens, w, generator=g))
                   for w in sorted(set(width_of.values()))}
        self.calls = Counter()
        self.chunks = []

    def delta(self, q, k, v, call):
        self.calls[call.site] += 1
        self.chunks.append(call.chunks)
        ki, vi = (t.to(q).expand(q.shape[0], -1, -1) for t in self.kv[q.shape[-1]])
        return dispatcher.base_attention(q, ki, vi, call.extra_options)


def widths(model):
    return {s.key: s.inner_dim for s in model_sites(model)}


@pytest.fixture(params=["tiny_sd15", "tiny_sdxl"])
def setup(request, tiny):
    name = request.param
    model = tiny.build_model(name, seed=1)
    pos, neg = tiny.text_conditioning(name, 2), tiny.text_conditioning(name, 3)
    return name, model, (lambda m, **kw: tiny.sample(m, pos, neg, **kw))


def test_installed_dispatchers_without_contributions_are_bit_identical(setup):
    _, model, run = setup
    plain = run(model)
    m = model.clone()
    for kind in dispatcher.ATTENTION_KINDS:
        dispatcher.install(m, kind, model_sites(m))
    assert len(dispatcher.dispatchers(m.model_options)) == 2 * len(model_sites(m))
    assert torch.equal(run(m), plain)


def test_zero_weight_contribution_is_bit_identical_and_never_computed(setup):
    _, model, run = setup
    plain = run(model)
    m = model.clone()
    c = ImageAttention(widths(m), weight=0.0)
    dispatcher.add_contribution(m, c)
    assert torch.equal(run(m), plain)
    assert not c.calls


def test_contribution_changes_output_and_runs_at_every_site_middle_included(setup):
    name, model, run = setup
    plain = run(model)
    m = model.clone()
    c = ImageAttention(widths(m), weight=1.0)
    dispatcher.add_contribution(m, c)
    out = run(m, steps=2)
    assert not torch.equal(out, run(model, steps=2)) and torch.isfinite(out).all()
    sites = model_sites(m)
    assert set(c.calls) == {s.key for s in sites}
    middle = [s.key for s in sites if s.block == "middle"]
    assert middle and all(c.calls[k] == 2 for k in middle)       # one call per step (cond+uncond batched)
    assert plain.shape == out.shape


def test_two_contributions_compose_and_removing_one_leaves_the_other(setup):
    _, model, run = setup
    w = widths(model)
    a, b = ImageAttention(w, seed=1, weight=0.8), ImageAttention(w, seed=2, weight=0.6)
    both = model.clone()
    dispatcher.add_contribution(both, a)
    dispatcher.add_contribution(both, b)
    only_a = model.clone()
    dispatcher.add_contribution(only_a, a)
    out_both, out_a = run(both), run(only_a)
    assert not torch.equal(out_both, out_a)
    # one dispatcher per site, holding both contributions in order
    per_site = dispatcher.dispatchers(both.model_options)
    assert all(d.contributions == (a, b) for d in per_site if d.kind == "attn2")
    b.weight = 0.0
    assert torch.equal(run(both), out_a)


def test_foreign_replace_patches_are_kept_as_base_attention(setup):
    name, model, run = setup
    sites = model_sites(model)
    first, last = sites[0], sites[-1]
    called = Counter()

    def foreign_exact(q, k, v, extra_options):     # another pack's patch at a (block, number, depth) key
        called["exact"] += 1
        return dispatcher.base_attention(q, k, v, extra_options) * 0.5

    def foreign_block(q, k, v, extra_options):     # ... and one at a (block, number) key
        called["block"] += 1
        return dispatcher.base_attention(q, k * 2.0, v, extra_options)

    foreign = model.clone()
    foreign.set_model_attn2_replace(foreign_exact, *first.key)
    foreign.set_model_attn2_replace(foreign_block, last.block, last.number)
    expected = run(foreign)
    calls_alone = dict(called)
    called.clear()

    m = foreign.clone()
    c = ImageAttention(widths(m), weight=0.0)
    dispatcher.add_contribution(m, c)
    replace = m.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert replace[first.key].base is foreign_exact and replace[last.key].base is foreign_block
    assert torch.equal(run(m), expected)                 # Infuse adds nothing at weight 0: the foreign output
    assert dict(called) == calls_alone                   # and every foreign patch still ran
    c.weight = 1.0
    assert not torch.equal(run(m), expected)


def test_clone_shares_tensors_instead_of_copying(setup):
    _, model, _ = setup
    m = model.clone()
    c = ImageAttention(widths(m))
    dispatcher.add_contribution(m, c)
    clone = m.clone().clone()
    for d_orig, d_clone in zip(dispatcher.dispatchers(m.model_options), dispatcher.dispatchers(clone.model_options)):
        assert d_clone.contributions[0] is c
    tensor = next(iter(c.kv.values()))[0]
    assert next(iter(dispatcher.contributions(clone.model_options)[0].kv.values()))[0].data_ptr() == tensor.data_ptr()
    # adding to the clone leaves the original alone
    dispatcher.add_contribution(clone, ImageAttention(widths(m), seed=5))
    assert all(len(d.contributions) == 1 for d in dispatcher.dispatchers(m.model_options))


def test_cond_only_contribution_sees_only_cond_rows(setup):
    _, model, run = setup
    m = model.clone()
    c = ImageAttention(widths(m), apply_to="cond")
    dispatcher.add_contribution(m, c)
    run(m, steps=1)
    assert c.chunks and all(chunks == (0,) for chunks in c.chunks)


def test_sigma_range_limits_the_steps(setup):
    _, model, run = setup
    m = model.clone()
    c = ImageAttention(widths(m), start_percent=0.0, end_percent=0.5)
    dispatcher.add_contribution(m, c)
    run(m, steps=6)
    middle_calls = [n for k, n in c.calls.items() if k[0] == "middle"]
    assert middle_calls and all(0 < n < 6 for n in middle_calls)


def test_mask_of_another_aspect_fails_before_the_first_step(setup):
    _, model, run = setup
    m = model.clone()
    c = ImageAttention(widths(m), mask=torch.ones(1, 64, 128))
    dispatcher.add_contribution(m, c)
    with pytest.raises(InfuseError, match="Test Contribution, input 'attn_mask'"):
        run(m, latent_hw=(8, 8))
    assert not c.calls
    out = run(m, latent_hw=(8, 16))      # same aspect as the mask: runs
    assert c.calls and torch.isfinite(out).all()


def test_unsupported_model_is_rejected_at_apply_time(tiny):
    m = tiny.build_model("tiny_sd21")
    with pytest.raises(InfuseError, match="^input 'model': the model is a SD20 model"):
        dispatcher.add_contribution(m, ImageAttention({("input", 1, 0): 32}))
