"""Infuse IP-Adapter on a tiny Flux through its node: files from disk through the loader node, a ComfyUI CLIP vision
model for XLabs, sampled with ComfyUI's samplers. The Gate (weight, range, mask, per-block weights) acts as on SD;
XLabs, InstantX and Redux stack on one model and leave the input model as it was; bad input is named."""
import json

import folder_paths
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.core.records import ImageEmbeds
from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.text_embedding.redux import apply_redux
from comfyui_infuse.nodes.ipadapter_nodes import InfuseIPAdapter, InfuseIPAdapterLoader
from support import clip_models
from support import flux_adapter_files as ff
from support import tiny_flux

from test_ipadapter_nodes import DEFAULTS

WIDTH = tiny_flux.TINY_FLUX_UNET["hidden_size"]
DOUBLE, SINGLE = tiny_flux.TINY_FLUX_UNET["depth"], tiny_flux.TINY_FLUX_UNET["depth_single_blocks"]
IMAGE = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux_models")
    (root / "ipadapter").mkdir()
    ff.write_xlabs(root / "ipadapter" / "flux-ip-adapter-v2.safetensors", ff.xlabs(WIDTH, DOUBLE, tokens=16))
    ff.write_instantx(root / "ipadapter" / "ip-adapter.bin", *ff.instantx(WIDTH, DOUBLE + SINGLE, seed=2))
    folder_paths.add_model_folder_path("ipadapter", str(root / "ipadapter"))
    config = root / "vit_l_small.json"                   # ViT-L/14's 768-wide image embeds, a small tower
    config.write_text(json.dumps(dict(clip_models.TINY_COMFY_CONFIG, projection_dim=ff.CLIP_L_POOLED)))
    import comfy.clip_vision

    vit_l = comfy.clip_vision.ClipVisionModel(str(config))
    clip_models.randomize(vit_l.model, 3)
    return dict(model=tiny_flux.build_model(seed=1), vit_l=vit_l, other_encoder=_wide_encoder(root),
                pos=tiny_flux.conditioning(2), neg=tiny_flux.conditioning(3))


def _wide_encoder(root):
    import comfy.clip_vision

    config = root / "wide.json"
    config.write_text(json.dumps(dict(clip_models.TINY_COMFY_CONFIG, projection_dim=1024)))   # ViT-H's width
    cv = comfy.clip_vision.ClipVisionModel(str(config))
    clip_models.randomize(cv.model, 4)
    return cv


def adapter(name):
    return InfuseIPAdapterLoader.execute(name).result[0]


def apply(env, name, **kw):
    inputs = dict(DEFAULTS, model=env["model"], ipadapter=adapter(name), image=IMAGE, clip_vision=env["vit_l"])
    if name == "ip-adapter.bin":      # InstantX: SigLIP's 1152-wide pooled output, as image embeds
        g = torch.Generator().manual_seed(7)
        inputs |= dict(clip_vision=None, image=None,
                       image_embeds=ImageEmbeds("test", torch.randn(1, 1152, generator=g), torch.zeros(1, 1, 1),
                                                torch.zeros(1, 1, 1)))
    return InfuseIPAdapter.execute(**(inputs | kw)).result[0]


def sample(env, model, **kw):
    return tiny_flux.sample(model, kw.pop("pos", env["pos"]), env["neg"], **kw)


@pytest.fixture(scope="module")
def plain(env):
    return sample(env, env["model"])


@pytest.mark.parametrize("name", ["flux-ip-adapter-v2.safetensors", "ip-adapter.bin"])
def test_weight_zero_is_plain_and_a_weight_changes_the_result(env, plain, name):
    assert torch.equal(sample(env, apply(env, name, weight=0.0)), plain)
    assert (sample(env, apply(env, name, weight=0.8)) - plain).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["flux-ip-adapter-v2.safetensors", "ip-adapter.bin"])
def test_outside_its_range_it_is_plain(env, plain, name):
    assert torch.equal(sample(env, apply(env, name, start_percent=0.9, end_percent=1.0)), plain)
    assert not torch.equal(sample(env, apply(env, name, start_percent=0.0, end_percent=0.5)), plain)


