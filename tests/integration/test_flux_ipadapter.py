"""Flux IP-Adapters on a tiny Flux (ComfyUI's classes, random weights), number for number: XLabs against diffusers'
FluxTransformer2DModel with the same file loaded by diffusers' own load_ip_adapter; InstantX against its ComfyUI
pack's block forwards restated (support/instantx_reference.py). Files are written in the published layouts and read
by the pack's loader."""
import pytest
import torch

from comfyui_infuse.core.records import ImageEmbeds
from comfyui_infuse.mechanisms.decoupled_attention.flux_attention import apply_flux_ipadapter, flux_image_tokens
from comfyui_infuse.mechanisms.loaders.ipadapter_file import load_ipadapter
from support import diffusers_flux as df
from support import flux_adapter_files as ff
from support import instantx_reference, tiny_flux

WIDTH = tiny_flux.TINY_FLUX_UNET["hidden_size"]
DOUBLE, SINGLE = tiny_flux.TINY_FLUX_UNET["depth"], tiny_flux.TINY_FLUX_UNET["depth_single_blocks"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("flux_ipadapters")
    ff.write_xlabs(d / "flux-ip-adapter.safetensors", ff.xlabs(WIDTH, DOUBLE, tokens=4))
    ff.write_xlabs(d / "flux-ip-adapter-v2.safetensors", ff.xlabs(WIDTH, DOUBLE, tokens=16, seed=1))
    ff.write_instantx(d / "ip-adapter.bin", *ff.instantx(WIDTH, DOUBLE + SINGLE, seed=2))
    ff.write_instantx(d / "ip-adapter.safetensors", *ff.instantx(WIDTH, DOUBLE + SINGLE, seed=2))
    return d


@pytest.fixture(scope="module")
def flux():
    return tiny_flux.build_model(seed=1)


def pooled(n, width, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=g)
    return ImageEmbeds("test", x, torch.zeros(n, 1, 1), torch.zeros(1, 1, 1))


@pytest.mark.parametrize("file,variant,tokens", [("flux-ip-adapter.safetensors", "XLabs v1", 4),
                                                 ("flux-ip-adapter-v2.safetensors", "XLabs v2", 16),
                                                 ("ip-adapter.bin", "InstantX", 4),
                                                 ("ip-adapter.safetensors", "InstantX", 4)])
def test_files_are_recognised_from_their_keys(files, file, variant, tokens):
    adapter = load_ipadapter(str(files / file))
    assert adapter.family == "flux" and adapter.tokens == tokens
    assert adapter.describe().startswith(f"Flux IP-Adapter {variant} (")
    assert len(adapter.layers) == (DOUBLE + SINGLE if variant == "InstantX" else DOUBLE)


@pytest.mark.parametrize("n_images", [1, 2], ids=["1 image", "2 images concat"])
@pytest.mark.parametrize("file", ["flux-ip-adapter.safetensors", "flux-ip-adapter-v2.safetensors"])
def test_xlabs_matches_diffusers(files, flux, file, n_images):
    from diffusers import FluxPipeline

    reference = df.diffusers_flux(flux)
    pipe = FluxPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
                        tokenizer_2=None, transformer=reference)
    pipe.load_ip_adapter(str(files), weight_name=file, image_encoder_pretrained_model_name_or_path=None)
    pipe.set_ip_adapter_scale(0.7)

    embeds = pooled(n_images, ff.CLIP_L_POOLED)
    adapter = load_ipadapter(str(files / file))
    cond, uncond = flux_image_tokens(adapter, embeds)
    patched = flux.clone()
    apply_flux_ipadapter(patched, adapter, cond, uncond, weight=0.7)

    inputs = df.inputs(4)
    ours = df.comfy_forward(patched, **inputs)
    theirs = df.diffusers_forward(reference, **inputs, ip_adapter_image_embeds=[embeds.pooled[None]])
    plain = df.comfy_forward(flux, **inputs)
    assert (ours - plain).abs().max() > 1e-2                  # the adapter does something here
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("n_images", [1, 2], ids=["1 image", "2 images concat"])
def test_instantx_matches_its_published_formula(files, flux, n_images):
    adapter = load_ipadapter(str(files / "ip-adapter.bin"))
    embeds = pooled(n_images, ff.SIGLIP_POOLED)
    cond, uncond = flux_image_tokens(adapter, embeds, uncond_same=True)
    patched = flux.clone()
    apply_flux_ipadapter(patched, adapter, cond, uncond, weight=0.8)

    image_proj, ip_layers = ff.instantx(WIDTH, DOUBLE + SINGLE, seed=2)
    emb = torch.cat([ref_projection(image_proj, embeds.pooled[i:i + 1]) for i in range(n_images)], 1)
    reference = flux.clone()
    instantx_reference.install(reference, emb, [(ip_layers[f"{i}.to_k_ip.weight"], ip_layers[f"{i}.to_v_ip.weight"])
                                                for i in range(DOUBLE + SINGLE)], scale=0.8)
    inputs = df.inputs(5)
    ours = df.comfy_forward(patched, **inputs)
    assert (ours - df.comfy_forward(flux, **inputs)).abs().max() > 1e-2
    torch.testing.assert_close(ours, df.comfy_forward(reference, **inputs), atol=1e-4, rtol=0)


def ref_projection(sd, pooled_embeds):
    """InstantX's MLPProjModel: Linear, GELU, Linear, reshape to tokens, LayerNorm."""
    x = torch.nn.functional.linear(pooled_embeds, sd["proj.0.weight"], sd["proj.0.bias"])
    x = torch.nn.functional.linear(torch.nn.functional.gelu(x), sd["proj.2.weight"], sd["proj.2.bias"])
    x = x.reshape(-1, x.shape[-1] // ff.TOKEN_DIM, ff.TOKEN_DIM)
    return torch.nn.functional.layer_norm(x, (ff.TOKEN_DIM,), sd["norm.weight"], sd["norm.bias"], eps=1e-5)


def test_a_foreign_block_patch_gets_the_block_args_comfyui_gives(files, flux):
    """XLabs reads each block's query; under another pack's "dit" patch it projects it rather than hand that patch
    an attention override, and the result is the same."""
    from comfyui_infuse.mechanisms.patching.surfaces import dit

    seen = []

    def foreign(args, extra):
        seen.append("optimized_attention_override" in (args.get("transformer_options") or {}))
        return extra["original_block"](args)

    adapter = load_ipadapter(str(files / "flux-ip-adapter-v2.safetensors"))
    cond, uncond = flux_image_tokens(adapter, pooled(1, ff.CLIP_L_POOLED))
    under, alone = flux.clone(), flux.clone()
    for site in dit.block_sites(under):
        under.set_model_patch_replace(foreign, "dit", site.kind, site.index)
    apply_flux_ipadapter(under, adapter, cond, uncond, weight=0.7)
    apply_flux_ipadapter(alone, adapter, cond, uncond, weight=0.7)
    inputs = df.inputs(9)
    torch.testing.assert_close(df.comfy_forward(under, **inputs), df.comfy_forward(alone, **inputs), atol=1e-5, rtol=0)
    assert seen and not any(seen)
