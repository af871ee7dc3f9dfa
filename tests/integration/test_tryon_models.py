"""IDM-VTON's UNets converted into ComfyUI's layout, number for number against the diffusers-format originals
(diffusers as the test-only reference): the try-on UNet with its image prompt, the garment UNet and the
self-attention inputs it hands over, and one full try-on step with the garment features concatenated."""
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.core.records import ImageEmbeds
from comfyui_infuse.mechanisms.decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from comfyui_infuse.mechanisms.loaders.tryon_models import load_garment_unet, load_tryon_unet
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.mechanisms.recipes import idm_vton
from support import diffusers_reference as dr
from support import tryon_files

pytest.importorskip("diffusers")

NODE = "Infuse Load IDM-VTON"
ATOL = 1e-4


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return tryon_files.write_release(tmp_path_factory.mktemp("idm_vton"), seed=0)


@pytest.fixture(scope="module")
def loaded(release):
    model, adapter = load_tryon_unet(str(release["tryon"]))
    return model, adapter, load_garment_unet(str(release["garment"]))


def inputs(unet, channels=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    ctx_dim = unet.config.cross_attention_dim
    x = torch.randn(2, channels, 8, 8, generator=g)
    t = torch.tensor([400.0, 400.0])
    ctx = torch.randn(2, 77, ctx_dim, generator=g)
    text = torch.randn(2, unet.config.projection_class_embeddings_input_dim - 6 * 256, generator=g)
    time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)
    y = torch.cat([text, unet.add_time_proj(time_ids.flatten()).reshape(2, -1)], -1)
    return x, t, ctx, y, {"text_embeds": text, "time_ids": time_ids}


def garment_embeds(seed=5):
    g = torch.Generator().manual_seed(seed)
    return ImageEmbeds("test", torch.randn(1, 1024, generator=g), torch.randn(1, 17, tryon_files.CLIP_HIDDEN, generator=g),
                       torch.randn(1, 17, tryon_files.CLIP_HIDDEN, generator=g))


def comfy_forward(model, x, t, ctx, cond_or_uncond=(1, 0), **kw):
    to = dict(model.model_options["transformer_options"], cond_or_uncond=list(cond_or_uncond),
              sigmas=torch.tensor([1.0] * x.shape[0]))
    with torch.no_grad():
        return model.model.diffusion_model(x, t, context=ctx, transformer_options=to, **kw)


def test_the_release_layout_is_read_as_a_13_channel_sdxl_unet_with_an_image_prompt(loaded):
    model, adapter, garment = loaded
    assert model.model.diffusion_model.in_channels == 13 and len(model_sites(model)) == 70
    assert adapter.variant == "plus" and adapter.tokens == 16 and adapter.image_dim == tryon_files.CLIP_HIDDEN
    assert len(adapter.kv) == 70 and model.model.infuse_tryon_adapter is adapter
    assert garment.model.diffusion_model.num_classes is None and garment.model.diffusion_model.in_channels == 4


def test_tryon_unet_with_its_image_prompt_matches_diffusers(release, loaded):
    model, adapter, _ = loaded
    unet = dr.load_ip_adapter(tryon_files.diffusers_unet(tryon_files.diffusers_config(), 0), **release["image_prompt"])
    unet.load_state_dict({k: v for k, v in release["tryon_unet"].state_dict().items()}, strict=False)
    x, t, ctx, y, added = inputs(unet)
    embeds = garment_embeds()
    with torch.no_grad():
        # IDM-VTON's CFG batch: [uncond (the encoder's zero image), cond]
        added["image_embeds"] = [torch.stack([embeds.uncond_hidden, embeds.hidden])]
        expected = unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
    cond, uncond = image_tokens(adapter, embeds=embeds)
    patched = model.clone()
    apply_ipadapter(patched, adapter, cond, uncond, weight=1.0)
    ours = comfy_forward(patched, x, t, ctx, y=y)
    plain = comfy_forward(model, x, t, ctx, y=y)
    assert (ours - plain).abs().max() > 100 * ATOL
    torch.testing.assert_close(ours, expected, rtol=0, atol=ATOL)


def _attn1_inputs(unet):
    """Forward pre-hooks on every attn1 of a diffusers UNet: its hidden-state input, in processor order."""
    seen, handles = {}, []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            module = unet.get_submodule(name.removesuffix(".processor"))
            handles.append(module.register_forward_pre_hook(
                lambda m, args, kwargs, name=name: seen.__setitem__(name, (kwargs.get("hidden_states", args[0] if args else None))),
                with_kwargs=True))
    return seen, handles


