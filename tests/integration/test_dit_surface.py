"""The DiT-block surface of the dispatcher on a tiny Flux, sampled with ComfyUI's own samplers."""
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError, reported_as
from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.patching.surfaces import dit

T = 8   # text tokens of the test conditioning


class Constant(dit.BlockContribution):
    """Adds `value` to every image token; records where and when it ran."""

    def __init__(self, value=2.0, **kw):
        super().__init__("Test Block", **kw)
        self.value = value
        self.calls = []

    def block_delta(self, block_input, block_output, call):
        assert block_output["img"].shape[1] == call.n_img and block_input["txt"].shape[1] == T
        self.calls.append((call.site, call.chunks, float(call.transformer_options["sigmas"][0])))
        return torch.full_like(block_output["img"], self.value)


class Query(dit.BlockContribution):
    """Adds nothing; keeps the lazily computed image query."""

    def __init__(self, **kw):
        super().__init__("Test Query", **kw)
        self.queries = []

    def block_delta(self, block_input, block_output, call):
        self.queries.append(call.image_query())
        return torch.zeros_like(block_output["img"])


class Recorder:
    """A foreign "dit" patch: runs the block, records its joint stream cat(txt, img) in and out."""

    def __init__(self):
        self.inputs, self.outputs, self.cond_or_uncond = [], [], []

    @staticmethod
    def joint(stream):
        return torch.cat([stream["txt"], stream["img"]], 1) if "txt" in stream else stream["img"].clone()

    def __call__(self, args, extra):
        self.inputs.append(self.joint(args))
        self.cond_or_uncond.append(list(args["transformer_options"]["cond_or_uncond"]))
        out = extra["original_block"](args)
        self.outputs.append(self.joint(out))
        return out

    def __deepcopy__(self, memo):
        return self


@pytest.fixture(scope="module")
def flux():
    from support import tiny_flux

    model = tiny_flux.build_model(seed=1)
    pos, neg = tiny_flux.conditioning(2, tokens=T), tiny_flux.conditioning(3, tokens=T)
    return model, (lambda m, **kw: tiny_flux.sample(m, pos, neg, **kw))


def site(model, key):
    return [s for s in dit.block_sites(model) if s.key == key]


def probed(model, key, contribution):
    """A clone with a recorder as the foreign base at `key`, the contribution there, a recorder at the next block."""
    keys = [s.key for s in dit.block_sites(model)]
    nxt = keys[keys.index(key) + 1]
    m = model.clone()
    base, after = Recorder(), Recorder()
    m.set_model_patch_replace(base, "dit", *key)
    m.set_model_patch_replace(after, "dit", *nxt)
    dit.add_block_contribution(m, contribution, site(m, key))
    return m, base, after


def test_sites_are_double_then_single_blocks(flux):
    model, _ = flux
    keys = [s.key for s in dit.block_sites(model)]
    assert keys == [("double_block", 0), ("double_block", 1), ("single_block", 0), ("single_block", 1)]


def test_zero_weight_is_bit_identical_and_never_computed(flux):
    model, run = flux
    plain = run(model)
    m = model.clone()
    c = Constant(weight=0.0)
    dit.add_block_contribution(m, c)
    assert len(dit.dispatchers(m.model_options)) == 4
    assert torch.equal(run(m), plain)
    assert not c.calls


@pytest.mark.parametrize("key", [("double_block", 1), ("single_block", 0)])
def test_constant_delta_lands_on_image_tokens_only_and_foreign_base_is_kept(flux, key):
    model, run = flux
    c = Constant(value=2.0, weight=0.5)
    m, base, after = probed(model, key, c)
    run(m)
    assert len(base.outputs) == len(after.inputs) == len(c.calls) > 0     # the foreign base ran every call
    for out, nxt in zip(base.outputs, after.inputs):
        assert torch.equal(nxt[:, :T], out[:, :T])                          # text tokens bit-identical
        assert torch.equal(nxt[:, T:], out[:, T:] + 1.0)                    # 0.5 * 2.0 on every image token
    assert all(call[0] == key for call in c.calls)


