"""Infuse Load PuLID + Infuse PuLID in-process on tiny SDXL and Flux models: files from disk through the loader node
(PuLID files in their layouts, EVA-CLIP in its own checkpoint layout at a small width, facexlib's BiSeNet), faces
from Infuse Face Analysis with the test antelopev2 pack, sampled with ComfyUI's samplers."""
import functools

import folder_paths
import pytest
import torch
from safetensors.torch import save_file

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.nodes.face_nodes import InfuseFaceAnalysis
from comfyui_infuse.nodes.pulid_nodes import InfuseLoadPuLID, InfusePuLID
from support import eva_files, face_models, face_parsing_files, flux_adapter_files, ipadapter_files, pulid_files, \
    tiny_flux


EVA_WIDTH, EVA_EMBED = 64, 32                     # a small EVA02 tower (real: 1024 / 768)


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("pulid_models")
    for folder in ("pulid", "clip_vision", "facexlib", "insightface"):
        (root / folder).mkdir()
        folder_paths.add_model_folder_path(folder, str(root / folder))
    face_models.write_pack(root / "insightface", "antelopev2")
    face_models.write_pack(root / "insightface", "buffalo_l")
    eva_files.write_eva02_l_336(root / "clip_vision" / "EVA02_CLIP_L_336_psz14_s6B.pt", seed=2, dtype=torch.float32,
                                depth=20, width=EVA_WIDTH, embed=EVA_EMBED)
    face_parsing_files.write_bisenet(root / "facexlib" / "parsing_bisenet.pth")
    widths = dict(id_cond=512 + EVA_EMBED, vit_width=EVA_WIDTH)
    flat = lambda prefix, sd: {f"{prefix}.{k}": v.contiguous() for k, v in sd.items()}
    sites = [s.inner_dim for s in model_sites(tiny.build_model("tiny_sdxl"))]
    torch.save(flat("id_adapter", pulid_files.id_encoder(**widths)) | pulid_files.sdxl_layers(sites),
               root / "pulid" / "pulid_v1.bin")
    save_file(flat("id_adapter", pulid_files.id_former(**widths)) | pulid_files.sdxl_layers(sites),
              str(root / "pulid" / "pulid_v1.1.safetensors"))
    save_file(flat("pulid_encoder", pulid_files.id_former(**widths)) |
              pulid_files.flux_ca(2, tiny_flux.TINY_FLUX_UNET["hidden_size"]),
              str(root / "pulid" / "pulid_flux_v0.9.1.safetensors"))
    (root / "ipadapter").mkdir()                    # an IP-Adapter to stack with, on each base
    folder_paths.add_model_folder_path("ipadapter", str(root / "ipadapter"))
    ctx = tiny.MODELS["tiny_sdxl"][1]["context_dim"]
    ipadapter_files.write(root / "ipadapter" / "pulid_test_ip-adapter_sdxl.bin",
                          ipadapter_files.image_proj("linear", cross=ctx, clip_pooled=24),
                          ipadapter_files.ip_layers(sites, ctx, seed=8))
    flux_adapter_files.write_xlabs(root / "ipadapter" / "pulid_test_flux-ip-adapter.safetensors",
                                   flux_adapter_files.xlabs(tiny_flux.TINY_FLUX_UNET["hidden_size"],
                                                            tiny_flux.TINY_FLUX_UNET["depth"], tokens=4))
    face = torch.from_numpy(face_models.face_image([(6, 7)], 640, 640)).float()[None] / 255
    return dict(face=face, faces=analysis(face), sdxl=tiny.build_model("tiny_sdxl", seed=3),
                flux=tiny_flux.build_model(seed=1))


def analysis(image, pack="antelopev2"):
    return InfuseFaceAnalysis.execute(image, pack, 640, "largest", 0, 224).args[0]


