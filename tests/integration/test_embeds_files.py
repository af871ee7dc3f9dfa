"""IMAGE_EMBEDS / FACE_EMBEDS saved as .safetensors and loaded back; the wrong encoder is refused."""
import os

import folder_paths
import pytest
import torch
from safetensors import safe_open

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.core.records import FaceEmbeds, ImageEmbeds
from comfyui_infuse.nodes.embeds_nodes import InfuseLoadFaceEmbeds, InfuseLoadImageEmbeds, InfuseSaveEmbeds


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path / "output"))
    monkeypatch.setattr(folder_paths, "input_directory", str(tmp_path / "input"))
    os.makedirs(tmp_path / "output"), os.makedirs(tmp_path / "input")
    return tmp_path


def save_and_move(dirs, **record):
    rel = InfuseSaveEmbeds.execute("infuse/test", **record).args[0]
    src = dirs / "output" / rel
    dst = dirs / "input" / os.path.basename(rel)
    os.replace(src, dst)
    return dst


def test_image_embeds_round_trip_with_encoder_metadata(dirs):
    g = torch.Generator().manual_seed(0)
    embeds = ImageEmbeds("open_clip:ViT-H-14", torch.randn(2, 8, generator=g), torch.randn(2, 5, 6, generator=g),
                         torch.randn(1, 5, 6, generator=g))
    path = save_and_move(dirs, image_embeds=embeds)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["encoder"] == "open_clip:ViT-H-14"
    loaded = InfuseLoadImageEmbeds.execute(path.name).args[0]
    assert loaded.encoder == embeds.encoder
    assert all(torch.equal(getattr(loaded, k), getattr(embeds, k)) for k in ("pooled", "hidden", "uncond_hidden"))


def test_face_embeds_round_trip_and_type_check(dirs):
    faces = FaceEmbeds.from_raw("antelopev2", torch.randn(3, 512))
    path = save_and_move(dirs, face_embeds=faces)
    loaded = InfuseLoadFaceEmbeds.execute(path.name).args[0]
    assert torch.equal(loaded.embedding, faces.embedding) and loaded.model == "antelopev2"
    with pytest.raises(InfuseError, match=f"Infuse Load Image Embeds, input 'embeds_file': '{path.name}' is not a "
                                          "saved ImageEmbeds file"):
        InfuseLoadImageEmbeds.execute(path.name)


def test_embeds_from_another_encoder_are_refused(dirs, tmp_path_factory):
    from comfyui_infuse.extractors.clip_vision import load_open_clip
    from support import clip_models

    work = tmp_path_factory.mktemp("clip")
    clip_models.register_tiny_open_clip(work)
    clip_models.write_open_clip(work / "tiny.safetensors")
    encoder = load_open_clip(clip_models.TINY_ARCH, str(work / "tiny.safetensors"))
    embeds = ImageEmbeds("clip_vision:ViT-H-14", torch.zeros(1, 4), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    path = save_and_move(dirs, image_embeds=embeds)
    with pytest.raises(InfuseError, match=f"was made by clip_vision:ViT-H-14, not by the connected "
                                          f"open_clip:{clip_models.TINY_ARCH}"):
        InfuseLoadImageEmbeds.execute(path.name, open_clip=encoder)


def test_files_outside_the_input_folder_are_refused(dirs):
    with pytest.raises(InfuseError, match="is not a file in the input folder"):
        InfuseLoadFaceEmbeds.execute("../output/x.safetensors")
