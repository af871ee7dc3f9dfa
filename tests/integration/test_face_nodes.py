"""Face nodes in-process: Face Analysis feeds FaceID (embeds) and FaceID-Plus (CLIP of the aligned crops)."""
import folder_paths
import pytest
import torch
from test_ipadapter_nodes import DEFAULTS

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.mechanisms.loaders.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites
from comfyui_infuse.nodes.face_nodes import InfuseFaceAnalysis, InfuseFaceKeypoints
from comfyui_infuse.nodes.ipadapter_nodes import InfuseIPAdapter
from support import clip_models, face_models
from support import ipadapter_files as f


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    face_models.write_pack(root, "antelopev2")
    folder_paths.add_model_folder_path("insightface", str(root))
    return root


def image(cells):
    return torch.from_numpy(face_models.face_image(cells, 640, 640)[None]).float() / 255


def test_analysis_outputs_embeds_keypoints_and_crops(faces_root):
    faces, kps, crops = InfuseFaceAnalysis.execute(image([(6, 7)]), "antelopev2", 640, "largest", 0, 224).args
    assert faces.embedding.shape == (1, 512) and faces.image_hw.tolist() == [[640.0, 640.0]]
    assert kps.shape == (1, 640, 640, 3) and kps.max() > 0.99
    assert crops.shape == (1, 224, 224, 3)
    redrawn = InfuseFaceKeypoints.execute(faces, 320, 320).args[0]
    assert redrawn.shape == (1, 320, 320, 3)


def test_faceid_plus_from_analysis_and_crops(faces_root, tiny, tmp_path):
    clip_models.register_tiny_open_clip(tmp_path)
    clip_models.write_open_clip(tmp_path / "clip.safetensors")
    from comfyui_infuse.extractors.clip_vision import load_open_clip

    encoder = load_open_clip(clip_models.TINY_ARCH, str(tmp_path / "clip.safetensors"))
    model = tiny.build_model("tiny_sd15", seed=2)
    ctx = tiny.MODELS["tiny_sd15"][1]["context_dim"]
    adapter = parse_ipadapter({"image_proj": f.image_proj("faceid_plus", cross=ctx, clip_hidden=40),
                               "ip_adapter": f.ip_layers([s.inner_dim for s in model_sites(model)], ctx,
                                                         lora_rank=4)}, "faceid-plusv2.bin")
    faces, _, crops = InfuseFaceAnalysis.execute(image([(6, 7)]), "antelopev2", 640, "largest", 0, 224).args
    patched = InfuseIPAdapter.execute(model, adapter, image=crops, open_clip=encoder, face_embeds=faces,
                                      **DEFAULTS).args[0]
    pos, neg = tiny.text_conditioning("tiny_sd15", 1), tiny.text_conditioning("tiny_sd15", 2)
    assert not torch.equal(tiny.sample(patched, pos, neg), tiny.sample(model, pos, neg))
    with pytest.raises(InfuseError, match="needs a reference image"):
        InfuseIPAdapter.execute(model, adapter, face_embeds=faces, **DEFAULTS)


def test_unknown_pack_lists_where_it_looked(faces_root):
    with pytest.raises(InfuseError, match="no insightface model pack 'buffalo_s' was found"):
        InfuseFaceAnalysis.execute(image([(6, 7)]), "buffalo_s", 640, "largest", 0, 224)


def batch(*cells_per_image):
    return torch.cat([image(cells) for cells in cells_per_image])


def analysis(images, no_face):
    out = InfuseFaceAnalysis.execute(images, "antelopev2", 640, "largest", 0, 224, no_face=no_face)
    return out.args, out.ui


def test_an_image_without_a_face_stops_the_batch_by_default(faces_root):
    with pytest.raises(InfuseError, match="Infuse Face Analysis, input 'image': no face was found in image 2"):
        InfuseFaceAnalysis.execute(batch([(6, 7)], [], [(3, 3)]), "antelopev2", 640, "largest", 0, 224)


def test_skip_leaves_the_image_out_of_every_output_and_says_so(faces_root):
    (faces, kps, crops), ui = analysis(batch([(6, 7)], [], [(3, 3)]), "skip")
    (both, both_kps, both_crops), _ = analysis(batch([(6, 7)], [(3, 3)]), "error")
    assert len(faces) == 2 and faces.found.all()
    assert torch.equal(faces.embedding, both.embedding) and torch.equal(kps, both_kps) and torch.equal(crops, both_crops)
    assert ui["text"] == ["No face in image(s) 2: left out."]
    with pytest.raises(InfuseError, match="no face was found in any of the 2 image"):
        analysis(batch([], []), "skip")


def test_pass_through_keeps_an_empty_entry_and_identity_nodes_leave_it_out(faces_root, tiny):
    (faces, kps, crops), ui = analysis(batch([(6, 7)], [], [(3, 3)]), "pass_through")
    assert faces.found.tolist() == [True, False, True] and ui["text"] == ["No face in image(s) 2: passed through."]
    assert not faces.embedding[1].any() and not kps[1].any() and not crops[1].any()
    assert kps[0].any() and crops[0].any()
    assert not InfuseFaceKeypoints.execute(faces, 64, 64).args[0][1].any()

    model = tiny.build_model("tiny_sd15", seed=2)
    ctx = tiny.MODELS["tiny_sd15"][1]["context_dim"]
    adapter = parse_ipadapter({"image_proj": f.image_proj("faceid", cross=ctx),
                               "ip_adapter": f.ip_layers([s.inner_dim for s in model_sites(model)], ctx,
                                                         lora_rank=4)}, "faceid.bin")
    pos, neg = tiny.text_conditioning("tiny_sd15", 1), tiny.text_conditioning("tiny_sd15", 2)
    run = lambda m: tiny.sample(m, pos, neg)
    (skipped, _, _), _ = analysis(batch([(6, 7)], [], [(3, 3)]), "skip")
    passed = InfuseIPAdapter.execute(model, adapter, face_embeds=faces, **DEFAULTS)
    assert torch.equal(run(passed.args[0]), run(InfuseIPAdapter.execute(model, adapter, face_embeds=skipped,
                                                                         **DEFAULTS).args[0]))
    assert passed.ui["text"] == ["No face in image(s) 2: the IP-Adapter 'faceid.bin' uses the other 2 face(s)."]

    (nobody, _, _), _ = analysis(batch([], []), "pass_through")
    off = InfuseIPAdapter.execute(model, adapter, face_embeds=nobody, **DEFAULTS)
    assert torch.equal(run(off.args[0]), run(model))
    assert off.ui["text"] == ["No face in any input image (1, 2): the IP-Adapter 'faceid.bin' is off (weight 0) for "
                              "this run."]


def test_face_embeds_saved_before_pass_through_existed_still_load(tmp_path):
    from comfyui_infuse.core.records import FaceEmbeds, from_tensors, to_tensors

    tensors, meta = to_tensors(FaceEmbeds.from_raw("antelopev2", torch.randn(2, 512)))
    del tensors["found"]
    assert from_tensors(FaceEmbeds, tensors, meta).found.tolist() == [True, True]