@functools.lru_cache(maxsize=None)
def load(name):
    """The loader node's outputs for a file, once per file (as ComfyUI caches a loader node's outputs)."""
    bundle, info = InfuseLoadPuLID.execute(name, "EVA02_CLIP_L_336_psz14_s6B.pt", "parsing_bisenet.pth").args
    return bundle, info


def apply(env, model, file, **kw):
    args = dict(model=model, pulid=load(file)[0], face_embeds=env["faces"], image=env["face"], weight=0.8,
                start_percent=0.0, end_percent=1.0, method="fidelity", combine="mean")
    return InfusePuLID.execute(**(args | kw)).args[0]


def sample(tiny, model, flux=False):
    if flux:
        return tiny_flux.sample(model, tiny_flux.conditioning(2), tiny_flux.conditioning(3))
    return tiny.sample(model, tiny.text_conditioning("tiny_sdxl", 1), tiny.text_conditioning("tiny_sdxl", 2))


@pytest.mark.parametrize("file,info", [("pulid_v1.bin", "PuLID SDXL v1 (IDEncoder, 10 ID tokens, 70 cross"),
                                       ("pulid_flux_v0.9.1.safetensors", "PuLID Flux (IDFormer, 32 ID tokens, 2 ID")])
def test_loader_says_what_it_found(env, file, info):
    assert load(file)[1].startswith(info)


def test_the_encoders_are_loaded_once_while_a_loaded_bundle_holds_them(env):
    v1, flux = load("pulid_v1.bin")[0], load("pulid_flux_v0.9.1.safetensors")[0]
    assert v1.eva is flux.eva and v1.parser is flux.parser and v1.model is not flux.model


@pytest.mark.parametrize("file,base", [("pulid_v1.bin", "sdxl"), ("pulid_flux_v0.9.1.safetensors", "flux")])
def test_weight_acts_weight_zero_and_outside_the_range_are_plain(env, tiny, file, base):
    model, flux = env[base], base == "flux"
    plain = sample(tiny, model, flux)
    assert not torch.equal(sample(tiny, apply(env, model, file), flux), plain)
    assert torch.equal(sample(tiny, apply(env, model, file, weight=0.0), flux), plain)
    assert torch.equal(sample(tiny, apply(env, model, file, start_percent=1.0), flux), plain)     # no step there
    assert torch.equal(sample(tiny, model, flux), plain)                   # nothing left on the input model


def test_flux_id_layers_are_loaded_by_comfyui_with_the_model(env):
    from comfyui_infuse.mechanisms.patching.dispatcher import ADDITIONAL_MODELS_KEY

    pulid = load("pulid_flux_v0.9.1.safetensors")[0].model
    patched = apply(env, env["flux"], "pulid_flux_v0.9.1.safetensors")
    extra = patched.get_additional_models_with_key(ADDITIONAL_MODELS_KEY)
    assert extra == [pulid.ca_patcher()] and list(extra[0].model) == pulid.ca_layers
    assert env["flux"].get_additional_models_with_key(ADDITIONAL_MODELS_KEY) == []


def test_sdxl_methods_differ(env, tiny):
    runs = [sample(tiny, apply(env, env["sdxl"], "pulid_v1.bin", method=m)) for m in ("fidelity", "style", "neutral")]
    assert not torch.equal(runs[0], runs[1]) and not torch.equal(runs[1], runs[2])


def test_v1_1_methods_are_the_v1_1_apps_and_zero_tokens_overrides(env, tiny):
    run = lambda **kw: sample(tiny, apply(env, env["sdxl"], "pulid_v1.1.safetensors", **kw))
    fidelity = run()
    assert torch.equal(fidelity, run(zero_tokens=20))           # the v1.1 app's default num_zero
    assert not torch.equal(fidelity, run(zero_tokens=8))        # v1's fidelity count is not v1.1's
    assert torch.equal(run(method="style"), run(method="style", zero_tokens=20))