def test_block_weights_turn_blocks_off(env, plain):
    assert torch.equal(sample(env, apply(env, "flux-ip-adapter-v2.safetensors", block_weights="double=0")), plain)
    full = sample(env, apply(env, "ip-adapter.bin"))
    doubles_only = sample(env, apply(env, "ip-adapter.bin", block_weights="single=0"))
    assert not torch.equal(doubles_only, full) and not torch.equal(doubles_only, plain)
    ramp = sample(env, apply(env, "ip-adapter.bin", weight_type="ease in"))
    assert not torch.equal(ramp, full)


def test_a_mask_confines_the_change(env, plain):
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0                                              # the left half of the image
    out = sample(env, apply(env, "flux-ip-adapter-v2.safetensors", weight=2.0, attn_mask=mask), steps=1)
    ref = sample(env, env["model"], steps=1)
    change = (out - ref).abs()
    assert change[..., :4].mean() > 5 * change[..., 4:].mean()


def test_xlabs_instantx_and_redux_stack_and_leave_the_input_model_alone(env, plain):
    before = dict(env["model"].model_options["transformer_options"]), dict(env["model"].wrappers)
    xlabs = apply(env, "flux-ip-adapter-v2.safetensors")
    both = apply(env, "ip-adapter.bin", model=xlabs)
    g = torch.Generator().manual_seed(9)
    redux_pos = apply_redux(env["pos"], torch.randn(1, 9, tiny_flux.CONTEXT_DIM, generator=g) * 0.1, 1.0, "multiply")
    results = [sample(env, xlabs), sample(env, both), sample(env, both, pos=redux_pos)]
    assert all(not torch.equal(a, b) for i, a in enumerate(results) for b in results[i + 1:] + [plain])
    assert torch.equal(sample(env, env["model"]), plain)
    assert (dict(env["model"].model_options["transformer_options"]), dict(env["model"].wrappers)) == before


def test_image_tokens_and_kv_are_computed_once_per_run(env):
    patched = apply(env, "flux-ip-adapter-v2.safetensors")
    contribution = next(iter(patched.model_options["transformer_options"][dispatcher.REGISTRY_KEY]))
    sample(env, patched, steps=4)
    per_branch = [k for k in contribution._kv if len(k) == 4]          # (site, branch, device, dtype)
    assert len(per_branch) == DOUBLE * 2                               # 2 double blocks x cond / uncond, not x steps


@pytest.mark.parametrize("kw,input_name,text", [
    (dict(clip_vision="other"), "clip_vision", "takes 768-wide pooled embeds"),
    (dict(weight_type="style transfer"), "weight_type", "targets SD1.5 / SDXL UNet blocks"),
    (dict(block_weights="output:1=0"), "block_weights", "cannot read the rule 'output:1=0'"),
    (dict(block_weights="single:7=0"), "block_weights", "matches no block of this model"),
    (dict(clip_vision=None), "clip_vision", "no image encoder is connected"),
])
def test_bad_input_is_named(env, kw, input_name, text, monkeypatch):
    if kw.get("clip_vision") == "other":
        from comfyui_infuse.extractors import clip_vision

        kw["clip_vision"] = env["other_encoder"]        # refused from its width, before any image is encoded
        monkeypatch.setattr(clip_vision.ComfyClipVision, "__call__", lambda *a: pytest.fail("encoded first"))
    with pytest.raises(InfuseError) as e:
        apply(env, "flux-ip-adapter-v2.safetensors", **kw)
    assert str(e.value).startswith(f"Infuse IP-Adapter, input '{input_name}': ") and text in str(e.value)
    assert "Fix:" in str(e.value)


def test_sd_adapter_on_flux_and_flux_adapter_on_sd_are_refused(env, tiny, tmp_path, model_folder):
    from support import ipadapter_files as f

    f.write(tmp_path / "sd15.safetensors", f.image_proj("linear", cross=tiny.MODELS["tiny_sd15"][1]["context_dim"]),
            f.ip_layers([320] * 16, tiny.MODELS["tiny_sd15"][1]["context_dim"]))
    model_folder("ipadapter", tmp_path)
    with pytest.raises(InfuseError, match=r"input 'ipadapter': 'sd15.safetensors' is an SD1.5 IP-Adapter but the "
                                          r"model is Flux\..*Fix: use a Flux IP-Adapter"):
        apply(env, "sd15.safetensors")
    with pytest.raises(InfuseError, match=r"input 'ipadapter': 'flux-ip-adapter-v2.safetensors' is a Flux "
                                          r"IP-Adapter XLabs v2 but the model is a SD15 model"):
        apply(env, "flux-ip-adapter-v2.safetensors", model=tiny.build_model("tiny_sd15"))


