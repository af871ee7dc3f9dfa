"""The dispatcher's arithmetic, in pure torch: a base attention given as a function (as another pack's
replace patch would be), contributions with the published decoupled cross-attention formula."""
import copy

import pytest
import torch
import torch.nn.functional as F

from comfyui_infuse.mechanisms.patching.dispatcher import Contribution, SiteDispatcher

HEADS, DIM = 2, 16
SITE = ("input", 1, 0)


def attn(q, k, v, heads=HEADS):
    b, n, d = q.shape
    split = lambda t: t.reshape(b, -1, heads, d // heads).transpose(1, 2)
    return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(b, n, d)


def base_patch(q, k, v, extra_options):
    return attn(q, k, v, extra_options["n_heads"])


class ImageTokens(Contribution):
    """Attn(Q, K_i, V_i) over fixed image keys/values, different for cond and uncond rows."""

    def __init__(self, k_cond, v_cond, k_uncond=None, v_uncond=None, **kw):
        super().__init__("Test Node", **kw)
        self.kv = {0: (k_cond, v_cond), 1: (k_uncond if k_uncond is not None else k_cond,
                                            v_uncond if v_uncond is not None else v_cond)}
        self.calls = []

    def delta(self, q, k, v, call):
        self.calls.append(call.chunks)
        ks = torch.cat([self.kv[c][0].expand(call.chunk_size, -1, -1) for c in call.chunks])
        vs = torch.cat([self.kv[c][1].expand(call.chunk_size, -1, -1) for c in call.chunks])
        return attn(q, ks, vs, call.heads)


def inputs(seed=0, batch=4, tokens=16):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, tokens, DIM, generator=g)
    k = torch.randn(batch, 7, DIM, generator=g)
    v = torch.randn(batch, 7, DIM, generator=g)
    extra = {"n_heads": HEADS, "cond_or_uncond": [1, 0], "original_shape": [batch // 2, 4, 4, 4],
             "sigmas": torch.tensor([1.0] * batch)}
    return q, k, v, extra


def image_kv(seed):
    g = torch.Generator().manual_seed(100 + seed)
    return torch.randn(1, 4, DIM, generator=g), torch.randn(1, 4, DIM, generator=g)


def test_no_contributions_is_the_base_attention():
    q, k, v, extra = inputs()
    out = SiteDispatcher(SITE, "attn2", base_patch)(q, k, v, extra)
    assert torch.equal(out, base_patch(q, k, v, extra))


def test_decoupled_cross_attention_formula():
    q, k, v, extra = inputs()
    ki, vi = image_kv(0)
    c = ImageTokens(ki, vi, weight=0.7)
    out = SiteDispatcher(SITE, "attn2", base_patch, (c,))(q, k, v, extra)
    expected = attn(q, k, v) + 0.7 * attn(q, ki.expand(4, -1, -1), vi.expand(4, -1, -1))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_two_contributions_sum_and_weight_zero_is_bit_identical():
    q, k, v, extra = inputs()
    a, b = ImageTokens(*image_kv(1), weight=0.5), ImageTokens(*image_kv(2), weight=1.5)
    both = SiteDispatcher(SITE, "attn2", base_patch, (a, b))(q, k, v, extra)
    only_a = SiteDispatcher(SITE, "attn2", base_patch, (a,))(q, k, v, extra)
    only_b = SiteDispatcher(SITE, "attn2", base_patch, (b,))(q, k, v, extra)
    base = base_patch(q, k, v, extra)
    torch.testing.assert_close(both - base, (only_a - base) + (only_b - base), rtol=0, atol=1e-5)
    calls_before = len(b.calls)
    b.weight = 0.0
    assert torch.equal(SiteDispatcher(SITE, "attn2", base_patch, (a, b))(q, k, v, extra), only_a)
    a.weight = 0.0
    assert torch.equal(SiteDispatcher(SITE, "attn2", base_patch, (a, b))(q, k, v, extra), base)
    assert len(b.calls) == calls_before              # weight 0: delta is never computed


def test_per_site_weight_scales_only_its_site():
    q, k, v, extra = inputs()
    c = ImageTokens(*image_kv(3), site_weights={("output", 3, 0): 0.0})
    here = SiteDispatcher(SITE, "attn2", base_patch, (c,))(q, k, v, extra)
    there = SiteDispatcher(("output", 3, 0), "attn2", base_patch, (c,))(q, k, v, extra)
    assert not torch.equal(here, base_patch(q, k, v, extra))
    assert torch.equal(there, base_patch(q, k, v, extra))


@pytest.mark.parametrize("apply_to, changed", [("cond", [2, 3]), ("uncond", [0, 1]), ("both", [0, 1, 2, 3])])
def test_cond_uncond_selection_touches_only_those_rows(apply_to, changed):
    q, k, v, extra = inputs()            # rows 0-1 uncond, rows 2-3 cond (cond_or_uncond [1, 0])
    c = ImageTokens(*image_kv(4), apply_to=apply_to)
    out = SiteDispatcher(SITE, "attn2", base_patch, (c,))(q, k, v, extra)
    base = base_patch(q, k, v, extra)
    for row in range(4):
        assert torch.equal(out[row], base[row]) == (row not in changed)
    assert c.calls == [tuple(x for x in (1, 0) if (apply_to == "both" or (x == 0) == (apply_to == "cond")))]


def test_uncond_rows_get_their_own_image_tokens():
    q, k, v, extra = inputs()
    (kc, vc), (ku, vu) = image_kv(5), image_kv(6)
    out = SiteDispatcher(SITE, "attn2", base_patch, (ImageTokens(kc, vc, ku, vu),))(q, k, v, extra)
    expected_uncond = attn(q[:2], k[:2], v[:2]) + attn(q[:2], ku.expand(2, -1, -1), vu.expand(2, -1, -1))
    expected_cond = attn(q[2:], k[2:], v[2:]) + attn(q[2:], kc.expand(2, -1, -1), vc.expand(2, -1, -1))
    torch.testing.assert_close(out, torch.cat([expected_uncond, expected_cond]), rtol=0, atol=1e-6)


def test_mask_scales_the_contribution_per_token():
    q, k, v, extra = inputs()            # 16 tokens = the 4x4 latent of original_shape
    mask = torch.zeros(1, 32, 32)
    mask[:, :16, :] = 1.0                # top half of the image
    c = ImageTokens(*image_kv(7), mask=mask)
    out = SiteDispatcher(SITE, "attn2", base_patch, (c,))(q, k, v, extra)
    base = base_patch(q, k, v, extra)
    assert torch.equal(out[:, 8:], base[:, 8:])           # bottom two token rows untouched
    assert not torch.allclose(out[:, :8], base[:, :8])


def test_schedule_skips_steps_outside_the_sigma_range():
    q, k, v, extra = inputs()
    c = ImageTokens(*image_kv(8), start_percent=0.5, end_percent=1.0)
    c.schedule.sigma_start, c.schedule.sigma_end = 0.5, 0.0        # as bound by a model's sampling
    d = SiteDispatcher(SITE, "attn2", base_patch, (c,))
    assert torch.equal(d(q, k, v, dict(extra, sigmas=torch.tensor([0.9] * 4))), base_patch(q, k, v, extra))
    assert not torch.equal(d(q, k, v, dict(extra, sigmas=torch.tensor([0.3] * 4))), base_patch(q, k, v, extra))


def test_deepcopy_shares_contributions_and_copies_a_foreign_base():
    c = ImageTokens(*image_kv(9))
    plain = SiteDispatcher(SITE, "attn2", None, (c,))
    assert copy.deepcopy(plain) is plain

    class ForeignPatch:           # another pack's patch object, which may rely on being copied
        def __init__(self):
            self.state = []

        def __call__(self, q, k, v, extra_options):
            return attn(q, k, v)

    wrapped = SiteDispatcher(SITE, "attn2", ForeignPatch(), (c,))
    copied = copy.deepcopy(wrapped)
    assert copied is not wrapped and copied.base is not wrapped.base
    assert copied.contributions[0] is c and copied.contributions[0].kv[0][0] is c.kv[0][0]
