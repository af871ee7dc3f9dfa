"""The IP-Adapter nodes in-process: files from disk through the loader node, images through the encoder, the
patched model sampled with ComfyUI's samplers; bad input refused before sampling."""
import pickle

import folder_paths
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.core.records import FaceEmbeds
from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.nodes.clip_nodes import InfuseEncodeImage, InfuseLoadOpenClip
from comfyui_infuse.nodes.ipadapter_nodes import InfuseIPAdapter, InfuseIPAdapterLoader, InfuseIPAdapterSimple
from support import clip_models
from support import ipadapter_files as f

POOLED, HIDDEN = clip_models.TINY["embed_dim"], clip_models.TINY["vision_cfg"]["width"]
DEFAULTS = dict(weight=1.0, weight_type="linear", composition_weight=1.0, start_percent=0.0, end_percent=1.0,
                combine="concat", crop="crop", block_weights="", faceid_lora_strength=1.0, faceid_v2=True,
                faceid_v2_weight=1.0)


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny):
    """Model folders registered with folder_paths (as extra_model_paths.yaml would), holding adapter files."""
    root = tmp_path_factory.mktemp("models")
    clip_models.register_tiny_open_clip(root)
    (root / "clip_vision").mkdir()
    clip_models.write_open_clip(root / "clip_vision" / "tiny_open_clip.safetensors", seed=1)
    folder_paths.add_model_folder_path("clip_vision", str(root / "clip_vision"))
    folder_paths.add_model_folder_path("ipadapter", str(root / "ipadapter"))
    widths = {n: [s.inner_dim for s in model_sites(tiny.build_model(n))] for n in ("tiny_sd15", "tiny_sdxl")}
    ctx = {n: tiny.MODELS[n][1]["context_dim"] for n in widths}
    files = {
        "sd15_base.safetensors": f.image_proj("linear", cross=ctx["tiny_sd15"], clip_pooled=POOLED),
        "sd15_plus.bin": f.image_proj("resampler", cross=ctx["tiny_sd15"], clip_hidden=HIDDEN, resampler_dim=128),
        "sd15_faceid.bin": f.image_proj("faceid", cross=ctx["tiny_sd15"]),
        "sdxl_base.safetensors": f.image_proj("linear", cross=ctx["tiny_sdxl"], clip_pooled=POOLED),
    }
    for name, proj in files.items():
        family = "tiny_sdxl" if name.startswith("sdxl") else "tiny_sd15"
        f.write(root / "ipadapter" / name, proj,
                f.ip_layers(widths[family], ctx[family], lora_rank=4 if "faceid" in name else None))
    return root


def load(name):
    return InfuseIPAdapterLoader.execute(name).args[0]


def encoder():
    return InfuseLoadOpenClip.execute(clip_models.TINY_ARCH, "tiny_open_clip.safetensors").args[0]


def image(n=1, h=40, w=40, seed=0):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


def apply(model, adapter, **kw):
    args = dict(DEFAULTS, **kw)
    return InfuseIPAdapter.execute(model, adapter, **args).args[0]


@pytest.fixture
def sd15(tiny):
    model = tiny.build_model("tiny_sd15", seed=4)
    pos, neg = tiny.text_conditioning("tiny_sd15", 1), tiny.text_conditioning("tiny_sd15", 2)
    return model, (lambda m, **kw: tiny.sample(m, pos, neg, **kw))


def test_loader_recognises_variants_from_weights(env):
    out = InfuseIPAdapterLoader.execute("sd15_plus.bin")
    adapter, info = out.args
    assert adapter.variant == "plus" and adapter.family == "sd15" and "16 tokens" in info
    assert load("sdxl_base.safetensors").family == "sdxl"
    assert load("sd15_faceid.bin").variant == "faceid" and load("sd15_faceid.bin").lora


