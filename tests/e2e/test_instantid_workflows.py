"""The shipped InstantID workflows on a real server: insightface on ONNX models in the real layout, InstantID's
adapter file, an SDXL IdentityNet ControlNet, and IP-Adapter + InstantID on one SDXL model."""
import pytest

from support.server import execution_error
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e


def node_of(wf, class_type):
    return next(k for k, n in wf.items() if n["class_type"] == class_type)


def saved(server, entry, node):
    return server.output_file(entry["outputs"][node]["images"][0]).read_bytes()


@pytest.mark.parametrize("name", ["instantid", "ipadapter_instantid"])
def test_instantid_workflows_run_and_show_the_keypoints(server, name):
    wf = shipped_workflow(name)
    entry = server.run(wf)
    assert entry["status"]["status_str"] == "success", entry["status"]
    preview = entry["outputs"][node_of(wf, "PreviewImage")]["images"]
    assert preview and server.output_file(preview[0]).stat().st_size > 0


def test_instantid_changes_the_image_and_zero_weights_do_not(server):
    wf = shipped_workflow("instantid")
    save = node_of(wf, "SaveImage")
    with_face = saved(server, server.run(wf), save)
    rid = node_of(wf, "InfuseInstantID")
    wf[rid]["inputs"].update(adapter_weight=0.0, identitynet_strength=0.0)
    zero = saved(server, server.run(wf), save)
    plain = shipped_workflow("instantid")
    ks = node_of(plain, "KSampler")
    plain[ks]["inputs"].update(model=["1", 0], positive=["6", 0], negative=["7", 0])
    without = saved(server, server.run(plain), save)
    assert zero == without and with_face != without


def test_no_face_is_an_error_naming_the_image(server):
    entry = server.run(shipped_workflow("instantid", image="no_face.png"))
    error = execution_error(entry)
    assert error["node_type"] == "InfuseFaceAnalysis"
    assert "Infuse Face Analysis, input 'image': no face was found in image 1." in error["exception_message"]
    assert server.alive()


def test_instantid_on_sd15_is_refused(server):
    wf = shipped_workflow("instantid", ckpt_name="v1-5-pruned-emaonly.safetensors")
    error = execution_error(server.run(wf))
    assert error["node_type"] == "InfuseInstantID"
    assert "InstantID needs an SDXL model" in error["exception_message"]


def test_a_photo_without_a_face_passed_through_leaves_the_image_as_without_instantid(server):
    wf = shipped_workflow("instantid", image="no_face.png")
    wf[node_of(wf, "InfuseFaceAnalysis")]["inputs"]["no_face"] = "pass_through"
    save, rid = node_of(wf, "SaveImage"), node_of(wf, "InfuseInstantID")
    entry = server.run(wf)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    assert entry["outputs"][rid]["text"] == ["No face in any input image (1): InstantID is off (weight 0) for this "
                                             "run."]
    plain = shipped_workflow("instantid")
    plain[node_of(plain, "KSampler")]["inputs"].update(model=["1", 0], positive=["6", 0], negative=["7", 0])
    assert saved(server, entry, save) == saved(server, server.run(plain), save)
