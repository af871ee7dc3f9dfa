"""Projection models against diffusers' implementations (test-only reference), fed the same weights
through diffusers' own converter of the published `image_proj` layout."""
import pytest
import torch

from comfyui_infuse.mechanisms.decoupled_attention.projections import projection_from_state_dict
from support import ipadapter_files as f

diffusers_loader = pytest.importorskip("diffusers.loaders.unet")


def reference(sd):
    convert = diffusers_loader.UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers
    return convert(None, {k: v.clone() for k, v in sd.items()}, low_cpu_mem_usage=False).eval()


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name, sd, expect", [
    ("sd15 base / light (real size)", f.image_proj("linear"), "linear"),
    ("sd15 vit-G", f.image_proj("linear", clip_pooled=1280, seed=2), "linear"),
    ("sdxl base (real size)", f.image_proj("linear", cross=2048, clip_pooled=1280, seed=3), "linear"),
])
def test_linear_projection(name, sd, expect):
    kind, ours = projection_from_state_dict(sd)
    assert kind == expect
    x = rand(3, sd["proj.weight"].shape[1])
    torch.testing.assert_close(ours(x), reference(sd)(x), rtol=0, atol=1e-5)
    assert ours(x).shape == (3, 4, sd["norm.weight"].shape[0])


def test_full_face_mlp_projection():
    sd = f.image_proj("mlp", seed=4)
    kind, ours = projection_from_state_dict(sd)
    assert kind == "mlp"
    x = rand(2, 257, 1280)
    torch.testing.assert_close(ours(x), reference(sd)(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dims", [dict(), dict(cross=160, clip_hidden=96, resampler_dim=128, tokens=8)],
                         ids=["sd15 plus (real size)", "small, 2 heads, 8 queries"])
def test_resampler(dims):
    sd = f.image_proj("resampler", seed=5, **dims)
    kind, ours = projection_from_state_dict(sd)
    assert kind == "resampler"
    x = rand(2, 257, sd["proj_in.weight"].shape[1])
    out = ours(x)
    torch.testing.assert_close(out, reference(sd)(x), rtol=0, atol=1e-5)
    assert out.shape == (2, sd["latents"].shape[1], sd["norm_out.weight"].shape[0])


@pytest.mark.parametrize("tokens", [4, 16], ids=["faceid", "portrait"])
def test_faceid_projection(tokens):
    sd = f.image_proj("faceid", seed=6, tokens=tokens)
    kind, ours = projection_from_state_dict(sd)
    assert kind == "faceid"
    x = rand(2, 512) * 20        # raw (unnormalised) arcface embeddings have norms around 20
    torch.testing.assert_close(ours(x), reference(sd)(x), rtol=0, atol=1e-5)
    assert ours(x).shape == (2, tokens, 768)


@pytest.mark.parametrize("shortcut, scale", [(False, 1.0), (True, 1.0), (True, 0.6)])
def test_faceid_plus_projection_with_and_without_v2_shortcut(shortcut, scale):
    sd = f.image_proj("faceid_plus", seed=7)
    kind, ours = projection_from_state_dict(sd)
    assert kind == "faceid_plus"
    face, hidden = rand(2, 512, seed=1) * 20, rand(2, 257, 1280, seed=2)
    ref = reference(sd)
    ref.clip_embeds = hidden[:, None]                 # diffusers: [batch, images, seq, dim]
    ref.shortcut, ref.shortcut_scale = shortcut, scale
    torch.testing.assert_close(ours(face, hidden, shortcut, scale), ref(face), rtol=0, atol=1e-5)


def test_unknown_layout_is_rejected():
    with pytest.raises(ValueError, match="unknown image_proj layout"):
        projection_from_state_dict({"something.weight": torch.zeros(2, 2)})


def test_instantid_resampler_at_real_size():
    """InstantID's ip-adapter.bin image_proj: Resampler, proj_in [1280, 512], proj_out [2048, 1280], 16 latents,
    20 heads; it takes the raw face embedding as a 1-token sequence."""
    sd = f.image_proj("resampler", seed=8, cross=2048, clip_hidden=512, resampler_dim=1280, tokens=16)
    assert sd["proj_in.weight"].shape == (1280, 512) and sd["proj_out.weight"].shape == (2048, 1280)
    assert sd["latents"].shape == (1, 16, 1280) and sd["layers.0.0.to_q.weight"].shape == (1280, 1280)
    kind, ours = projection_from_state_dict(sd)
    face = rand(2, 1, 512) * 20
    out = ours(face)
    assert kind == "resampler" and out.shape == (2, 16, 2048)
    torch.testing.assert_close(out, reference(sd)(face), rtol=0, atol=1e-5)
