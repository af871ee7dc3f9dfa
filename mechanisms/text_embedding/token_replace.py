"""Token replace: a word of the prompt stands for image tokens. The word's token is repeated once per image token
(`copies`) and the copies' rows of the encoded prompt are then replaced by (or fused with) the image tokens, the
rest of the prompt untouched: PhotoMaker's class word (a trigger word after it taken out), ELITE / AnyDoor's
placeholder word (replaced, or followed by the image tokens). Works on ComfyUI's tokens ({"l": [[(id, weight), ...]
x 77], "g": ...}) before they are encoded.

    tokens, at = expand_word(clip, clip.tokenize(text), "img", copies=4)     # "a man img" -> "a man man man man"
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    cond[:, at.rows] = ...                                                   # the 4 copies of "man"
"""
from __future__ import annotations

from dataclasses import dataclass

from ...core.errors import InfuseError


@dataclass(frozen=True)
class WordRows:
    """Where the copies of the word are in the encoded prompt (rows of [1, 77 * batches, C])."""
    start: int
    copies: int

    @property
    def rows(self) -> slice:
        return slice(self.start, self.start + self.copies)


def _tokenizer(clip, key: str):
    """The SDTokenizer behind a tokens key ("l", "g"): SD1's and SDXL's tokenizers keep it as clip_<key>."""
    return getattr(clip.tokenizer, f"clip_{key}", None)


def word_token(clip, word: str, input_name: str) -> int:
    """The one token id of `word` in the prompt's CLIP vocabulary (CLIP-L and CLIP-G share it)."""
    inner = _tokenizer(clip, "l").tokenizer
    ids = inner(word.strip())["input_ids"][1:-1]
    if not word.strip() or " " in word.strip():
        raise InfuseError(f"the trigger word must be one word, got {word!r}.", "use one word, e.g. img.",
                          input_name=input_name)
    if len(ids) != 1:
        pieces = ", ".join(inner.convert_ids_to_tokens(ids)).replace("</w>", "")
        raise InfuseError(f"the trigger word {word!r} is {len(ids)} tokens in CLIP's vocabulary ({pieces}), so it "
                          "cannot mark one place in the prompt.",
                          "pick a word that is one token, e.g. img (the reference's), ohwx or sks.",
                          input_name=input_name)
    return ids[0]


def expand_word(clip, tokens: dict, trigger: str, copies: int, input_name: str = "text",
                trigger_input: str = "trigger_word") -> tuple[dict, WordRows]:
    """`tokens` with the trigger word taken out and the token before it repeated `copies` times (each batch kept at
    its length: padding dropped or added), and where the copies are. The trigger must appear once, right after the
    word it stands for (PhotoMaker's class word)."""
    def edit(batch, i, tokenizer):
        if i == 0 or batch[i - 1][0] in (tokenizer.start_token, tokenizer.end_token):
            raise InfuseError(f"the trigger word {trigger!r} does not follow a word: it stands for the word before it.",
                              f"put it after the class word, e.g. 'a photo of a woman {trigger}'.",
                              input_name=input_name)
        return batch[:i] + [batch[i - 1]] * (copies - 1) + batch[i + 1:], i - 1

    return _edit_at(clip, tokens, word_token(clip, trigger, trigger_input), trigger, copies, edit, input_name,
                    "right after the class word it stands for")


MODES = ("replace", "after")


def place_word(clip, tokens: dict, word: str, copies: int, mode: str = "replace", input_name: str = "text",
               word_input: str = "word") -> tuple[dict, WordRows]:
    """`tokens` with room for `copies` image tokens at `word`: the word repeated `copies` times (replace: the copies
    are the image tokens' rows) or `copies` copies inserted after it (after: the word keeps its own row)."""
    if mode not in MODES:
        raise InfuseError(f"mode must be one of {MODES}, got {mode!r}.", "pick replace or after.", input_name="mode")
    keep = 1 if mode == "after" else 0

    def edit(batch, i, tokenizer):
        return batch[:i + keep] + [batch[i]] * copies + batch[i + 1:], i + keep

    return _edit_at(clip, tokens, word_token(clip, word, word_input), word, copies, edit, input_name,
                    "where the image stands")


