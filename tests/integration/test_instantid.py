"""InstantID in-process: the adapter through the dispatcher, IdentityNet fed the face tokens as its context,
stacked with IP-Adapter on one SDXL model and sampled with ComfyUI's samplers."""
import comfy.controlnet
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.core.records import FaceEmbeds
from comfyui_infuse.extractors.keypoints import keypoints_images
from comfyui_infuse.mechanisms.decoupled_attention.ipadapter import apply_ipadapter, image_tokens
from comfyui_infuse.mechanisms.loaders.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.mechanisms.recipes.instantid import face_tokens, identitynet_conditioning
from support import ipadapter_files as f

NODE = "Infuse InstantID"


@pytest.fixture(scope="module")
def parts(tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("instantid")
    model = tiny.build_model("tiny_sdxl", seed=5)
    sites = model_sites(model)
    ctx = tiny.MODELS["tiny_sdxl"][1]["context_dim"]
    widths = [s.inner_dim for s in sites]
    instantid = parse_ipadapter({"image_proj": f.image_proj("resampler", cross=ctx, clip_hidden=512, resampler_dim=128),
                                 "ip_adapter": f.ip_layers(widths, ctx, seed=7)}, "ip-adapter.bin")
    ipadapter = parse_ipadapter({"image_proj": f.image_proj("linear", cross=ctx, clip_pooled=24),
                                 "ip_adapter": f.ip_layers(widths, ctx, seed=8)}, "ip-adapter_sdxl.bin")
    control = comfy.controlnet.load_controlnet(str(tiny.write_controlnet(work / "identitynet.safetensors")))
    faces = FaceEmbeds.from_raw("antelopev2", torch.randn(1, 512, generator=torch.Generator().manual_seed(1)) * 20)
    faces.kps = torch.tensor([[[20.0, 20], [44, 20], [32, 32], [22, 46], [42, 46]]])
    return model, instantid, ipadapter, control, faces


def conditioning(tiny, seed):
    return tiny.text_conditioning("tiny_sdxl", seed)


def test_identitynet_sees_the_face_tokens_not_the_text(tiny, parts):
    model, instantid, _, control, faces = parts
    cond, uncond = face_tokens(instantid, faces)
    kps = keypoints_images(faces.kps, (64, 64), (64, 64))
    pos, neg = identitynet_conditioning(conditioning(tiny, 1), conditioning(tiny, 2), control, kps, cond, uncond,
                                        0.8, 0.0, 1.0)
    seen = []
    hook = control.control_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["context"].detach().clone()), with_kwargs=True)
    try:
        out = tiny.sample(model, pos, neg, steps=2)
    finally:
        hook.remove()
    assert torch.isfinite(out).all() and len(seen) == 2                  # one ControlNet pass per step
    context = seen[0]                                                    # cond and uncond rows, batched
    assert context.shape[1:] == cond.shape[1:]
    rows = {tuple(r.flatten()[:4].tolist()) for r in context}
    assert rows == {tuple(cond[0].flatten()[:4].tolist()), tuple(uncond[0].flatten()[:4].tolist())}
    plain = tiny.sample(model, conditioning(tiny, 1), conditioning(tiny, 2), steps=2)
    assert not torch.equal(out, plain)


def test_uncond_is_the_zero_embedding_or_seeded_noise(parts):
    _, instantid, _, _, faces = parts
    _, zero_uncond = face_tokens(instantid, faces)
    expected = instantid.projection.float()(torch.zeros(1, 1, 512))
    torch.testing.assert_close(zero_uncond, expected, rtol=0, atol=1e-6)
    _, noisy = face_tokens(instantid, faces, noise=0.35)
    _, noisy_again = face_tokens(instantid, faces, noise=0.35)
    assert not torch.allclose(noisy, zero_uncond) and torch.equal(noisy, noisy_again)


def test_ipadapter_and_instantid_stack_and_removing_one_leaves_the_other(tiny, parts):
    model, instantid, ipadapter, _, faces = parts
    from comfyui_infuse.core.records import ImageEmbeds
    g = torch.Generator().manual_seed(3)
    embeds = ImageEmbeds("test", torch.randn(1, 24, generator=g), torch.randn(1, 5, 8), torch.randn(1, 5, 8))
    ip_c, ip_u = image_tokens(ipadapter, embeds=embeds)
    id_c, id_u = face_tokens(instantid, faces)

    both = model.clone()
    ip = apply_ipadapter(both, ipadapter, ip_c, ip_u, weight=0.7)
    face = apply_ipadapter(both, instantid, id_c, id_u, weight=0.8)
    per_site = [d for d in dispatcher.dispatchers(both.model_options) if d.kind == "attn2"]
    assert len(per_site) == len(model_sites(model)) and all(d.contributions == (ip, face) for d in per_site)

    only_ip = model.clone()
    apply_ipadapter(only_ip, ipadapter, ip_c, ip_u, weight=0.7)
    only_face = model.clone()
    apply_ipadapter(only_face, instantid, id_c, id_u, weight=0.8)
    pos, neg = conditioning(tiny, 1), conditioning(tiny, 2)
    run = lambda m: tiny.sample(m, pos, neg, steps=2)
    out_both = run(both)
    assert not torch.equal(out_both, run(only_ip)) and not torch.equal(out_both, run(only_face))
    face.weight = 0.0
    assert torch.equal(run(both), run(only_ip))
    face.weight, ip.weight = 0.8, 0.0
    assert torch.equal(run(both), run(only_face))


