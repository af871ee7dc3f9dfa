"""The conditioning surface's Gate written into ComfyUI's cond keys: off = untouched, CFG branch, sigma range with
the original kept outside it, mask with the original on the inverted mask. Pure data; sampling is tested in
tests/integration/test_conditioning_gate.py."""
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.patching.surfaces.conditioning import ConditioningGate, gated, with_options


def conditioning(value: float, **options):
    return [[torch.full((1, 4, 8), value), dict(options)]]


def replace_with(value: float):
    return lambda embeds, options, branch: (torch.full_like(embeds, value), {**options, "edited": branch})


def test_an_off_gate_returns_both_conditionings_as_they_are():
    pos, neg = conditioning(1.0), conditioning(2.0)
    out = gated(pos, neg, ConditioningGate(strength=0.0), replace_with(9.0))
    assert out[0] is pos and out[1] is neg


@pytest.mark.parametrize("apply_to, edited", [("both", (0, 1)), ("cond", (0,)), ("uncond", (1,))])
def test_the_cfg_branch_picks_the_conditioning(apply_to, edited):
    pos, neg = conditioning(1.0), conditioning(2.0)
    out = gated(pos, neg, ConditioningGate(apply_to=apply_to), replace_with(9.0))
    for branch, original in enumerate((pos, neg)):
        if branch in edited:
            assert out[branch] == [[out[branch][0][0], {"edited": branch}]]
            assert torch.equal(out[branch][0][0], torch.full((1, 4, 8), 9.0))
        else:
            assert out[branch] is original
    assert pos[0][1] == {} and torch.equal(pos[0][0], torch.full((1, 4, 8), 1.0))       # inputs untouched


def test_a_range_keeps_the_original_outside_it_within_the_entrys_own_range():
    pos = conditioning(1.0) + conditioning(3.0, start_percent=0.0, end_percent=0.6)
    out, _ = gated(pos, [], ConditioningGate(start_percent=0.2, end_percent=0.8), replace_with(9.0))
    ranges = [(float(e[0][0, 0, 0]), e[1].get("start_percent"), e[1].get("end_percent")) for e in out]
    assert ranges == [(9.0, 0.2, 0.8), (1.0, 0.0, 0.2), (1.0, 0.8, 1.0),
                      (9.0, 0.2, 0.6), (3.0, 0.0, 0.2)]


def test_an_entry_outside_the_range_is_left_alone_and_a_full_range_adds_no_keys():
    late = conditioning(1.0, start_percent=0.9, end_percent=1.0)
    out, _ = gated(late, [], ConditioningGate(start_percent=0.0, end_percent=0.5), replace_with(9.0))
    assert out == late
    out, _ = gated(conditioning(1.0), [], ConditioningGate(), replace_with(9.0))
    assert out[0][1] == {"edited": 0}


def test_a_mask_puts_the_edit_on_the_mask_and_the_original_on_its_inverse():
    mask = torch.zeros(1, 4, 4)
    mask[:, :2] = 1.0
    out, _ = gated(conditioning(1.0), [], ConditioningGate(mask=mask), replace_with(9.0))
    (edited, e_opts), (original, o_opts) = out
    assert float(edited[0, 0, 0]) == 9.0 and float(original[0, 0, 0]) == 1.0
    assert torch.equal(e_opts["mask"], mask) and torch.equal(o_opts["mask"], 1.0 - mask)
    assert e_opts["set_area_to_bounds"] is False and o_opts["mask_strength"] == 1.0


def test_a_bad_range_is_named():
    with pytest.raises(InfuseError, match="input 'start_percent'"):
        ConditioningGate(start_percent=0.7, end_percent=0.2)


def test_with_options_copies():
    pos = conditioning(1.0, a=1)
    out = with_options(pos, b=2)
    assert out[0][1] == {"a": 1, "b": 2} and pos[0][1] == {"a": 1} and out[0][0] is pos[0][0]
