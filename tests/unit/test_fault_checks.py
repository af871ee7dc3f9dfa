"""The checks behind the fault suite's fixes: weight files read safely and refused with named errors, images that
are not IMAGE tensors, schedule ranges named by the node's own inputs."""
import pytest
import torch
from safetensors.torch import save_file

from comfyui_infuse.core.errors import InfuseError, check_percent_range, current_node, reported_as
from comfyui_infuse.core.files import load_weights, safetensors_keys
from comfyui_infuse.extractors.clip_vision import as_rgb
from comfyui_infuse.mechanisms.loaders.ipadapter_file import load_ipadapter
from support import faults_files

NODE = "Infuse Test"


def test_at_input_moves_the_error_to_another_input():
    error = InfuseError("too wide.", "use another.", input_name="clip_vision").at_input("image_embeds")
    assert str(error) == "input 'image_embeds': too wide. Fix: use another."
    assert (error.problem, error.fix) == ("too wide.", "use another.")


def test_the_math_names_no_node_and_the_node_adds_its_own():
    def math():
        raise InfuseError("too wide.", "use another.", input_name="embeds")

    with pytest.raises(InfuseError) as e:
        math()
    assert str(e.value) == "input 'embeds': too wide. Fix: use another."
    with pytest.raises(InfuseError) as e, reported_as(NODE, {"embeds": "image_embeds"}):
        assert current_node() == NODE
        math()
    assert str(e.value) == "Infuse Test, input 'image_embeds': too wide. Fix: use another."
    assert e.value.node == NODE and e.value.input_name == "image_embeds"
    assert current_node() is None


def test_an_inner_node_name_is_kept():
    with pytest.raises(InfuseError) as e, reported_as("Outer"), reported_as("Inner"):
        raise InfuseError("bad.", input_name="x")
    assert str(e.value) == "Inner, input 'x': bad."


@pytest.mark.parametrize("start, end", [(0.0, 1.0), (0.3, 0.3), (0.2, 0.9)])
def test_percent_range_accepts_ranges(start, end):
    check_percent_range(start, end, "adapter_")


@pytest.mark.parametrize("start, end", [(0.9, 0.1), (-0.1, 0.5), (0.5, 1.1)])
def test_percent_range_names_the_prefixed_input(start, end):
    with pytest.raises(InfuseError) as e, reported_as(NODE):
        check_percent_range(start, end, "identitynet_")
    assert str(e.value).startswith("Infuse Test, input 'identitynet_start_percent': identitynet_start_percent ")
    assert "Fix: use 0 <= identitynet_start_percent <= identitynet_end_percent <= 1." in str(e.value)


def test_code_running_pickles_are_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    for path in (faults_files.code_running_torch_file(tmp_path / "a.bin", marker),
                 faults_files.code_running_pickle(tmp_path / "b.pt", marker)):
        with pytest.raises(InfuseError, match="would run code when loaded"):
            load_weights(str(path), "file")
    assert not marker.exists()


def test_a_file_holding_one_tensor_is_named_as_such(tmp_path):
    with pytest.raises(InfuseError, match="holds a Tensor, not a dict of named weights"):
        load_weights(str(faults_files.tensor_only_file(tmp_path / "t.bin")), "file")


def test_truncated_and_unknown_files_are_refused(tmp_path):
    whole = tmp_path / "whole.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(whole))
    cut = faults_files.truncated_copy(whole, tmp_path / "cut.safetensors")
    with pytest.raises(InfuseError, match="truncated"):
        load_weights(str(cut), "file")
    with pytest.raises(InfuseError, match="truncated"):
        safetensors_keys(str(cut), "file")
    (tmp_path / "x.pt2").write_bytes(b"\0")
    with pytest.raises(InfuseError, match="unknown file type"):
        load_weights(str(tmp_path / "x.pt2"), "file")


def test_safetensors_keys_reads_only_the_header(tmp_path):
    path = tmp_path / "k.safetensors"
    save_file({"a.weight": torch.zeros(2), "b.bias": torch.ones(3)}, str(path))
    assert sorted(safetensors_keys(str(path), "file")) == ["a.weight", "b.bias"]
    torch.save({"a": torch.zeros(1)}, tmp_path / "k.bin")
    assert safetensors_keys(str(tmp_path / "k.bin"), "file") is None


def test_a_file_of_another_kind_is_refused_from_its_header(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    save_file({"model.diffusion_model.out.0.weight": torch.zeros(4)}, str(path))
    with pytest.raises(InfuseError, match="'checkpoint.safetensors' is not an IP-Adapter file"):
        load_ipadapter(str(path))


@pytest.mark.parametrize("value", ["reference.png", ["3", 0], 1.0])
def test_a_value_where_an_image_belongs_is_named(value):
    with pytest.raises(InfuseError) as e, reported_as(NODE):
        as_rgb(value, "keypoints")
    assert str(e.value).startswith("Infuse Test, input 'keypoints': got the value ")
    assert "Fix: connect the input" in str(e.value)


def test_grayscale_and_rgba_images_become_rgb():
    rgba = torch.rand(2, 8, 6, 4)
    assert torch.equal(as_rgb(rgba), rgba[..., :3])
    gray = torch.rand(1, 8, 6, 1)
    assert torch.equal(as_rgb(gray), gray.expand(-1, -1, -1, 3))
    with pytest.raises(InfuseError, match="must hold at least one image"):
        as_rgb(torch.zeros(0, 8, 6, 3))