@pytest.mark.parametrize("adapter_file", ["sd15_base.safetensors", "sd15_plus.bin"])
def test_apply_changes_sampling_and_weight_zero_does_not(env, sd15, adapter_file):
    model, run = sd15
    plain = run(model)
    patched = apply(model, load(adapter_file), image=image(), open_clip=encoder())
    assert not torch.equal(run(patched), plain)
    assert torch.equal(run(apply(model, load(adapter_file), image=image(), open_clip=encoder(), weight=0.0)), plain)


def test_image_embeds_from_the_encode_node_equal_image_plus_encoder(env, sd15):
    model, run = sd15
    embeds = InfuseEncodeImage.execute(image(2), "crop", open_clip=encoder()).args[0]
    a = run(apply(model, load("sd15_plus.bin"), image_embeds=embeds))
    b = run(apply(model, load("sd15_plus.bin"), image=image(2), open_clip=encoder()))
    assert torch.equal(a, b)


def test_image_kv_is_computed_once_and_reused_across_steps(env, sd15):
    model, run = sd15
    patched = apply(model, load("sd15_base.safetensors"), image=image(), open_clip=encoder())
    (c,) = dispatcher.contributions(patched.model_options)
    run(patched, steps=1)
    first = {k: v[0].data_ptr() for k, v in c._kv.items()}
    run(patched, steps=3)
    assert {k: v[0].data_ptr() for k, v in c._kv.items()} == first
    per_branch = [k for k in first if len(k) == 4]
    assert len(per_branch) == 2 * len(model_sites(model))            # one K/V per site and CFG branch


def test_moving_or_freeing_a_clone_keeps_the_live_models_caches(env, sd15):
    """ComfyUI calls to() on every patch of a model it loads, offloads or frees; clones share the contribution, so a
    freed clone must not empty (or rebuild) the caches the live model uses, whatever the device or dtype."""
    model, run = sd15
    patched = apply(model, load("sd15_base.safetensors"), image=image(), open_clip=encoder())
    (c,) = dispatcher.contributions(patched.model_options)
    run(patched, steps=1)
    cached = dict(c._kv)
    clone = patched.clone()
    for target in (torch.device("cpu"), torch.device("meta"), torch.float16, torch.device("cpu")):
        clone.model_patches_to(target)
        patched.model_patches_to(target)
    assert c._kv.keys() == cached.keys() and all(c._kv[k] is cached[k] for k in cached)
    run(patched, steps=1)
    assert all(c._kv[k] is cached[k] for k in cached)


def test_style_transfer_touches_only_style_blocks(env, sd15):
    model, _ = sd15
    patched = apply(model, load("sd15_base.safetensors"), image=image(), open_clip=encoder(),
                    weight_type="style transfer", weight=0.8)
    (c,) = dispatcher.contributions(patched.model_options)
    active = {k for k in c.sites() if c.weight_at(k) != 0}
    assert active == {k for k in c.sites() if k[0] == "output" and k[1] in (3, 4, 5)}
    assert all(c.weight_at(k) == 0.8 for k in active)


def test_block_weight_rules_multiply(env, sd15):
    model, _ = sd15
    patched = apply(model, load("sd15_base.safetensors"), image=image(), open_clip=encoder(), weight=0.5,
                    block_weights="input=0\nmiddle=2")
    (c,) = dispatcher.contributions(patched.model_options)
    assert {c.weight_at(k) for k in c.sites() if k[0] == "input"} == {0.0}
    assert c.weight_at(("middle", 0, 0)) == 1.0 and c.weight_at(("output", 3, 0)) == 0.5


def test_faceid_takes_face_embeds_and_its_lora(env, sd15):
    model, run = sd15
    faces = FaceEmbeds.from_raw("synthetic", torch.randn(1, 512) * 20)
    patched = apply(model, load("sd15_faceid.bin"), face_embeds=faces, faceid_lora_strength=0.6)
    assert patched.patches                      # the LoRA, as ComfyUI weight patches
    assert not torch.equal(run(patched), run(model))
    with pytest.raises(InfuseError, match="needs face embeddings"):
        apply(model, load("sd15_faceid.bin"))


