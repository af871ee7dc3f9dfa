"""Face nodes in-process: Face Analysis feeds FaceID (embeds) and FaceID-Plus (CLIP of the aligned crops)."""
import numpy as np
import pytest
import torch

import folder_paths
from comfyui_infuse.mechanisms.errors import InfuseError
from comfyui_infuse.mechanisms.ipadapter_file import parse_ipadapter
from comfyui_infuse.mechanisms.sites import model_sites
from comfyui_infuse.nodes.face_nodes import InfuseFaceAnalysis, InfuseFaceKeypoints
from comfyui_infuse.nodes.ipadapter_nodes import InfuseIPAdapter
from support import clip_models, face_models
from support import ipadapter_files as f
from test_ipadapter_nodes import DEFAULTS


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

    encoder = load_open_clip(clip_models.TINY_ARCH, str(tmp_path / "clip.safetensors"), "t")
    model = tiny.build_model("tiny_sd15", seed=2)
    ctx = tiny.MODELS["tiny_sd15"][1]["context_dim"]
    adapter = parse_ipadapter({"image_proj": f.image_proj("faceid_plus", cross=ctx, clip_hidden=40),
                               "ip_adapter": f.ip_layers([s.inner_dim for s in model_sites(model, "t")], ctx,
                                                         lora_rank=4)}, "faceid-plusv2.bin", "t")
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
