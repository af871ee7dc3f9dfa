"""PuLID's mechanism number for number against its published code restated (support/pulid_reference.py): the ID
encoders (IDEncoder, IDFormer) at their real sizes; SDXL's ID attention with zero tokens and the ortho / ortho_v2
projections (ComfyUI's tiny SDXL patched by Infuse vs diffusers' UNet with the same weights and the reference's
IDAttnProcessor2_0); PuLID-Flux's CA layers after the blocks (vs the reference's steps as plain patches). Files are
written in the published layouts and read by the pack's loader."""
import pytest
import torch

from comfyui_infuse.mechanisms.decoupled_attention.pulid import apply_pulid_sdxl
from comfyui_infuse.mechanisms.decoupled_attention.pulid_flux import apply_pulid_flux
from comfyui_infuse.mechanisms.loaders.pulid_file import load_pulid
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from support import diffusers_flux as df
from support import diffusers_reference as dr
from support import pulid_files as pf
from support import pulid_reference as ref
from support import tiny_flux

from test_ipadapter_parity import ATOL, comfy_forward, unet_inputs


@pytest.fixture(scope="module")
def encoders():
    return {"v1": pf.id_encoder(seed=0), "v1.1": pf.id_former(seed=1)}


@pytest.fixture(scope="module")
def sdxl(tiny):
    return tiny.build_model("tiny_sdxl", seed=11)


@pytest.fixture(scope="module")
def files(tmp_path_factory, encoders, sdxl):
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("pulid")
    widths = [s.inner_dim for s in model_sites(sdxl)]
    layers = pf.sdxl_layers(widths)
    flat = lambda prefix, sd: {f"{prefix}.{k}": v.contiguous() for k, v in sd.items()}
    torch.save(flat("id_adapter", encoders["v1"]) | layers, d / "pulid_v1.bin")
    save_file(flat("id_adapter", encoders["v1.1"]) | layers, str(d / "pulid_v1.1.safetensors"))
    cubiq = pf.sdxl_layers(widths, names=("ip_adapter", "to_{}_ip"))
    save_file(flat("image_proj", encoders["v1"]) | {k: v.half() for k, v in cubiq.items()},
              str(d / "ip-adapter_pulid_sdxl_fp16.safetensors"))
    n_ca = 1 + 1                                     # tiny Flux: double block 0, single block 0
    save_file(flat("pulid_encoder", encoders["v1.1"]) | pf.flux_ca(n_ca, tiny_flux.TINY_FLUX_UNET["hidden_size"]),
              str(d / "pulid_flux_v0.9.1.safetensors"))
    return d, layers


@pytest.mark.parametrize("file,text", [("pulid_v1.bin", "PuLID SDXL v1 (IDEncoder, 10 ID tokens, 70 cross"),
                                       ("pulid_v1.1.safetensors", "PuLID SDXL v1.1 (IDFormer, 32 ID tokens, 70 cross"),
                                       ("ip-adapter_pulid_sdxl_fp16.safetensors", "PuLID SDXL v1 (IDEncoder"),
                                       ("pulid_flux_v0.9.1.safetensors", "PuLID Flux (IDFormer, 32 ID tokens, 2 ID")])
def test_files_are_recognised_from_their_keys(files, file, text):
    assert load_pulid(str(files[0] / file)).describe().startswith(text)


@pytest.mark.parametrize("version", ["v1", "v1.1"])
def test_encoders_match_the_published_code(files, encoders, version):
    pulid = load_pulid(str(files[0] / {"v1": "pulid_v1.bin", "v1.1": "pulid_v1.1.safetensors"}[version]))
    x, y = pf.features(2)
    reference = (ref.id_encoder if version == "v1" else ref.id_former)(encoders[version], x, y)
    with torch.no_grad():
        ours = pulid.encoder(x, y)
    assert ours.shape == (2, 10 if version == "v1" else 32, pf.TOKEN_DIM)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("num_zero,projection", [(0, "none"), (16, "ortho"), (8, "ortho_v2"), (20, "ortho_v2")])