def test_one_apply_reads_the_model_family_and_walks_its_sites_once(env, sd15, monkeypatch):
    from support.counting import count_unet_reads

    counts = count_unet_reads(monkeypatch)
    model, _ = sd15
    faces = FaceEmbeds.from_raw("synthetic", torch.randn(1, 512) * 20)
    patched = apply(model, load("sd15_faceid.bin"), face_embeds=faces, faceid_lora_strength=0.6)
    assert patched.patches and dispatcher.contributions(patched.model_options)
    assert counts == {"model_family": 1, "discover_sites": 1}


# --- bad input: clear errors naming node, input and fix, before sampling -------------------------------------
def test_the_simple_node_is_the_advanced_node_at_its_defaults(env, sd15):
    model, run = sd15
    embeds = InfuseEncodeImage.execute(image(), "crop", open_clip=encoder()).args[0]
    mask = torch.zeros(1, 16, 16)
    mask[:, :, :8] = 1.0
    for adapter in ("sd15_base.safetensors", "sd15_plus.bin"):
        simple = InfuseIPAdapterSimple.execute(model, load(adapter), 0.7, 0.1, 0.9, image_embeds=embeds,
                                               attn_mask=mask).args[0]
        advanced = apply(model, load(adapter), image_embeds=embeds, weight=0.7, start_percent=0.1, end_percent=0.9,
                         attn_mask=mask)
        assert torch.equal(run(simple), run(advanced))
    assert torch.equal(run(InfuseIPAdapterSimple.execute(model, load("sd15_base.safetensors"), 0.0, 0.0, 1.0,
                                                         image_embeds=embeds).args[0]), run(model))


def test_the_simple_node_sends_faceid_files_to_the_advanced_node(env, sd15):
    model, _ = sd15
    with pytest.raises(InfuseError, match=r"Infuse IP-Adapter \(simple\), input 'ipadapter': 'sd15_faceid.bin' is a "
                                          r"FaceID adapter.*Fix: use Infuse IP-Adapter \(same inputs plus face_embeds\)"):
        InfuseIPAdapterSimple.execute(model, load("sd15_faceid.bin"), 1.0, 0.0, 1.0, image=image())


class UnusableEncoder:
    """An encoder that must not be reached: the checks that need no image run first."""

    def __getattr__(self, name):
        raise AssertionError(f"the image encoder was used ({name}) before the adapter was checked")


def test_sdxl_adapter_on_a_distilled_sdxl_is_named_before_encoding(env, tiny):
    ssd1b = tiny.build_model("tiny_ssd1b")
    n_sites = len(model_sites(ssd1b))
    with pytest.raises(InfuseError) as e:
        apply(ssd1b, load("sdxl_base.safetensors"), image=image(), open_clip=UnusableEncoder())
    assert str(e.value).startswith(
        f"Infuse IP-Adapter, input 'model': 'sdxl_base.safetensors' was trained for the full SDXL UNet (70 "
        f"cross-attention layers), but the model is SSD1B, an SDXL-type model with {n_sites}.")
    assert "Fix: use an IP-Adapter trained for SSD1B, or a full SDXL checkpoint." in str(e.value)


def test_sdxl_adapter_on_sd15_model(env, sd15):
    model, _ = sd15
    with pytest.raises(InfuseError) as e:
        apply(model, load("sdxl_base.safetensors"), image=image(), open_clip=encoder())
    assert str(e.value).startswith("Infuse IP-Adapter, input 'ipadapter': 'sdxl_base.safetensors' is an SDXL "
                                   "IP-Adapter but the model is SD1.5.")


def test_encoder_of_the_wrong_width(env, sd15, tmp_path, model_folder):
    model, _ = sd15
    wide = f.image_proj("linear", cross=64, clip_pooled=POOLED + 8)
    f.write(tmp_path / "ipadapter" / "wide.safetensors", wide,
            f.ip_layers([s.inner_dim for s in model_sites(model)], 64))
    model_folder("ipadapter", tmp_path / "ipadapter")
    with pytest.raises(InfuseError, match=r"input 'open_clip': the image embeds have pooled embeds 24 wide, "
                                          r"but 'wide.safetensors' .* takes 32"):
        apply(model, load("wide.safetensors"), image=image(), open_clip=encoder())


