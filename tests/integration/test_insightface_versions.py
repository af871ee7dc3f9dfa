"""The face tests run under insightface 0.7.3 (what most ComfyUI installs have) and 2.x (what PyPI serves now).

`.ci/run` runs the face test files a second time with insightface 0.7.3 first on PYTHONPATH and
INFUSE_EXPECT_INSIGHTFACE=0.7.3: the first test here fails if another version was imported, so that run cannot
silently test 2.x again. The stand-in ONNX models must work in a plain onnxruntime session with default options
(insightface 0.7.3 opens them so), at any input size.
"""
import os

import numpy as np
import pytest

from support import face_models as fm

insightface = pytest.importorskip("insightface")


def test_insightface_version_is_the_one_asked_for():
    expected = os.environ.get("INFUSE_EXPECT_INSIGHTFACE")
    print(f"insightface {insightface.__version__} from {os.path.dirname(insightface.__file__)}")
    if expected:
        assert insightface.__version__ == expected, (
            f"INFUSE_EXPECT_INSIGHTFACE={expected} but insightface {insightface.__version__} was imported "
            f"from {insightface.__file__}")


@pytest.mark.parametrize("pack", sorted(fm.LAYOUTS))
def test_stand_in_models_run_in_a_default_onnxruntime_session_at_any_size(tmp_path, pack):
    import onnxruntime as ort

    folder = fm.write_pack(tmp_path, pack)
    det, rec = (str(folder / f) for f in fm.LAYOUTS[pack])
    session = ort.InferenceSession(det, providers=["CPUExecutionProvider"])   # default options, as 0.7.3 does
    for height, width in ((256, 320), (640, 640), (96, 224), (256, 320)):    # sizes change within one session
        outs = session.run(None, {"input.1": np.zeros((1, 3, height, width), np.float32)})
        anchors = [2 * (height // s) * (width // s) for s in fm.STRIDES]
        assert [o.shape for o in outs] == [(n, k) for k in (1, 4, 10) for n in anchors]
    rec_session = ort.InferenceSession(rec, providers=["CPUExecutionProvider"])
    for n in (1, 3):
        assert rec_session.run(None, {"input.1": np.zeros((n, 3, 112, 112), np.float32)})[0].shape == (n, 512)


def test_insightface_scrfd_finds_the_stand_in_face_where_expected(tmp_path):
    from insightface.model_zoo import model_zoo

    folder = fm.write_pack(tmp_path, "buffalo_l")
    detector = model_zoo.get_model(str(folder / fm.LAYOUTS["buffalo_l"][0]), providers=["CPUExecutionProvider"])
    assert detector.taskname == "detection"
    detector.prepare(ctx_id=-1, input_size=(640, 640))
    for cells in ([(9, 8)], [(2, 3), (7, 5)]):
        bboxes, kpss = detector.detect(fm.face_image(cells, 640, 640)[:, :, ::-1].copy(), max_num=0)
        assert len(bboxes) == len(cells)
        found = sorted(zip(bboxes.tolist(), kpss.tolist()))
        for (box, kps), cell in zip(found, sorted(cells)):
            want_box, want_kps = fm.expected_face(cell)
            np.testing.assert_allclose(box[:4], want_box, atol=1e-3)
            np.testing.assert_allclose(kps, want_kps, atol=1e-3)