def test_garment_unet_and_the_features_it_hands_over_match_diffusers(release, loaded):
    model, _, garment = loaded
    unet = release["garment_unet"]
    g = torch.Generator().manual_seed(2)
    latent = torch.randn(1, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    t = torch.tensor([500.0])
    seen, handles = _attn1_inputs(unet)
    with torch.no_grad():
        expected = unet(latent, t, encoder_hidden_states=ctx).sample
    for h in handles:
        h.remove()
    ours = comfy_forward(garment, latent, t, ctx, cond_or_uncond=(0,))
    torch.testing.assert_close(ours, expected, rtol=0, atol=ATOL)

    contribution = idm_vton.ReferenceAttention(NODE, "concat", latent, {}, source=garment, noised=False, context=ctx)
    sigma = garment.model.model_sampling.sigma(t)
    contribution.capture(model.model, sigma, ctx, {"cond_or_uncond": [0]}, {})
    sites = model_sites(model)
    assert len(seen) == len(sites) == len(contribution.features)
    order = [n for n in unet.attn_processors if n in seen]   # processor order = site order (not forward order)
    for site, name in zip(sites, order):
        torch.testing.assert_close(contribution.features[site.key], seen[name], rtol=0, atol=ATOL)


class GarmentConcat:
    """IDM-VTON's self-attention, written out: attn1(cat([x, garment])) keeping the first N tokens."""

    def __init__(self, features: torch.Tensor):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.features, self.plain = features, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        n = hidden_states.shape[1]
        return self.plain(attn, torch.cat([hidden_states, self.features], dim=1))[:, :n]


def test_one_tryon_step_with_garment_features_matches_diffusers(release, loaded):
    """Try-on UNet + image prompt + garment features (zeros on the uncond row) against IDM-VTON's formulas."""
    model, adapter, garment = loaded
    tryon_unet = dr.load_ip_adapter(tryon_files.diffusers_unet(tryon_files.diffusers_config(), 0),
                                    **release["image_prompt"])
    tryon_unet.load_state_dict(release["tryon_unet"].state_dict(), strict=False)
    garment_unet = release["garment_unet"]
    x, t, ctx, y, added = inputs(tryon_unet, seed=4)
    g = torch.Generator().manual_seed(6)
    cloth = torch.randn(1, 4, 8, 8, generator=g)
    cloth_ctx = torch.randn(1, 77, tryon_unet.config.cross_attention_dim, generator=g)
    embeds = garment_embeds()

    seen, handles = _attn1_inputs(garment_unet)
    with torch.no_grad():
        garment_unet(cloth, t[:1], encoder_hidden_states=cloth_ctx)
    for h in handles:
        h.remove()
    processors = dict(tryon_unet.attn_processors)
    for name, feats in seen.items():
        processors[name] = GarmentConcat(torch.cat([torch.zeros_like(feats), feats]))
    tryon_unet.set_attn_processor(processors)
    with torch.no_grad():
        added["image_embeds"] = [torch.stack([embeds.uncond_hidden, embeds.hidden])]
        expected = tryon_unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample

    patched = model.clone()
    reference, _ = idm_vton.apply_tryon(patched, garment, cloth, cloth_ctx, embeds, adapter)
    reference.capture(patched.model, garment.model.model_sampling.sigma(t[:1]), ctx, {"cond_or_uncond": [1, 0]}, {})
    ours = comfy_forward(patched, x, t, ctx, y=y)
    torch.testing.assert_close(ours, expected, rtol=0, atol=ATOL)


def test_wrong_unets_are_refused_with_named_errors(release, loaded, tmp_path, tiny):
    model, _, garment = loaded
    with pytest.raises(InfuseError, match="takes 4 input channels.*13"):
        load_tryon_unet(str(release["garment"]))
    with pytest.raises(InfuseError, match="input 'garment_unet'.*13 input channels"):
        load_garment_unet(str(release["tryon"]))
    other = tryon_files.write_release(tmp_path / "other", seed=1, tryon_channels=9)
    with pytest.raises(InfuseError, match="takes 9 input channels"):
        load_tryon_unet(str(other["tryon"]))
    with pytest.raises(InfuseError, match="input 'model'.*4 input channels"):
        idm_vton.check_tryon_model(garment)
    with pytest.raises(InfuseError, match="input 'garment_unet'.*do not match"):
        idm_vton.check_garment_unet(model, tiny.build_model("tiny_sd15"))
