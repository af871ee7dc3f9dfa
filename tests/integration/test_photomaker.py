"""PhotoMaker number for number: v1's fused embedding against ComfyUI core's own PhotoMaker encoder (an independent
implementation) on the same real-size weights; v2 against the published formula restated (support/
photomaker_reference.py); the edited conditioning against the reference pipeline's prompt embeds (its token
expansion, ComfyUI's CLIP text encoders of a tiny SDXL, the reference fuse), token for token. Files are written in
the published layout and read by the pack's loader."""
import pytest
import torch

from comfyui_infuse.mechanisms.loaders.photomaker_file import load_photomaker
from comfyui_infuse.mechanisms.text_embedding.photomaker import photomaker_conditioning
from support import photomaker_files as pf
from support import photomaker_reference as ref

ATOL = 1e-5


def pixels(n: int, seed: int = 0, size: int = 224) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def as_core_stores_it(sd: dict) -> dict:
    """Core keeps its CLIP tower's embeddings and encoder layers in fp16 (text_encoder_dtype): the same values here."""
    return {k: v.half().float() if k.startswith(("vision_model.embeddings.", "vision_model.encoder.")) else v
            for k, v in sd.items()}


def test_v1_fused_embedding_equals_core_photomaker(tmp_path):
    from comfy_extras.nodes_photomaker import PhotoMakerIDEncoder

    sd = as_core_stores_it(pf.id_encoder_v1(seed=3))
    path = pf.write(tmp_path / "photomaker-v1.bin", sd, {})
    core = PhotoMakerIDEncoder()
    core.load_state_dict(sd)
    ours = load_photomaker(str(path))
    assert ours.version == "v1"
    x = pixels(2)
    prompt = torch.randn(1, 77, 2048, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 77, dtype=torch.bool)
    mask[0, 5:7] = True                                      # the class word twice: one copy per photo
    with torch.no_grad():
        expected = core(id_pixel_values=x[None], prompt_embeds=prompt.clone(), class_tokens_mask=mask)
        fused = prompt.clone()
        fused[mask] = ours.encoder.fuse_module(prompt[mask], ours.encoder.id_rows(x))
    torch.testing.assert_close(fused, expected, atol=ATOL, rtol=0)
    assert torch.equal(fused[~mask], prompt[~mask])


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_v2_id_rows_and_fuse_match_the_published_formula(tmp_path, suffix):
    tower = dict(layers=4)                                   # the real width and layout, fewer layers
    sd = pf.id_encoder_v2(seed=4, **tower)
    ours = load_photomaker(str(pf.write(tmp_path / f"photomaker-v2{suffix}", sd, {})))
    assert ours.version == "v2" and ours.encoder.tokens == 2
    x, arcface = pixels(2, seed=2), torch.randn(2, 512, generator=torch.Generator().manual_seed(3)) * 20
    prompt = torch.randn(1, 77, 2048, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, 77, dtype=torch.bool)
    mask[0, 3:7] = True                                      # 2 photos x 2 tokens
    with torch.no_grad():
        rows = ours.encoder.id_rows(x, arcface)
        torch.testing.assert_close(rows, ref.id_embeds_v2(sd, x, arcface).reshape(4, 2048), atol=ATOL, rtol=0)
        fused = prompt.clone()
        fused[mask] = ours.encoder.fuse_module(prompt[mask], rows)
        expected = ref.encode_v2(sd, x[None], arcface[None], prompt, mask)
    torch.testing.assert_close(fused, expected, atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def sdxl_clip(tiny, tmp_path_factory):
    import comfy.sd

    path = tiny.write_checkpoint(tmp_path_factory.mktemp("pm_ckpt") / "tiny_sdxl.safetensors", "tiny_sdxl", seed=0)
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    return clip


def reference_prompt_embeds(clip, text: str, trigger_id: int, n_images: int, tokens_per_image: int):
    """The reference pipeline's prompt embeds: its class-token expansion on each tokenizer's ids (CLIP-L pads with
    its end token, CLIP-G with 0), encoded by the same CLIP text encoders; and its class_tokens_mask."""
    tokens, mask = {}, None
    for key, pad in (("l", 49407), ("g", 0)):
        ids = getattr(clip.tokenizer, f"clip_{key}").tokenizer(text)["input_ids"]
        ids, mask = ref.class_token_expansion(ids, trigger_id, n_images, tokens_per_image, pad)
        tokens[key] = [[(i, 1.0) for i in ids]]
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return cond, pooled, torch.tensor(mask)[None]


def tiny_photomaker(tmp_path, clip, version: str):
    """A PhotoMaker file whose projections / fuse module have the tiny SDXL's text widths (CLIP-L, CLIP-G)."""
    cond, _ = clip.encode_from_tokens(clip.tokenize("x"), return_pooled=True)
    l_width = clip.cond_stage_model.clip_l.transformer.text_model.embeddings.token_embedding.weight.shape[1]
    make = pf.id_encoder_v2 if version == "v2" else pf.id_encoder_v1
    sd = make(seed=5, layers=2, width=64, heads=1, projections=(l_width, cond.shape[-1] - l_width))
    return sd, load_photomaker(str(pf.write(tmp_path / f"photomaker-{version}.bin", sd, {})))


@pytest.mark.parametrize("version,n_images", [("v1", 1), ("v1", 3), ("v2", 2)])
def test_conditioning_equals_the_reference_pipeline_token_for_token(tmp_path, sdxl_clip, version, n_images):
    clip = sdxl_clip
    sd, pm = tiny_photomaker(tmp_path, clip, version)
    x = pixels(n_images, seed=6)
    arcface = torch.randn(n_images, 512, generator=torch.Generator().manual_seed(7)) * 20 if version == "v2" else None
    text = "a photo of a man img, in the snow"
    with torch.no_grad():
        rows = pm.encoder.id_rows(x, arcface)
        positive = photomaker_conditioning(clip, text, "img", pm.encoder.fuse_module, rows)
        trigger = clip.tokenizer.clip_l.tokenizer("img")["input_ids"][1]
        cond, pooled, mask = reference_prompt_embeds(clip, text, trigger, n_images, pm.encoder.tokens)
        ids = ref.id_embeds_v2(sd, x, arcface) if version == "v2" else ref.id_embeds_v1(sd, x)
        expected = ref.fuse(sd, cond, ids[None], mask)
    assert len(positive) == 1                                       # full range: one entry, the ID prompt
    embeds, options = positive[0]
    torch.testing.assert_close(embeds, expected, atol=ATOL, rtol=0)
    assert torch.equal(embeds[~mask], cond[~mask]) and torch.equal(options["pooled_output"], pooled)


def test_before_start_percent_the_prompt_acts_without_the_trigger(tmp_path, sdxl_clip):
    clip = sdxl_clip
    _, pm = tiny_photomaker(tmp_path, clip, "v1")
    with torch.no_grad():
        rows = pm.encoder.id_rows(pixels(1))
        positive = photomaker_conditioning(clip, "a photo of a man img, in the snow", "img", pm.encoder.fuse_module,
                                           rows, start_percent=0.25)
        plain, plain_pooled = clip.encode_from_tokens(clip.tokenize("a photo of a man, in the snow"),
                                                      return_pooled=True)
    (with_id, id_options), (text_only, text_options) = positive
    assert (id_options["start_percent"], id_options["end_percent"]) == (0.25, 1.0)
    assert (text_options["start_percent"], text_options["end_percent"]) == (0.0, 0.25)
    assert torch.equal(text_only, plain) and torch.equal(text_options["pooled_output"], plain_pooled)
    assert not torch.equal(with_id, plain)
