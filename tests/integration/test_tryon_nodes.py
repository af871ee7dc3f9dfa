"""The try-on nodes in-process: IDM-VTON's release folders through the loader node, person / garment / mask /
pose through the try-on node, sampled with ComfyUI's samplers; bad input refused before sampling."""
import json

import comfy.clip_vision
import comfy.sample
import comfy.sd
import folder_paths
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.recipes.idm_vton import with_concat
from comfyui_infuse.mechanisms.reference_attention.reference import ReferenceAttention
from comfyui_infuse.nodes.tryon_nodes import InfuseLoadIDMVTON, InfuseTryOn, InfuseTryOnMask
from support import tryon_files

# a two-layer CLIP vision model as wide as ViT-H (1280), so the try-on UNet's image prompt can read it
VIT_H_WIDE = {"hidden_act": "gelu", "hidden_size": 1280, "image_size": 28, "intermediate_size": 1280,
              "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_attention_heads": 20, "num_channels": 3,
              "num_hidden_layers": 2, "patch_size": 14, "projection_dim": 1024}


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("tryon_models")
    tryon_files.write_release(root / "diffusion_models" / "IDM-VTON", seed=0)
    tryon_files.write_release(root / "diffusion_models" / "IDM-VTON-9ch", seed=1, tryon_channels=9)
    folder_paths.add_model_folder_path("diffusion_models", str(root / "diffusion_models"))
    ckpt = tiny.write_checkpoint(root / "tiny_sdxl.safetensors", "tiny_sdxl", seed=0)
    _, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True)
    (root / "vit.json").write_text(json.dumps(VIT_H_WIDE))
    clip_vision = comfy.clip_vision.ClipVisionModel(str(root / "vit.json"))
    tiny.randomize(clip_vision.model, 3)
    model, garment = InfuseLoadIDMVTON.execute("IDM-VTON/unet/diffusion_pytorch_model.safetensors",
                                               "IDM-VTON/unet_encoder/diffusion_pytorch_model.safetensors",
                                               "fp32").args
    return dict(model=model, garment=garment, clip=clip, vae=vae, clip_vision=clip_vision,
                pos=tiny.text_conditioning("tiny_sdxl", 1), neg=tiny.text_conditioning("tiny_sdxl", 2))


def images(h=64, w=48, seed=0):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


def box(person, x=8, y=16, width=32, height=32):
    return InfuseTryOnMask.execute(person, x, y, width, height).args[0]


def tryon(env, person=None, garment=None, mask=None, pose=None, **kw):
    person = images() if person is None else person
    args = dict(garment_description="a red t-shirt", garment_weight=1.0, image_prompt_weight=1.0, cache_every=1)
    args.update(kw)
    return InfuseTryOn.execute(env["model"], env["garment"], env["vae"], env["clip"], env["clip_vision"], env["pos"],
                               env["neg"], person, images(80, 80, 1) if garment is None else garment,
                               box(person) if mask is None else mask, images(seed=2) if pose is None else pose,
                               **args).args


def sample(model, pos, neg, latent, steps=2):
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, 0)
    return comfy.sample.sample(model, noise, steps, 2.0, "euler", "normal", pos, neg, samples, disable_pbar=True,
                               seed=0)


def reference_of(model) -> ReferenceAttention:
    return next(c for c in dispatcher.contributions(model.model_options) if isinstance(c, ReferenceAttention))


def test_tryon_samples_with_one_garment_pass_per_step(env):
    model, pos, neg, latent = tryon(env)
    assert latent["samples"].shape == (1, 4, 8, 6)
    assert pos[0][1]["infuse_tryon_concat"].shape == (1, 9, 8, 6)
    out = sample(model, pos, neg, latent, steps=3)
    assert torch.isfinite(out).all()
    assert reference_of(model).passes == 3            # once per step for the batch, not once per CFG copy


def test_one_tryon_reads_the_tryon_unets_family_and_sites_once(env, monkeypatch):
    from support.counting import count_unet_reads

    counts = count_unet_reads(monkeypatch)
    tryon(env)
    assert counts == {"model_family": 1, "discover_sites": 1}