@pytest.mark.parametrize("key", [("double_block", 1), ("single_block", 0)])
def test_constant_delta_on_the_original_block(flux, key):
    """No foreign base: the first model call (same inputs either way) gets exactly the delta on image tokens."""
    model, run = flux
    keys = [s.key for s in dit.block_sites(model)]
    nxt = keys[keys.index(key) + 1]
    seen = {}
    for name, contribution in (("plain", None), ("patched", Constant(value=2.0, weight=0.5))):
        m = model.clone()
        seen[name] = Recorder()
        m.set_model_patch_replace(seen[name], "dit", *nxt)
        if contribution is not None:
            dit.add_block_contribution(m, contribution, site(m, key))
        run(m)
    plain, patched = seen["plain"].inputs[0], seen["patched"].inputs[0]
    assert torch.equal(patched[:, :T], plain[:, :T])
    assert torch.equal(patched[:, T:], plain[:, T:] + 1.0)


@pytest.mark.parametrize("key, latent_hw", [(("double_block", 1), (6, 8)), (("single_block", 0), (6, 8)),
                                           (("single_block", 0), (5, 7))])
def test_mask_maps_to_the_flux_token_grid(flux, key, latent_hw):
    model, run = flux
    h, w = latent_hw[0] * 8, latent_hw[1] * 8
    mask = torch.zeros(1, h, w)
    mask[:, :, :w // 2] = 1.0                                               # left half of the image
    m, base, after = probed(model, key, Constant(value=2.0, weight=0.5, mask=mask))
    run(m, latent_hw=latent_hw)                                             # token grid 3 x 4: 2x2 patches, rounded up
    for out, nxt in zip(base.outputs, after.inputs):
        assert torch.equal(nxt[:, :T], out[:, :T])
        grid_in, grid_out = (t[:, T:].reshape(t.shape[0], 3, 4, -1) for t in (nxt, out))
        # left half: 0.5 * 2.0 (the resized mask is 1 within float rounding when the grid does not divide the image)
        torch.testing.assert_close(grid_in[:, :, :2], grid_out[:, :, :2] + 1.0, atol=1e-5, rtol=0)
        assert torch.equal(grid_in[:, :, 2:], grid_out[:, :, 2:])          # right half untouched


def test_sigma_range_gates_the_contribution(flux):
    model, run = flux
    c = Constant(start_percent=0.5, end_percent=1.0)
    m, base, after = probed(model, ("double_block", 0), c)
    run(m, steps=4)
    sigmas = [s for _, _, s in c.calls]
    assert 0 < len(c.calls) < len(base.outputs)
    assert all(s >= c.schedule.sigma_end for s in sigmas)
    changed = [not torch.equal(o, n) for o, n in zip(base.outputs, after.inputs)]
    assert sum(changed) == len(c.calls)


@pytest.mark.parametrize("positives", [1, 2])
def test_cond_only_changes_only_cond_rows(flux, positives):
    """Two positive entries batch as three chunks: the cond rows are then not one slice (index_add)."""
    from support import tiny_flux

    model, _ = flux
    c = Constant(value=2.0, weight=0.5, apply_to="cond")
    m, base, after = probed(model, ("single_block", 0), c)
    pos = sum((tiny_flux.conditioning(10 + i, tokens=T) for i in range(positives)), [])
    tiny_flux.sample(m, pos, tiny_flux.conditioning(3, tokens=T))
    assert c.calls and all(chunks == (0,) * positives for _, chunks, _ in c.calls)
    for out, nxt, cu in zip(base.outputs, after.inputs, base.cond_or_uncond):
        chunk = out.shape[0] // len(cu)
        assert len(cu) == positives + 1
        for j, branch in enumerate(cu):
            rows = slice(j * chunk, (j + 1) * chunk)
            expected = out[rows, T:] + 1.0 if branch == 0 else out[rows, T:]
            assert torch.equal(nxt[rows, T:], expected)
            assert torch.equal(nxt[rows, :T], out[rows, :T])


def test_foreign_patch_installed_after_is_the_base_for_the_call_and_contributions_go_on(flux):
    """A "dit" patch installed over a dispatcher: kept and called, and Infuse's contributions still act there; the
    result is the same as with the foreign patch installed first. The model's options keep the foreign patch."""
    model, run = flux
    key = ("double_block", 1)
    first, c_first = model.clone(), Constant()
    first.set_model_patch_replace(Recorder(), "dit", *key)
    dit.add_block_contribution(first, c_first)
    after, c_after = model.clone(), Constant()
    dit.add_block_contribution(after, c_after)
    later = Recorder()
    after.set_model_patch_replace(later, "dit", *key)
    out = run(after)
    assert later.outputs
    assert {s for s, _, _ in c_after.calls} == {("double_block", 0), key, ("single_block", 0), ("single_block", 1)}
    assert torch.equal(out, run(first))
    assert after.model_options["transformer_options"]["patches_replace"]["dit"][key] is later


def test_a_contribution_added_over_a_foreign_patch_keeps_the_earlier_ones(flux):
    model, run = flux
    key = ("single_block", 0)
    m, a, b = model.clone(), Constant(1.0), Constant(0.5)
    dit.add_block_contribution(m, a)
    m.set_model_patch_replace(Recorder(), "dit", *key)
    dit.add_block_contribution(m, b)
    held = m.model_options["transformer_options"]["patches_replace"]["dit"][key]
    assert held.contributions == (a, b) and isinstance(held.base, Recorder)
    run(m)
    assert key in {s for s, _, _ in a.calls} and key in {s for s, _, _ in b.calls}


def test_clones_share_contributions_and_tensors_and_input_model_is_untouched(flux):
    model, run = flux
    options_before = {k: dict(v) if isinstance(v, dict) else v for k, v in model.model_options.items()}
    wrappers_before = {k: dict(v) for k, v in model.wrappers.items()}
    m = model.clone()
    m.set_model_patch_replace(Recorder(), "dit", "double_block", 0)      # a foreign base is deep-copied
    c = Constant()
    c.tensor = torch.randn(3, 4)
    dit.add_block_contribution(m, c)
    clone = m.clone()
    mine, theirs = dit.dispatchers(m.model_options), dit.dispatchers(clone.model_options)
    assert len(mine) == len(theirs) == 4
    for a, b in zip(mine, theirs):
        assert a.contributions[0] is b.contributions[0] is c
    assert theirs[0].contributions[0].tensor is c.tensor
    assert dispatcher.contributions(clone.model_options)[0] is c
    run(clone)
    assert model.model_options["transformer_options"] == options_before["transformer_options"]
    assert "dit" not in model.model_options["transformer_options"].get("patches_replace", {})
    assert {k: dict(v) for k, v in model.wrappers.items()} == wrappers_before


@pytest.mark.parametrize("captured", [False, True], ids=["projected", "kept from the attention"])
@pytest.mark.parametrize("kind", ["double_block", "single_block"])
def test_image_query_is_the_blocks_own_q_computed_once(flux, kind, captured, monkeypatch):
    from comfyui_infuse.mechanisms.patching.surfaces import dit_call

    projections = []
    project = dit_call._rows_of_linear
    monkeypatch.setattr(dit_call, "_rows_of_linear", lambda *a: projections.append(1) or project(*a))
    model, run = flux
    m = model.clone()
    first, second = Query(), Query()
    first.reads_query = second.reads_query = captured
    keys = [s for s in dit.block_sites(m) if s.kind == kind]
    dit.add_block_contribution(m, first, keys)
    dit.add_block_contribution(m, second, keys)
    seen = []
    blocks = getattr(m.model.diffusion_model, kind + "s")
    norms = [b.img_attn.norm if kind == "double_block" else b.norm for b in blocks]
    handles = [n.register_forward_hook(lambda mod, inp, out: seen.append(out[0].clone())) for n in norms]
    try:
        run(m)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) == len(first.queries) == len(second.queries) > 0     # the block's own call, nothing more
    for own, q, q2 in zip(seen, first.queries, second.queries):
        assert q2 is q
        own = own if kind == "double_block" else own[:, :, T:]
        assert q.shape == own.shape
        torch.testing.assert_close(q, own, atol=1e-5 if captured else 1e-6, rtol=0)   # RoPE undone: rounding
    assert (len(projections) == 0) == captured


def test_unet_model_is_refused_naming_the_node_and_the_model(tiny):
    model = tiny.build_model("tiny_sd15", seed=0).clone()
    with pytest.raises(InfuseError) as e, reported_as("Test Block"):
        dit.add_block_contribution(model, Constant())
    assert "Test Block" in str(e.value) and "SD15" in str(e.value) and e.value.input_name == "model"