def test_sdxl_id_attention_matches_the_published_processor(files, sdxl, num_zero, projection):
    pulid = load_pulid(str(files[0] / "pulid_v1.bin"))
    x_id, y_id = pf.features(1, seed=7)
    with torch.no_grad():
        tokens = pulid.encoder(x_id, y_id)
    patched = sdxl.clone()
    apply_pulid_sdxl(patched, pulid.kv, tokens, tokens, "test", num_zero=num_zero, projection=projection, weight=0.8)

    unet = dr.diffusers_unet("tiny_sdxl", sdxl)
    layers, processors, n = files[1], {}, 0
    from diffusers.models.attention_processor import AttnProcessor2_0

    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            processors[name] = ref.IDAttnProcessor2_0(
                layers[f"id_adapter_attn_layers.{n}.id_to_k.weight"], layers[f"id_adapter_attn_layers.{n}.id_to_v.weight"],
                tokens.expand(2, -1, -1), 0.8, num_zero=num_zero, ortho=projection == "ortho",
                ortho_v2=projection == "ortho_v2")
        else:
            processors[name] = AttnProcessor2_0()
        n += 1
    unet.set_attn_processor(processors)
    x, t, ctx, comfy_kw, diff_kw = unet_inputs("tiny_sdxl", unet)
    with torch.no_grad():
        expected = unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=diff_kw).sample
    ours = comfy_forward(patched, x, t, ctx, comfy_kw)
    assert (ours - comfy_forward(sdxl, x, t, ctx, comfy_kw)).abs().max() > 100 * ATOL["tiny_sdxl"]
    torch.testing.assert_close(ours, expected, rtol=0, atol=ATOL["tiny_sdxl"])


def test_flux_ca_layers_match_the_published_steps(files):
    from safetensors.torch import load_file

    pulid = load_pulid(str(files[0] / "pulid_flux_v0.9.1.safetensors"))
    x_id, y_id = pf.features(1, seed=8)
    with torch.no_grad():
        tokens = pulid.encoder(x_id, y_id)
    flux = tiny_flux.build_model(seed=1)
    patched = flux.clone()
    apply_pulid_flux(patched, pulid.ca_layers, tokens, tokens, "test", weight=0.9)
    reference = flux.clone()
    sd = load_file(str(files[0] / "pulid_flux_v0.9.1.safetensors"))
    inputs = df.inputs(6)
    ref.install_flux(reference, sd, tokens, 0.9, n_txt=inputs["context"].shape[1])
    ours = df.comfy_forward(patched, **inputs)
    assert (ours - df.comfy_forward(flux, **inputs)).abs().max() > 1e-2
    torch.testing.assert_close(ours, df.comfy_forward(reference, **inputs), atol=1e-4, rtol=0)


def _v1_converted_as_v1_1(encoders):           # a v1 IDEncoder with the v1.1 mapping layout: no mapping_patch_*
    return {k: v for k, v in encoders["v1"].items() if not k.startswith("mapping_patch_")}


def _v1_1_converted_as_v1(encoders):           # a v1.1 IDFormer that lost what v1 does not have
    return {k: v for k, v in encoders["v1.1"].items() if not k.startswith(("latents", "proj_out"))}


@pytest.mark.parametrize("encoder,says", [
    (_v1_converted_as_v1_1, "is an IDEncoder (PuLID SDXL v1) that lacks 50 keys (mapping_patch_0.0.bias"),
    (_v1_1_converted_as_v1, "is an IDFormer (PuLID SDXL v1.1 / Flux) that lacks 'latents'"),
    (lambda e: e["v1"] | {"latents": e["v1.1"]["latents"]}, "mixes v1 keys (IDEncoder"),
])
def test_a_file_of_one_version_laid_out_as_the_other_is_named(files, encoders, tmp_path, encoder, says):
    from safetensors.torch import save_file

    from comfyui_infuse.core.errors import InfuseError

    path = tmp_path / "pulid_v1.1.safetensors"
    save_file({f"id_adapter.{k}": v.contiguous() for k, v in encoder(encoders).items()} | files[1], str(path))
    with pytest.raises(InfuseError) as e:
        load_pulid(str(path))
    message = str(e.value)
    assert message.startswith("input 'pulid_file': 'pulid_v1.1.safetensors' is not a complete PuLID file: ")
    assert says in message and "use the file as published" in message, message
