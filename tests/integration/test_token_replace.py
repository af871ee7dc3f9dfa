"""Token replace on ComfyUI's own tokens and CLIP text encoders (a tiny SDXL checkpoint's): image tokens in place of,
or after, a placeholder word, row for row; the prompt as written outside the start / end range; PhotoMaker's class
word expansion is the same edit; bad input named."""
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.core.records import ImageEmbeds
from comfyui_infuse.mechanisms.text_embedding.token_replace import expand_word, place_word
from comfyui_infuse.nodes.token_nodes import InfuseTokenReplace

TEXT = "a photo of sks in the snow"


@pytest.fixture(scope="module")
def env(tiny, tmp_path_factory):
    import comfy.sd

    path = tiny.write_checkpoint(tmp_path_factory.mktemp("tr_ckpt") / "tiny_sdxl.safetensors", "tiny_sdxl", seed=0)
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    width = clip.encode_from_tokens(clip.tokenize("x"), return_pooled=True)[0].shape[-1]
    return dict(model=model, clip=clip, width=width)


def embeds(n: int, width: int, seed: int = 0) -> ImageEmbeds:
    pooled = torch.randn(n, width, generator=torch.Generator().manual_seed(seed))
    return ImageEmbeds("test", pooled, torch.zeros(n, 1, 1), torch.zeros(1, 1, 1))


def run(env, **kw):
    args = dict(clip=env["clip"], text=TEXT, word="sks", embeds=embeds(2, env["width"]), mode="replace",
                start_percent=0.0, end_percent=1.0)
    return InfuseTokenReplace.execute(**(args | kw)).args[0]


def encode(clip, tokens):
    return clip.encode_from_tokens(tokens, return_pooled=True)


@pytest.mark.parametrize("mode,first_row,word_row", [("replace", 4, None), ("after", 5, 4)])
def test_image_tokens_take_their_rows_and_the_rest_is_the_encoded_prompt(env, mode, first_row, word_row):
    clip, e = env["clip"], embeds(2, env["width"])
    (cond, options), = run(env, mode=mode, embeds=e)
    placed, at = place_word(clip, clip.tokenize(TEXT), "sks", 2, mode)
    expected, pooled = encode(clip, placed)
    assert at.rows == slice(first_row, first_row + 2)
    assert torch.equal(cond[0, at.rows], e.pooled) and torch.equal(options["pooled_output"], pooled)
    rest = torch.ones(cond.shape[1], dtype=torch.bool)
    rest[at.rows] = False
    assert torch.equal(cond[0, rest], expected[0, rest])
    sks = clip.tokenizer.clip_l.tokenizer("sks")["input_ids"][1]
    ids = [t[0] for t in placed["l"][0]]
    assert ids[first_row:first_row + 2] == [sks, sks] and (word_row is None or ids[word_row] == sks)
    assert ids[:4] == [t[0] for t in clip.tokenize(TEXT)["l"][0][:4]]


def test_outside_the_range_the_prompt_acts_as_written(tiny, env):
    clip = env["clip"]
    plain, plain_pooled = encode(clip, clip.tokenize(TEXT))
    inside, outside = run(env, start_percent=0.5)
    assert (outside[1]["start_percent"], outside[1]["end_percent"]) == (0.0, 0.5)
    assert torch.equal(outside[0], plain) and torch.equal(outside[1]["pooled_output"], plain_pooled)
    negative = [[plain, {"pooled_output": plain_pooled}]]
    sample = lambda positive: tiny.sample(env["model"], positive, negative)
    assert torch.equal(sample(run(env, start_percent=1.0)), sample(negative))
    assert not torch.equal(sample(run(env)), sample(negative))


def test_photomakers_class_word_is_the_same_edit(env):
    clip = env["clip"]
    photomaker, at = expand_word(clip, clip.tokenize("a photo of a man img, in the snow"), "img", 3)
    replaced, at_too = place_word(clip, clip.tokenize("a photo of a man, in the snow"), "man", 3)
    assert photomaker == replaced and at == at_too


@pytest.mark.parametrize("kw,input_name,text", [
    (dict(text="a photo in the snow"), "text", "the prompt does not contain the word 'sks'"),
    (dict(word="photomaker", text="a photomaker"), "word", "is 2 tokens in CLIP's vocabulary"),
    (dict(embeds="narrow"), "embeds", "the image tokens are 7 wide; this CLIP's text embeddings are"),
    (dict(embeds="many"), "text", "the prompt is too long for 80 image tokens"),
])
def test_bad_input_is_named(env, kw, input_name, text):
    kw = dict(kw)
    if kw.get("embeds") == "narrow":
        kw["embeds"] = embeds(1, 7)
    elif kw.get("embeds") == "many":
        kw["embeds"] = embeds(80, env["width"])
    with pytest.raises(InfuseError) as e:
        run(env, **kw)
    assert str(e.value).startswith(f"Infuse Token Replace, input '{input_name}': ") and text in str(e.value), \
        str(e.value)
