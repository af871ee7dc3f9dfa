"""The CLIP image extractor: CLIP preprocessing, ComfyUI CLIP_VISION and open-clip towers agree."""
import comfy.clip_vision
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.extractors.clip_vision import ComfyClipVision, as_rgb, encode, load_open_clip, preprocess
from support import clip_models


def image(b=1, h=48, w=80, c=3, seed=0):
    return torch.rand(b, h, w, c, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode, comfy_crop", [("crop", True), ("squash", False)])
def test_preprocess_equals_comfyui_clip_preprocess(mode, comfy_crop):
    img = image()
    ours = preprocess(img, 224, mode=mode)
    torch.testing.assert_close(ours, comfy.clip_vision.clip_preprocess(img, size=224, crop=comfy_crop), rtol=0, atol=0)


def test_pad_keeps_the_whole_image_centred_on_black():
    img = torch.ones(1, 20, 40, 3)              # white, wide
    px = preprocess(img, 40, mode="pad")        # padded to 40x40: rows 0-9 and 30-39 are black
    black = preprocess(torch.zeros(1, 40, 40, 3), 40, mode="crop")
    white = preprocess(torch.ones(1, 40, 40, 3), 40, mode="crop")
    assert torch.equal(px[:, :, :10], black[:, :, :10]) and torch.equal(px[:, :, 30:], black[:, :, 30:])
    assert torch.equal(px[:, :, 10:30], white[:, :, 10:30])


def test_grayscale_and_rgba_become_rgb():
    gray = torch.rand(2, 8, 8, 1)
    assert torch.equal(as_rgb(gray)[..., 2], gray[..., 0])
    rgba = torch.rand(1, 8, 8, 4)
    assert torch.equal(as_rgb(rgba), rgba[..., :3])


@pytest.mark.parametrize("bad, message", [(torch.zeros(0, 8, 8, 3), "at least one image"),
                                          (torch.zeros(1, 8, 8, 2), "2 channels"),
                                          (torch.zeros(1, 9000, 8, 3), "9000")])
def test_bad_image_batches_are_refused(bad, message):
    with pytest.raises(InfuseError, match=message):
        as_rgb(bad)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    work = tmp_path_factory.mktemp("clip")
    clip_models.register_tiny_open_clip(work)
    path = work / "tiny_open_clip.safetensors"
    sd = clip_models.write_open_clip(path, seed=3)
    return path, sd, work


def test_open_clip_tower_matches_comfyui_clip_vision_with_the_same_weights(tiny_clip):
    path, sd, work = tiny_clip
    ours = load_open_clip(clip_models.TINY_ARCH, str(path))
    comfy_cv = ComfyClipVision(clip_models.comfy_clip_vision_from_open_clip(sd, work))
    px = preprocess(image(2), 32, mode="crop")
    pooled_a, hidden_a = ours(px)
    pooled_b, hidden_b = comfy_cv(px)
    assert hidden_a.shape == (2, 17, 40) and pooled_a.shape == (2, 24)       # CLS + 16 patches; embed width
    torch.testing.assert_close(pooled_a, pooled_b, rtol=0, atol=1e-5)
    torch.testing.assert_close(hidden_a, hidden_b, rtol=0, atol=1e-5)


def test_encode_batch_and_zero_image(tiny_clip):
    path, _, _ = tiny_clip
    enc = load_open_clip(clip_models.TINY_ARCH, str(path))
    embeds = encode(enc, image(3), mode="pad")
    assert len(embeds) == 3 and embeds.encoder == f"open_clip:{clip_models.TINY_ARCH}"
    _, zero_hidden = enc(torch.zeros(1, 3, 32, 32))
    assert torch.equal(embeds.uncond_hidden, zero_hidden)
    single = encode(enc, image(3)[1:2], mode="pad")
    torch.testing.assert_close(single.hidden[0], embeds.hidden[1], rtol=0, atol=1e-6)


def test_open_clip_errors_name_the_architecture_and_file(tiny_clip):
    path, _, _ = tiny_clip
    with pytest.raises(InfuseError, match="no architecture 'ViT-Nope'"):
        load_open_clip("ViT-Nope", str(path))
    with pytest.raises(InfuseError, match="does not hold a ViT-B-32 image tower"):
        load_open_clip("ViT-B-32", str(path))