def _edit_at(clip, tokens: dict, token_id: int, word: str, copies: int, edit, input_name: str, place: str):
    out, where = {}, set()
    for key, batches in tokens.items():
        spots = [(b, i) for b, batch in enumerate(batches) for i, t in enumerate(batch) if t[0] == token_id]
        if len(spots) != 1:
            said = "does not contain" if not spots else f"contains {len(spots)} times"
            raise InfuseError(f"the prompt {said} the word {word!r}.",
                              f"write {word!r} once, {place}, e.g. 'a photo of a man {word}, in the snow'.",
                              input_name=input_name)
        b, i = spots[0]
        batch, tokenizer = batches[b], _tokenizer(clip, key)
        edited, row = edit(batch, i, tokenizer)
        out[key] = batches[:b] + [_fit(edited, len(batch), tokenizer, copies, input_name)] + batches[b + 1:]
        where.add(b * len(batch) + row)
    if len(where) != 1:         # CLIP-L and CLIP-G split the prompt the same way; a custom tokenizer might not
        raise InfuseError(f"the prompt's encoders place the word {word!r} at different tokens.",
                          "simplify the prompt around it.", input_name=input_name)
    return out, WordRows(where.pop(), copies)


def _fit(batch: list, length: int, tokenizer, copies: int, input_name: str) -> list:
    """The batch at `length` tokens: trailing padding dropped (the end token kept) or added."""
    pad, end = tokenizer.pad_token, tokenizer.end_token
    while len(batch) > length and batch[-1][0] == pad and batch[-2][0] in (pad, end):
        batch = batch[:-1]
    if len(batch) > length:
        raise InfuseError(f"the prompt is too long for {copies} image tokens in its {length}-token chunk.",
                          "shorten the prompt, or use fewer reference images.", input_name=input_name)
    filler = (pad, 1.0, 0)[:len(batch[-1])]
    return batch + [filler] * (length - len(batch))


def replace_rows(cond, at: WordRows, rows, combine=None):
    """A copy of the encoded prompt [1, T, C] with its rows at `at` set to `rows` [R, C] (or combine(text, rows))."""
    out = cond.clone()
    rows = rows.to(cond.device)[None]
    out[:, at.rows] = (rows if combine is None else combine(cond[:, at.rows].float(), rows)).to(cond.dtype)
    return out


def token_replace_conditioning(clip, text: str, word: str, rows, mode: str = "replace", start_percent: float = 0.0,
                               end_percent: float = 1.0) -> list:
    """A CONDITIONING of `text` with image tokens `rows` [R, C] at `word` (replacing it, or after it) inside the
    range, and the prompt as written outside it. The rows must have the text embedding's width."""
    from ..patching.gate import ApplyTo
    from ..patching.surfaces.conditioning import ConditioningGate, gated

    tokens = clip.tokenize(text)
    placed, at = place_word(clip, tokens, word, rows.shape[0], mode)
    gate = ConditioningGate(1.0, start_percent, end_percent, ApplyTo.COND)
    cond, pooled = clip.encode_from_tokens(placed, return_pooled=True)
    if rows.shape[-1] != cond.shape[-1]:
        raise InfuseError(f"the image tokens are {rows.shape[-1]} wide; this CLIP's text embeddings are "
                          f"{cond.shape[-1]} wide.", "give embeds projected to the text width (SDXL: 2048, SD1.5: "
                          "768), or use the CLIP of the model they were made for.", input_name="embeds")
    plain, plain_pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    edited = replace_rows(cond, at, rows)
    positive, _ = gated([[plain, {"pooled_output": plain_pooled}]], [], gate,
                        lambda embeds, options, branch: (edited, {**options, "pooled_output": pooled}))
    return positive