def test_wrong_parts_are_refused(tiny, parts, tmp_path):
    model, instantid, ipadapter, control, faces = parts
    with pytest.raises(InfuseError, match="is not an InstantID adapter"):
        face_tokens(ipadapter, faces)
    sd15_control = comfy.controlnet.load_controlnet(str(tiny.write_controlnet(tmp_path / "c.safetensors",
                                                                               "tiny_sd15")))
    cond, uncond = face_tokens(instantid, faces)
    with pytest.raises(InfuseError, match="input 'control_net': the ControlNet's cross-attention takes 64-wide"):
        identitynet_conditioning(conditioning(tiny, 1), conditioning(tiny, 2), sd15_control,
                                 torch.zeros(1, 64, 64, 3), cond, uncond, 1.0, 0.0, 1.0)
    with pytest.raises(InfuseError, match="is an SDXL IP-Adapter but the model is SD1.5"):
        apply_ipadapter(tiny.build_model("tiny_sd15").clone(), instantid, cond, uncond)


def test_mask_limits_identitynet_residuals_to_the_region(tiny, parts):
    model, instantid, _, control, faces = parts
    cond, uncond = face_tokens(instantid, faces)
    kps = keypoints_images(faces.kps, (64, 64), (64, 64))
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0                                  # left half
    pos, neg = identitynet_conditioning(conditioning(tiny, 1), conditioning(tiny, 2), control, kps, cond, uncond,
                                        1.0, 0.0, 1.0, mask=mask)
    c_net = pos[0][1]["control"]
    assert neg[0][1]["control"] is c_net and type(c_net).__name__ == "MaskedControlNet"
    residual = {"input": [torch.ones(2, 4, 8, 8)], "middle": [torch.ones(2, 4, 4, 4)], "output": []}
    merged = c_net.control_merge(residual, None, None)
    assert torch.all(merged["input"][0][..., :4] == 1) and torch.all(merged["input"][0][..., 4:] == 0)
    assert torch.all(merged["middle"][0][..., :2] == 1) and torch.all(merged["middle"][0][..., 2:] == 0)
    out = tiny.sample(model, pos, neg, steps=1)          # the masked ControlNet runs in a real sampler
    assert torch.isfinite(out).all()


def test_instantid_file_layout_is_recognised(tmp_path, tiny):
    """ip_adapter keys 1..139 (SDXL) and the Resampler image_proj -> an InstantID-compatible adapter."""
    from comfyui_infuse.mechanisms.loaders.ipadapter_file import load_ipadapter
    from comfyui_infuse.mechanisms.recipes.instantid import check_instantid

    widths = [w // 8 for w in f.SDXL_SITE_WIDTHS]
    path = f.write(tmp_path / "ip-adapter.bin", f.image_proj("resampler", cross=256, clip_hidden=512,
                                                              resampler_dim=128), f.ip_layers(widths, 256))
    adapter = load_ipadapter(str(path))
    check_instantid(adapter)
    assert sorted(2 * n + 1 for n in adapter.kv) == list(range(1, 140, 2)) and adapter.tokens == 16


def test_instantid_node_refuses_a_reversed_range(tiny, parts):
    from comfyui_infuse.nodes.instantid_nodes import InfuseInstantIDAdapter

    model, instantid, _, _, faces = parts
    with pytest.raises(InfuseError, match="Infuse InstantID Adapter, input 'start_percent'"):
        InfuseInstantIDAdapter.execute(model, instantid, faces, "average", 0.0, 0.8, 0.9, 0.1)


def test_faces_passed_through_without_a_face_are_left_out_and_none_at_all_turns_instantid_off(tiny, parts):
    from comfyui_infuse.nodes.instantid_nodes import InfuseIdentityNet, InfuseInstantIDAdapter

    model, instantid, _, control, faces = parts
    two = FaceEmbeds.from_raw("antelopev2", torch.cat([faces.embedding, torch.zeros(1, 512)]))
    two.kps, two.image_hw = torch.cat([faces.kps, torch.zeros(1, 5, 2)]), torch.full((2, 2), 64.0)
    two.found = torch.tensor([True, False])
    one = two.select(torch.tensor([True, False]))
    adapter = lambda fe: InfuseInstantIDAdapter.execute(model, instantid, fe, "concat", 0.0, 0.8, 0.0, 1.0)
    partial = adapter(two)
    (c,) = dispatcher.contributions(partial.args[0].model_options)
    (c_one,) = dispatcher.contributions(adapter(one).args[0].model_options)
    assert torch.equal(c.tokens[0], c_one.tokens[0])
    assert partial.ui["text"] == ["No face in image(s) 2: the face adapter uses the other 1 face(s)."]

    nobody = two.select(torch.tensor([False, True]))
    off = adapter(nobody)
    assert off.args[0] is model and "is off (weight 0)" in off.ui["text"][0]
    pos, neg = conditioning(tiny, 1), conditioning(tiny, 2)
    net = InfuseIdentityNet.execute(pos, neg, control, instantid, nobody, "average", 0.0, 0.8, 0.0, 1.0)
    assert net.args[0] is pos and net.args[1] is neg and "IdentityNet is off" in net.ui["text"][0]
