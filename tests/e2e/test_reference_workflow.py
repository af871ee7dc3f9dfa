"""The shipped reference-only workflow on a real server."""
import pytest

from support.server import execution_error
from support.workflow_edits import add, edit
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


GUIDANCE = {"SelfAttentionGuidance": {"scale": 0.5, "blur_sigma": 2.0}, "PerturbedAttentionGuidance": {"scale": 3.0}}


@pytest.mark.parametrize("guidance", sorted(GUIDANCE))
@pytest.mark.parametrize("order", ["guidance_first", "reference_first"])
def test_reference_only_with_core_attention_guidance_in_either_order(server, guidance, order):
    """SAG before Reference Only crashed KSampler (its patch got the reference keys); after it, Reference Only's
    middle-block attention was dropped; PAG's perturbed pass was shadowed. 128 px: SAG needs a middle block of more
    than one token."""
    wf = shipped_workflow("reference_only", width=128, height=128)
    if order == "guidance_first":
        edit(add(wf, "20", guidance, model=["1", 0], **GUIDANCE[guidance]), "4", model=["20", 0])
    else:
        edit(add(wf, "20", guidance, model=["4", 0], **GUIDANCE[guidance]), "8", model=["20", 0])
    entry = server.run(wf)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    plain_guidance = shipped_workflow("reference_only", width=128, height=128)
    edit(add(plain_guidance, "20", guidance, model=["1", 0], **GUIDANCE[guidance]), "8", model=["20", 0])
    del plain_guidance["4"]
    assert saved(server, entry) != saved(server, server.run(plain_guidance))
