"""Infuse Face Similarity in-process with the test insightface pack (a detector that finds white squares, a
recogniser that is a fixed linear map of the aligned crop): the same face elsewhere scores 1, another face less, an
image without a face scores -1 with a note while the rest of the batch is scored; bad references are named."""
import folder_paths
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.core.records import FaceEmbeds
from comfyui_infuse.nodes.face_nodes import InfuseFaceAnalysis, InfuseFaceSimilarity
from support import face_models


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface_similarity")
    face_models.write_pack(root, "antelopev2")
    folder_paths.add_model_folder_path("insightface", str(root))


def image(cells, marked=False):
    return torch.from_numpy(face_models.face_image(cells, 640, 640, marked)).float()[None] / 255


def test_scores_per_image_with_a_clear_value_where_there_is_no_face(pack):
    reference = InfuseFaceAnalysis.execute(image([(6, 7)]), "antelopev2", 640, "largest", 0, 224).args[0]
    batch = torch.cat([image([(10, 3)]), image([], ), image([(4, 12)], marked=True)])
    out = InfuseFaceSimilarity.execute(reference, batch, 640, "largest")
    scores, text, drawn = out.args
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert scores[1] == -1.0 and "image 2: no face" in text
    assert -1.0 < scores[2] < 0.99
    assert drawn.shape == batch.shape and not torch.equal(drawn, batch)
    assert any("No face in image(s) 2" in t for t in out.ui["text"])


def test_a_reference_without_a_face_or_an_unknown_pack_is_named(pack):
    empty = InfuseFaceAnalysis.execute(image([]), "antelopev2", 640, "largest", 0, 224, "pass_through").args[0]
    with pytest.raises(InfuseError, match=r"^Infuse Face Similarity, input 'reference_faces': the reference has no "):
        InfuseFaceSimilarity.execute(empty, image([(6, 7)]), 640, "largest")
    other = FaceEmbeds.from_raw("buffalo_x", torch.randn(1, 512))
    with pytest.raises(InfuseError, match=r"input 'reference_faces': the reference faces were analysed with "
                                          r"'buffalo_x', and no insightface model pack 'buffalo_x' was found"):
        InfuseFaceSimilarity.execute(other, image([(6, 7)]), 640, "largest")