@pytest.mark.parametrize("case,input_name,text", [
    ("buffalo", "face_embeds", "PuLID was trained with antelopev2's ArcFace"),
    ("other_images", "image", "are not the 1 the faces were found in"),
    ("sdxl_file_on_flux", "model", "is PuLID SDXL v1 but the model is a Flux model"),
    ("flux_file_on_sdxl", "model", "is PuLID Flux but the model is a SDXL model"),
])
def test_bad_input_is_named(env, case, input_name, text):
    kw = {"buffalo": dict(face_embeds=analysis(env["face"], "buffalo_l")),
          "other_images": dict(image=torch.cat([env["face"], env["face"]])),
          "sdxl_file_on_flux": dict(model=env["flux"]),
          "flux_file_on_sdxl": dict(file="pulid_flux_v0.9.1.safetensors")}[case]
    model, file = kw.pop("model", env["sdxl"]), kw.pop("file", "pulid_v1.bin")
    with pytest.raises(InfuseError) as e:
        apply(env, model, file, **kw)
    assert str(e.value).startswith(f"Infuse PuLID, input '{input_name}': ") and text in str(e.value), str(e.value)


@pytest.mark.parametrize("file,base", [("pulid_v1.bin", "sdxl"), ("pulid_flux_v0.9.1.safetensors", "flux")])
def test_several_faces_mean_and_concat(env, tiny, file, base):
    two = torch.cat([env["face"], env["face"].flip(2)])
    faces = analysis(two)
    model, flux = env[base], base == "flux"
    one = sample(tiny, apply(env, model, file), flux)
    mean = sample(tiny, apply(env, model, file, face_embeds=faces, image=two), flux)
    concat = sample(tiny, apply(env, model, file, face_embeds=faces, image=two, combine="concat"), flux)
    assert not torch.equal(mean, one) and not torch.equal(concat, mean)


def with_ipadapter(model, base, weight=0.7):
    """An IP-Adapter on `model` (SDXL: a linear adapter; Flux: XLabs), fed seeded image embeds."""
    from comfyui_infuse.core.records import ImageEmbeds
    from comfyui_infuse.nodes.ipadapter_nodes import InfuseIPAdapter, InfuseIPAdapterLoader

    from test_ipadapter_nodes import DEFAULTS

    name, width = {"sdxl": ("pulid_test_ip-adapter_sdxl.bin", 24),
                   "flux": ("pulid_test_flux-ip-adapter.safetensors", flux_adapter_files.CLIP_L_POOLED)}[base]
    g = torch.Generator().manual_seed(4)
    embeds = ImageEmbeds("test", torch.randn(1, width, generator=g), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    adapter = InfuseIPAdapterLoader.execute(name).result[0]
    return InfuseIPAdapter.execute(**(DEFAULTS | dict(model=model, ipadapter=adapter, image_embeds=embeds, image=None,
                                                       clip_vision=None, weight=weight))).result[0]


@pytest.mark.parametrize("file,base", [("pulid_v1.bin", "sdxl"), ("pulid_flux_v0.9.1.safetensors", "flux")])
def test_pulid_stacks_with_an_ip_adapter_and_each_zero_weight_leaves_the_other(env, tiny, file, base):
    model, flux = env[base], base == "flux"
    plain = sample(tiny, model, flux)
    both = sample(tiny, with_ipadapter(apply(env, model, file), base), flux)
    only_pulid = sample(tiny, apply(env, model, file), flux)
    only_ipadapter = sample(tiny, with_ipadapter(model, base), flux)
    assert len({t.numpy().tobytes() for t in (plain, both, only_pulid, only_ipadapter)}) == 4
    assert torch.equal(sample(tiny, with_ipadapter(apply(env, model, file, weight=0.0), base), flux), only_ipadapter)
    assert torch.equal(sample(tiny, with_ipadapter(apply(env, model, file), base, weight=0.0), flux), only_pulid)
    assert torch.equal(sample(tiny, model, flux), plain)
