"""Face analysis through insightface on ONNX models with the real signatures, in the real folder layout."""
import numpy as np
import pytest
import torch

from comfyui_infuse.core.errors import InfuseError, reported_as
from comfyui_infuse.extractors.face import FaceAnalyzer, analyze, find_pack_folder
from support import face_models as fm

NODE = "Infuse Face Analysis"


def as_image(*arrays):
    return torch.from_numpy(np.stack(arrays)).float() / 255.0


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    fm.write_pack(root, "antelopev2")
    fm.write_pack(root, "buffalo_l", nested=True, seed=1)
    return root


@pytest.fixture(scope="module")
def analyzer(root):
    return FaceAnalyzer("antelopev2", find_pack_folder("antelopev2", [str(root)]))


def test_detected_box_and_keypoints_are_where_the_face_is(analyzer):
    faces = analyze(analyzer, as_image(fm.face_image([(7, 9)], 640, 640)))
    bbox, kps = fm.expected_face((7, 9))
    np.testing.assert_allclose(faces.bbox[0].numpy(), bbox, atol=1e-3)
    np.testing.assert_allclose(faces.kps[0].numpy(), kps, atol=1e-3)
    assert faces.det_score[0] > 0.99 and faces.embedding.shape == (1, 512)
    torch.testing.assert_close(faces.normed.norm(dim=-1), torch.ones(1))
    assert faces.embedding.norm() > 1.5          # raw: not normalised


def test_embeddings_differ_between_faces_and_repeat_for_the_same(analyzer):
    a = analyze(analyzer, as_image(fm.face_image([(3, 3)], 640, 640), fm.face_image([(12, 10)], 640, 640, marked=True),
                                   fm.face_image([(3, 3)], 640, 640), fm.face_image([(12, 10)], 640, 640)))
    assert (a.normed[0] @ a.normed[1]).item() < 0.99         # another person
    assert torch.equal(a.embedding[0], a.embedding[2])        # the same photo
    assert (a.normed[0] @ a.normed[3]).item() > 0.9999        # the same person elsewhere in the frame


def test_selection_largest_left_to_right_and_index(analyzer):
    img = fm.face_image([(14, 4), (2, 12)], 640, 640)
    leftmost = analyze(analyzer, as_image(img), "left-to-right", 0)
    assert leftmost.bbox[0, 0] < 100
    second = analyze(analyzer, as_image(img), "left-to-right", 1)
    assert second.bbox[0, 0] > 300
    with pytest.raises(InfuseError, match="image 1 has 2 face\\(s\\); face index 5 does not exist"):
        analyze(analyzer, as_image(img), "index", 5)


def test_no_face_names_the_image(analyzer):
    with pytest.raises(InfuseError, match="Infuse Face Analysis, input 'image': no face was found in image 2."), \
            reported_as("Infuse Face Analysis"):
        analyze(analyzer, as_image(fm.face_image([(5, 5)], 640, 640), fm.face_image([], 640, 640)))


def test_nested_pack_folder_is_accepted(root):
    folder = find_pack_folder("buffalo_l", [str(root)])
    assert folder.endswith("buffalo_l/buffalo_l")
    analyzer = FaceAnalyzer("buffalo_l", folder)
    assert analyze(analyzer, as_image(fm.face_image([(4, 4)], 640, 640))).embedding.shape == (1, 512)


def test_missing_pack_and_pack_without_detector(root, tmp_path):
    with pytest.raises(InfuseError, match="no insightface model pack 'nope' was found"):
        find_pack_folder("nope", [str(root)])
    folder = tmp_path / "models" / "halfpack"
    folder.mkdir(parents=True)
    (folder / "glintr100.onnx").write_bytes((root / "models" / "antelopev2" / "glintr100.onnx").read_bytes())
    with pytest.raises(InfuseError, match=r"has no detection model \(files found: glintr100.onnx\)"):
        FaceAnalyzer("halfpack", find_pack_folder("halfpack", [str(tmp_path)]))