def test_empty_image_batch(env, sd15):
    model, _ = sd15
    with pytest.raises(InfuseError, match="Infuse IP-Adapter, input 'image': the image batch has shape"):
        apply(model, load("sd15_base.safetensors"), image=torch.zeros(0, 32, 32, 3), open_clip=encoder())


def test_mask_of_another_aspect_fails_before_sampling(env, sd15):
    model, run = sd15
    patched = apply(model, load("sd15_base.safetensors"), image=image(), open_clip=encoder(),
                    attn_mask=torch.ones(64, 128))
    with pytest.raises(InfuseError, match="Infuse IP-Adapter, input 'attn_mask'"):
        run(patched, latent_hw=(8, 8))


def test_missing_and_corrupt_and_pickled_files(env, tmp_path):
    with pytest.raises(InfuseError, match="model file 'nope.bin' was not found. Searched:"):
        load("nope.bin")
    folder = env / "ipadapter"
    good = (folder / "sd15_base.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(InfuseError, match="'truncated.safetensors' could not be read; it is truncated"):
        load("truncated.safetensors")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    (folder / "evil.bin").write_bytes(pickle.dumps({"image_proj": Evil()}))
    with pytest.raises(InfuseError, match="'evil.bin' is not a plain weights file"):
        load("evil.bin")
    assert not marker.exists()
    import safetensors.torch

    safetensors.torch.save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(folder / "lora.safetensors"))
    with pytest.raises(InfuseError, match="'lora.safetensors' is not an IP-Adapter file"):
        load("lora.safetensors")


def test_outside_start_end_the_model_output_is_unchanged(env, sd15, tiny):
    model, _ = sd15
    patched = apply(model, load("sd15_base.safetensors"), image=image(), open_clip=encoder(), start_percent=0.5,
                    end_percent=0.9)
    sampling = model.get_model_object("model_sampling")
    for c in dispatcher.contributions(patched.model_options):
        c.prepare_run((1, 4, 8, 8), sampling)                 # what the sampler does before its first step
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ctx = tiny.text_conditioning("tiny_sd15", 1)[0][0]

    def call(m, percent):
        sigma = torch.tensor([sampling.percent_to_sigma(percent)])
        to = dict(m.model_options["transformer_options"], cond_or_uncond=[0], sigmas=sigma)
        with torch.no_grad():
            return m.model.apply_model(x, sigma, c_crossattn=ctx, transformer_options=to)

    for outside in (0.2, 0.95):
        assert torch.equal(call(patched, outside), call(model, outside))
    assert not torch.equal(call(patched, 0.7), call(model, 0.7))


def test_bad_schedule_range_names_node_and_input(env, sd15):
    model, _ = sd15
    with pytest.raises(InfuseError, match="Infuse IP-Adapter, input 'start_percent': start_percent 0.8 / "
                                          "end_percent 0.2 is not a range"):
        apply(model, load("sd15_base.safetensors"), image=image(), open_clip=encoder(), start_percent=0.8,
              end_percent=0.2)


def test_mask_mode_reference_by_default_and_soft_on_request(env, sd15):
    model, run = sd15
    mask = torch.linspace(0, 1, 64).expand(1, 64, 64).clone()          # a grey ramp: the modes differ on it
    args = dict(image_embeds=InfuseEncodeImage.execute(image(), "crop", open_clip=encoder()).args[0], attn_mask=mask)
    reference = run(apply(model, load("sd15_base.safetensors"), **args))
    assert torch.equal(run(apply(model, load("sd15_base.safetensors"), mask_mode="reference", **args)), reference)
    assert not torch.equal(run(apply(model, load("sd15_base.safetensors"), mask_mode="soft", **args)), reference)
    with pytest.raises(InfuseError, match="input 'mask_mode': mask_mode must be one of"):
        apply(model, load("sd15_base.safetensors"), mask_mode="blurry", **args)
