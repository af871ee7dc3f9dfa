"""The shipped reference-only workflow on a real server."""
import pytest

from support.server import execution_error
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e


def saved(server, entry):
    return server.output_file(entry["outputs"]["10"]["images"][0]).read_bytes()


def test_reference_only_changes_the_image_and_weight_zero_does_not(server):
    wf = shipped_workflow("reference_only")
    with_ref = server.run(wf)
    assert with_ref["status"]["status_str"] == "success", with_ref["status"]
    wf["4"]["inputs"]["weight"] = 0.0
    zero = server.run(wf)
    plain = shipped_workflow("reference_only")
    plain["8"]["inputs"]["model"] = ["1", 0]
    del plain["4"]
    without = server.run(plain)
    assert saved(server, zero) == saved(server, without) != saved(server, with_ref)


def test_reference_on_an_unsupported_model_is_refused(server):
    error = execution_error(server.run(shipped_workflow("reference_only", ckpt_name="tiny_sd21.safetensors")))
    assert error["node_type"] == "InfuseReferenceOnly" and "the model is a SD20 model" in error["exception_message"]
    assert server.alive()
