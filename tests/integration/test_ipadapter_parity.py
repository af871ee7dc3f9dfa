"""IP-Adapter number for number: ComfyUI's UNet patched by Infuse vs diffusers' UNet with the same weights
and the same adapter loaded by diffusers' own IP-Adapter loader (test-only reference)."""
import pytest
import torch

from comfyui_infuse.core.records import FaceEmbeds, ImageEmbeds
from comfyui_infuse.mechanisms.decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from comfyui_infuse.mechanisms.loaders.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from support import diffusers_reference as dr
from support import ipadapter_files as f

pytest.importorskip("diffusers")

CLIP_POOLED, CLIP_HIDDEN, SEQ = 48, 40, 17          # small CLIP widths; 17 tokens (16 patches + CLS)
# per family: (UNet-level tolerance: the two UNets already differ by this much without an adapter)
ATOL = {"tiny_sd15": 1e-5, "tiny_sdxl": 5e-5}

VARIANTS = {
    "base": dict(kind="linear", clip_pooled=CLIP_POOLED),
    "plus": dict(kind="resampler", clip_hidden=CLIP_HIDDEN, resampler_dim=128, tokens=16),
    "full_face": dict(kind="mlp", clip_hidden=CLIP_HIDDEN),
    "faceid": dict(kind="faceid", id_dim=512, lora=4),
    "faceid_portrait": dict(kind="faceid", id_dim=512, tokens=16),
    "faceid_plus": dict(kind="faceid_plus", id_dim=512, clip_hidden=CLIP_HIDDEN, lora=4),
    "faceid_portrait_unnorm": dict(kind="resampler", clip_hidden=512, resampler_dim=128, tokens=16),
}


def unet_inputs(name, unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    _, cfg = dr.tiny_models.MODELS[name]
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([400.0, 400.0])
    ctx = torch.randn(2, 77, cfg["context_dim"], generator=g)
    comfy_kw, diff_kw = {}, {}
    if cfg.get("adm_in_channels"):
        text = torch.randn(2, cfg["adm_in_channels"] - 6 * 256, generator=g)
        time_ids = torch.tensor([[512.0, 512, 0, 0, 512, 512]] * 2)
        comfy_kw["y"] = torch.cat([text, unet.add_time_proj(time_ids.flatten()).reshape(2, -1)], -1)
        diff_kw = {"text_embeds": text, "time_ids": time_ids}
    return x, t, ctx, comfy_kw, diff_kw


def features(n_images, seed=5):
    g = torch.Generator().manual_seed(seed)
    embeds = ImageEmbeds("test", torch.randn(n_images, CLIP_POOLED, generator=g),
                         torch.randn(n_images, SEQ, CLIP_HIDDEN, generator=g), torch.randn(1, SEQ, CLIP_HIDDEN, generator=g))
    faces = FaceEmbeds.from_raw("test", torch.randn(n_images, 512, generator=g) * 20)
    return embeds, faces


def comfy_forward(model, x, t, ctx, comfy_kw):
    to = dict(model.model_options["transformer_options"], cond_or_uncond=[0], sigmas=torch.tensor([1.0, 1.0]))
    with torch.no_grad():
        return model.model.diffusion_model(x, t, context=ctx, transformer_options=to, **comfy_kw)


def diffusers_image_embeds(variant, embeds, faces, unet):
    """diffusers' input convention: one [batch, images, ...] tensor per adapter."""
    two = lambda t: t[None].expand(2, *t.shape)
    if variant == "base":
        return two(embeds.pooled)
    if variant in ("plus", "full_face"):
        return two(embeds.hidden)
    if variant == "faceid_plus":
        layer = unet.encoder_hid_proj.image_projection_layers[0]
        layer.clip_embeds, layer.shortcut, layer.shortcut_scale = two(embeds.hidden), True, 0.8
    if variant == "faceid_portrait_unnorm":
        return two(faces.embedding[:, None])
    return two(faces.normed)


@pytest.mark.parametrize("n_images", [1, 2], ids=["1 image", "2 images concat"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", ["tiny_sd15", "tiny_sdxl"])
def test_unet_with_adapter_matches_diffusers(tiny, name, variant, n_images):
    model = tiny.build_model(name, seed=11)
    sites = model_sites(model)
    _, cfg = tiny.MODELS[name]
    spec = dict(VARIANTS[variant])
    lora_rank = spec.pop("lora", None)          # FaceID files carry a LoRA; diffusers' loader ignores it
    image_proj = f.image_proj(spec.pop("kind"), seed=3, cross=cfg["context_dim"], **spec)
    ip_layers = f.ip_layers([s.inner_dim for s in sites], cfg["context_dim"], seed=4, lora_rank=lora_rank)
    adapter = parse_ipadapter({"image_proj": image_proj, "ip_adapter": ip_layers}, "test.bin")
    assert adapter.variant == variant and adapter.family == name.removeprefix("tiny_")

    embeds, faces = features(n_images)
    unet = dr.load_ip_adapter(dr.diffusers_unet(name, model), image_proj, ip_layers, scale=0.7)
    x, t, ctx, comfy_kw, diff_kw = unet_inputs(name, unet)
    with torch.no_grad():
        diff_kw["image_embeds"] = [diffusers_image_embeds(variant, embeds, faces, unet)]
        expected = unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=diff_kw).sample

    cond, uncond = image_tokens(adapter, embeds=embeds, faces=faces, faceid_v2=True, faceid_v2_weight=0.8)
    patched = model.clone()
    apply_ipadapter(patched, adapter, cond, uncond, weight=0.7)
    ours = comfy_forward(patched, x, t, ctx, comfy_kw)
    plain = comfy_forward(model, x, t, ctx, comfy_kw)

    assert (ours - plain).abs().max() > 100 * ATOL[name]            # the adapter does something
    torch.testing.assert_close(ours, expected, rtol=0, atol=ATOL[name])