def test_weights_zero_give_the_plain_tryon_unet_bit_for_bit_and_each_part_matters(env):
    plain_model, pos, neg, latent = tryon(env, garment_weight=0.0, image_prompt_weight=0.0)
    plain = sample(env["model"], pos, neg, latent)
    assert torch.equal(sample(plain_model, pos, neg, latent), plain)
    assert reference_of(plain_model).passes == 0
    garment_only = sample(*tryon(env, image_prompt_weight=0.0))
    prompt_only = sample(*tryon(env, garment_weight=0.0))
    both = sample(*tryon(env))
    for out in (garment_only, prompt_only, both):
        assert not torch.equal(out, plain)
    assert not torch.equal(garment_only, both) and not torch.equal(prompt_only, both)


def test_the_mask_and_pose_reach_the_unet_input(env):
    person = images()
    base = sample(*tryon(env, person=person, garment_weight=0.0, image_prompt_weight=0.0))
    other_mask = sample(*tryon(env, person=person, mask=box(person, 0, 0, 16, 16), garment_weight=0.0,
                               image_prompt_weight=0.0))
    other_pose = sample(*tryon(env, person=person, pose=images(seed=9), garment_weight=0.0, image_prompt_weight=0.0))
    assert not torch.equal(base, other_mask) and not torch.equal(base, other_pose)


def test_cache_every_k_steps(env):
    model, pos, neg, latent = tryon(env, cache_every=4)
    sample(model, pos, neg, latent, steps=6)
    assert reference_of(model).passes == 2


def test_person_and_garment_of_different_sizes_and_a_pose_at_another_resolution(env):
    person = images(72, 52)                              # not a multiple of 8: cropped to 72x48
    model, pos, neg, latent = tryon(env, person=person, garment=images(30, 90, 4), pose=images(144, 104, 5))
    assert latent["samples"].shape == (1, 4, 9, 6)
    assert torch.isfinite(sample(model, pos, neg, latent)).all()


def test_bad_inputs_are_named(env, tiny):
    person = images()
    with pytest.raises(InfuseError, match="Infuse Try-On, input 'mask': the mask is 40x64 but the person image is 48x64"):
        tryon(env, person=person, mask=torch.ones(1, 64, 40))
    with pytest.raises(InfuseError, match="input 'pose'.*another aspect ratio"):
        tryon(env, person=person, pose=images(64, 64))
    plain_sdxl = tiny.build_model("tiny_sdxl")
    with pytest.raises(InfuseError, match="input 'model': the model takes 4 input channels"):
        InfuseTryOn.execute(plain_sdxl, env["garment"], env["vae"], env["clip"], env["clip_vision"], env["pos"],
                            env["neg"], person, person, box(person), person, "x", 1.0, 1.0, 1)
    with pytest.raises(InfuseError, match="Infuse Load IDM-VTON, input 'tryon_unet'.*takes 9 input channels"):
        InfuseLoadIDMVTON.execute("IDM-VTON-9ch/unet/diffusion_pytorch_model.safetensors",
                                  "IDM-VTON/unet_encoder/diffusion_pytorch_model.safetensors", "default")
    with pytest.raises(InfuseError, match="input 'tryon_unet': model file 'nope.safetensors' was not found"):
        InfuseLoadIDMVTON.execute("nope.safetensors", "IDM-VTON/unet_encoder/diffusion_pytorch_model.safetensors",
                                  "default")
    with pytest.raises(InfuseError, match="input 'garment_unet'.*do not match"):
        InfuseTryOn.execute(env["model"], tiny.build_model("tiny_sd15"), env["vae"], env["clip"], env["clip_vision"],
                            env["pos"], env["neg"], person, person, box(person), person, "x", 1.0, 1.0, 1)


