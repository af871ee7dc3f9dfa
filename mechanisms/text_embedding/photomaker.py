"""PhotoMaker's stacked ID embedding (TencentARC/PhotoMaker pipeline.py, encode_prompt_with_trigger_word): the
class word before the trigger is repeated once per ID row (v1: 1 per photo, v2: 2), the trigger taken out, the
prompt encoded, and the copies' rows fused with the ID rows; before `start_percent` (the reference's
start_merge_step) the prompt without the trigger is used, text only. Computed once per run, as conditioning."""
from __future__ import annotations

import torch

from ..patching.gate import ApplyTo
from ..patching.surfaces.conditioning import ConditioningGate, gated
from .token_replace import expand_word, replace_rows


@torch.no_grad()
def photomaker_conditioning(clip, text: str, trigger_word: str, fuse_module, id_rows: torch.Tensor,
                            start_percent: float = 0.0, end_percent: float = 1.0) -> list:
    """A CONDITIONING of `text` with the class word's copies fused with `id_rows` [R, C] inside the range and the
    text-only prompt outside it."""
    tokens = clip.tokenize(text)
    with_id, at = expand_word(clip, tokens, trigger_word, copies=id_rows.shape[0])
    text_only, _ = expand_word(clip, tokens, trigger_word, copies=1)
    cond, pooled = clip.encode_from_tokens(with_id, return_pooled=True)
    plain, plain_pooled = clip.encode_from_tokens(text_only, return_pooled=True)
    fused = replace_rows(cond, at, id_rows, fuse_module)
    gate = ConditioningGate(1.0, start_percent, end_percent, ApplyTo.COND)
    positive, _ = gated([[plain, {"pooled_output": plain_pooled}]], [], gate,
                        lambda embeds, options, branch: (fused, {**options, "pooled_output": pooled}))
    return positive
