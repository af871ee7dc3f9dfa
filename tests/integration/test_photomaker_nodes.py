"""Infuse Load PhotoMaker + Infuse PhotoMaker in-process on a tiny SDXL checkpoint (its MODEL and CLIP from ComfyUI's
checkpoint loader): PhotoMaker files in the published layout at the tiny text widths, with a LoRA on every attention
of the UNet, faces from Infuse Face Analysis with the test buffalo_l pack, sampled with ComfyUI's samplers."""
import folder_paths
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.nodes.face_nodes import InfuseFaceAnalysis
from comfyui_infuse.nodes.photomaker_nodes import InfuseLoadPhotoMaker, InfusePhotoMaker
from support import face_models
from support import photomaker_files as pf

PROMPT = "a photo of a man img, in the snow"


@pytest.fixture(scope="module")
def env(tiny, tmp_path_factory):
    import comfy.sd

    root = tmp_path_factory.mktemp("photomaker_models")
    for folder in ("photomaker", "insightface"):
        (root / folder).mkdir()
        folder_paths.add_model_folder_path(folder, str(root / folder))
    face_models.write_pack(root / "insightface", "buffalo_l")
    ckpt = tiny.write_checkpoint(root / "tiny_sdxl.safetensors", "tiny_sdxl", seed=0)
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt))
    cond, _ = clip.encode_from_tokens(clip.tokenize("x"), return_pooled=True)
    l_width = clip.cond_stage_model.clip_l.transformer.text_model.embeddings.token_embedding.weight.shape[1]
    tower = dict(layers=2, width=64, heads=1, projections=(l_width, cond.shape[-1] - l_width))
    lora = pf.lora_weights(pf.diffusers_attention_paths(model), rank=4, seed=1)
    pf.write(root / "photomaker" / "photomaker-v1.bin", pf.id_encoder_v1(seed=2, **tower), lora)
    pf.write(root / "photomaker" / "photomaker-v2.safetensors", pf.id_encoder_v2(seed=3, **tower), lora)
    real_width = dict(tower, projections=(768, 1280))          # SDXL's real text widths: not the tiny CLIP's
    pf.write(root / "photomaker" / "photomaker-v1-2048.bin", pf.id_encoder_v1(seed=4, **real_width), {})
    faces = [face_models.face_image([(6, 7)], 640, 640), face_models.face_image([(9, 5)], 640, 640),
             face_models.face_image([], 640, 640)]
    photos = torch.stack([torch.from_numpy(f).float() / 255 for f in faces])
    return dict(model=model, clip=clip, photos=photos, sd15=tiny.build_model("tiny_sd15"),
                negative=encode(clip, "blurry"))


def encode(clip, text):
    cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
    return [[cond, {"pooled_output": pooled}]]


def analysis(images, no_face="error"):
    return InfuseFaceAnalysis.execute(images, "buffalo_l", 640, "largest", 0, 224, no_face).args[0]


def load(name):
    return InfuseLoadPhotoMaker.execute(name).args


def apply(env, file="photomaker-v1.bin", **kw):
    args = dict(model=env["model"], clip=env["clip"], photomaker=load(file)[0], images=env["photos"][:1],
                text=PROMPT, trigger_word="img", start_percent=0.0, end_percent=1.0, lora_strength=1.0)
    return InfusePhotoMaker.execute(**(args | kw)).args


def sample(tiny, env, model, positive):
    return tiny.sample(model, positive, env["negative"])


@pytest.mark.parametrize("file,info", [
    ("photomaker-v1.bin", "PhotoMaker v1 (CLIP of each photo; 1 token of 160 per photo; LoRA on 140 attentions)"),
    ("photomaker-v2.safetensors", "PhotoMaker v2 (CLIP of each photo + its ArcFace embedding; 2 tokens of 160"),
])
def test_loader_says_what_it_found(env, file, info):
    assert load(file)[1].startswith(info)


def test_id_lora_and_start_act_and_the_input_model_is_left_alone(tiny, env):
    text_only = encode(env["clip"], "a photo of a man, in the snow")
    plain = sample(tiny, env, env["model"], text_only)
    full = sample(tiny, env, *apply(env))
    never = sample(tiny, env, *apply(env, start_percent=1.0, lora_strength=0.0))
    no_lora = sample(tiny, env, *apply(env, lora_strength=0.0))
    assert torch.equal(never, plain)                    # the ID never acts, no LoRA: the prompt without the trigger
    assert not torch.equal(no_lora, plain) and not torch.equal(full, no_lora)
    assert torch.equal(sample(tiny, env, env["model"], text_only), plain)          # nothing left on the input model


def test_v2_stacks_every_photo(tiny, env):
    photos = env["photos"][:2]
    one = apply(env, "photomaker-v2.safetensors", images=photos[:1], face_embeds=analysis(photos[:1]))
    two = apply(env, "photomaker-v2.safetensors", images=photos, face_embeds=analysis(photos))
    assert one[1][0][0].shape == two[1][0][0].shape                 # the copies replace padding: still 77 tokens
    assert not torch.equal(sample(tiny, env, *one), sample(tiny, env, *two))


@pytest.mark.parametrize("case,input_name,text", [
    ("no_trigger", "text", "does not contain the word 'img'. Fix: write 'img' once, right after the class word"),
    ("trigger_twice", "text", "contains 2 times the word 'img'"),
    ("trigger_first", "text", "does not follow a word"),
    ("several_token_trigger", "trigger_word", "'photomaker' is 2 tokens in CLIP's vocabulary (photom, aker)"),
    ("more_photos_than_faces", "face_embeds", "no face was found in reference image(s) 3"),
    ("v1_with_face_embeds", "face_embeds", "is PhotoMaker v1, which takes no face embedding"),
    ("v2_without_face_embeds", "face_embeds", "it needs the ArcFace embedding of each photo"),
    ("sd15_model", "model", "PhotoMaker is made for SDXL; the model is SD15"),
    ("clip_of_another_width", "clip", "the CLIP gives 160-wide text embeddings; 'photomaker-v1-2048.bin' fuses 2048"),
])
def test_bad_input_is_named_before_anything_is_encoded(env, case, input_name, text, monkeypatch):
    from comfyui_infuse.mechanisms.text_embedding import photomaker_model

    photos = env["photos"]
    kw = {"no_trigger": dict(text="a photo of a man"),
          "trigger_twice": dict(text="a man img and a man img"),
          "trigger_first": dict(text="img of a man"),
          "several_token_trigger": dict(text="a photo of a man photomaker", trigger_word="photomaker"),
          "more_photos_than_faces": dict(file="photomaker-v2.safetensors", images=photos,
                                         face_embeds=analysis(photos, "pass_through")),
          "v1_with_face_embeds": dict(face_embeds=analysis(photos[:1])),
          "v2_without_face_embeds": dict(file="photomaker-v2.safetensors"),
          "sd15_model": dict(model=env["sd15"]),
          "clip_of_another_width": dict(file="photomaker-v1-2048.bin")}[case]
    monkeypatch.setattr(photomaker_model.PhotoMakerEncoder, "id_rows", lambda *a: pytest.fail("encoded first"))
    with pytest.raises(InfuseError) as e:
        apply(env, **kw)
    assert str(e.value).startswith(f"Infuse PhotoMaker, input '{input_name}': ") and text in str(e.value), str(e.value)