def test_sampling_the_tryon_unet_without_its_conditioning_fails_before_the_first_step(env):
    _, pos, neg, latent = tryon(env)
    with pytest.raises(InfuseError, match="Infuse Try-On, input 'positive'.*no mask, masked person and pose"):
        sample(env["model"], env["pos"], env["neg"], latent)
    with pytest.raises(InfuseError, match="input 'person'.*latent being sampled is 64x64"):
        sample(env["model"], pos, neg, {"samples": torch.zeros(1, 4, 8, 8)})
    concat = pos[0][1]["infuse_tryon_concat"]
    assert with_concat(env["pos"], concat)[0][1]["infuse_tryon_concat"] is concat


def _sag(model, scale):
    from comfy_extras.nodes_sag import SelfAttentionGuidance

    return SelfAttentionGuidance.execute(model, scale, 2.0).args[0]


def _tryon_with(env, sag_scale=None, order="sag_first", garment_weight=1.0):
    person = images(64, 64)
    base = env["model"] if sag_scale is None or order == "tryon_first" else _sag(env["model"], sag_scale)
    model, pos, neg, latent = tryon(dict(env, model=base), person=person, pose=images(64, 64, 2),
                                    garment_weight=garment_weight)
    if sag_scale is not None and order == "tryon_first":
        model = _sag(model, sag_scale)
    return sample(model, pos, neg, latent)


@pytest.fixture(scope="module")
def tryon_alone(env):
    return _tryon_with(env), _tryon_with(env, garment_weight=0.0)


@pytest.mark.parametrize("order", ["sag_first", "tryon_first"])
def test_tryon_composes_with_self_attention_guidance(env, tryon_alone, order):
    """Core SAG's attention patch stays the base at its site and sees only the try-on UNet's own keys; the
    garment keys reach that site too (SAG at scale 0 changes nothing)."""
    exact, no_garment = tryon_alone
    effect = (exact - no_garment).abs().max()
    assert effect > 0.1 and (_tryon_with(env, 0.0, order) - exact).abs().max() < 1e-2 * effect
    guided = _tryon_with(env, 0.8, order)
    assert torch.isfinite(guided).all() and not torch.allclose(guided, exact, atol=1e-3)


def test_a_batch_of_garments_or_persons_uses_the_first_and_says_so(env):
    person, garment = images(), images(80, 80, 1)
    single = InfuseTryOn.execute(env["model"], env["garment"], env["vae"], env["clip"], env["clip_vision"], env["pos"],
                                 env["neg"], person, garment, box(person), images(seed=2), "a red t-shirt", 1.0, 1.0, 1)
    assert "text" not in single.ui.as_dict()
    batched = InfuseTryOn.execute(env["model"], env["garment"], env["vae"], env["clip"], env["clip_vision"],
                                  env["pos"], env["neg"], person, torch.cat([garment, images(80, 80, 7)]), box(person),
                                  images(seed=2), "a red t-shirt", 1.0, 1.0, 1)
    assert batched.ui["text"] == ["One person and one garment per run (garment: 2 images, the first is used)."]
    assert torch.equal(sample(*batched.args), sample(*single.args))


def test_the_loader_lists_release_folders_by_their_short_names_and_still_takes_saved_file_paths(env):
    from comfyui_infuse.nodes.tryon_nodes import unet_choices

    choices = unet_choices()
    assert {"IDM-VTON/unet", "IDM-VTON/unet_encoder", "IDM-VTON-9ch/unet"} <= set(choices)
    assert not [c for c in choices if c.endswith("diffusion_pytorch_model.safetensors")]
    by_folder = InfuseLoadIDMVTON.execute("IDM-VTON/unet", "IDM-VTON/unet_encoder", "fp32").args
    for a, b in zip(by_folder, (env["model"], env["garment"])):
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert InfuseLoadIDMVTON.validate_inputs("IDM-VTON/unet/diffusion_pytorch_model.safetensors",
                                             "IDM-VTON/unet_encoder") is True
    with pytest.raises(InfuseError, match="input 'garment_unet': model file 'IDM-VTON/nothing' was not found"):
        InfuseLoadIDMVTON.execute("IDM-VTON/unet", "IDM-VTON/nothing", "fp32")