def test_a_mask_of_another_aspect_is_named_when_sampling_starts(env):
    patched = apply(env, "flux-ip-adapter-v2.safetensors", attn_mask=torch.ones(1, 16, 64))
    with pytest.raises(InfuseError, match=r"^Infuse IP-Adapter, input 'attn_mask': .*aspect"):
        sample(env, patched)


def test_a_truncated_file_and_a_pickle_that_runs_code_are_refused(env, tmp_path, model_folder):
    from comfyui_infuse.nodes.convert_nodes import InfuseConvertToSafetensors

    import torch as t

    from support import faults_files

    folder = tmp_path / "bad"
    folder.mkdir()
    model_folder("ipadapter", folder)
    whole = ff.write_xlabs(tmp_path / "whole.safetensors", ff.xlabs(WIDTH, DOUBLE))
    faults_files.truncated_copy(whole, folder / "flux-truncated.safetensors")
    with pytest.raises(InfuseError, match="'flux-truncated.safetensors' could not be read; it is truncated"):
        adapter("flux-truncated.safetensors")
    marker = tmp_path / "pwned"
    image_proj, _ = ff.instantx(WIDTH, DOUBLE + SINGLE)      # InstantX's layout, its layers a call when unpickled
    t.save({"image_proj": image_proj, "ip_adapter": faults_files.OpensFile(marker)}, folder / "flux-evil.bin")
    with pytest.raises(InfuseError, match="'flux-evil.bin' is not a plain weights file"):
        adapter("flux-evil.bin")
    with pytest.raises(InfuseError, match="'flux-evil.bin' is not a plain weights file"):
        InfuseConvertToSafetensors.execute("ipadapter/flux-evil.bin")
    assert not marker.exists() and not (folder / "flux-evil.safetensors").exists()


def test_instantx_bin_converts_to_safetensors_that_load_the_same(env, tmp_path, model_folder):
    from comfyui_infuse.nodes.convert_nodes import InfuseConvertToSafetensors

    folder = tmp_path / "convert"
    folder.mkdir()
    model_folder("ipadapter", folder)
    image_proj, ip_layers = ff.instantx(WIDTH, DOUBLE + SINGLE, seed=5)
    ff.write_instantx(folder / "instantx-flux.bin", image_proj, ip_layers)
    info = InfuseConvertToSafetensors.execute("ipadapter/instantx-flux.bin").result[0]
    assert "wrote instantx-flux.safetensors" in info
    original, converted = adapter("instantx-flux.bin"), adapter("instantx-flux.safetensors")
    assert converted.describe() == original.describe()
    assert all(torch.equal(a.to_k, b.to_k) and torch.equal(a.to_v, b.to_v)
               for a, b in zip(original.layers, converted.layers))
    x = torch.randn(2, ff.SIGLIP_POOLED)
    assert torch.equal(original.projection(x), converted.projection(x))
    with pytest.raises(InfuseError, match="'instantx-flux.safetensors' already exists beside 'instantx-flux.bin'"):
        InfuseConvertToSafetensors.execute("ipadapter/instantx-flux.bin")


def test_several_images_concat_or_average_and_a_negative_image(env, plain):
    two = torch.cat([IMAGE, IMAGE.flip(2)])
    concat = sample(env, apply(env, "flux-ip-adapter-v2.safetensors", image=two))
    average = sample(env, apply(env, "flux-ip-adapter-v2.safetensors", image=two, combine="average"))
    one = sample(env, apply(env, "flux-ip-adapter-v2.safetensors"))
    assert not torch.equal(concat, average) and not torch.equal(concat, one) and not torch.equal(average, one)
    negative = sample(env, apply(env, "flux-ip-adapter-v2.safetensors", negative_image=IMAGE.flip(1)))
    assert not torch.equal(negative, one)                  # cfg 3: the uncond rows see the negative image's tokens
