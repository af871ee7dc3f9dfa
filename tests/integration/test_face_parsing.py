"""PuLID's face parser: facexlib's BiSeNet (`parsing_bisenet.pth`) restated in extractors/face_parsing.py, loaded from
a file in the published key layout (random weights, tests/support/face_parsing_files.py), against facexlib's own
BiSeNet as the reference; and the face-features image PuLID feeds EVA-CLIP (grey face, white background labels).

facexlib is installed with `pip install --no-deps facexlib` (its parsing network needs torch only) and its
facexlib/parsing/{resnet,bisenet}.py are imported by file path, so facexlib's package __init__ (cv2, filterpy, numba)
never runs."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.extractors.face_parsing import (BG_LABELS, MEAN, STD, face_features_image, face_labels,
                                                    load_face_parser)
from support.face_parsing_files import bisenet_state_dict, write_bisenet


def facexlib_parsing():
    """facexlib/parsing/bisenet.py (and the resnet.py it imports relatively) as a bare package."""
    spec = importlib.util.find_spec("facexlib")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("facexlib is not installed (pip install --no-deps facexlib): the reference for BiSeNet")
    folder = Path(list(spec.submodule_search_locations)[0]) / "parsing"
    name = "_facexlib_parsing_reference"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
        for sub in ("resnet", "bisenet"):
            sub_spec = importlib.util.spec_from_file_location(f"{name}.{sub}", folder / f"{sub}.py")
            module = importlib.util.module_from_spec(sub_spec)
            sys.modules[sub_spec.name] = module
            sub_spec.loader.exec_module(module)
    return sys.modules[f"{name}.bisenet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("face_parsing")
    sd = write_bisenet(folder / "parsing_bisenet.pth", seed=1)
    return folder, sd


@pytest.fixture(scope="module")
def reference(files):
    folder, _ = files
    model = facexlib_parsing().BiSeNet(num_class=19)
    # as facexlib's init_parsing_model loads it
    model.load_state_dict(torch.load(folder / "parsing_bisenet.pth", map_location=lambda s, loc: s), strict=True)
    return model.eval()


def faces(batch=2, size=512, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_file_gives_facexlibs_bisenet_outputs(files, reference):
    folder, _ = files
    parser = load_face_parser(str(folder / "parsing_bisenet.pth"))
    x = (faces() - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(x)
        heads = parser.model(x)
    assert len(heads) == 3 and all(h.shape == (2, 19, 512, 512) for h in heads)
    for got, want in zip(heads, expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    torch.testing.assert_close(parser(x), expected[0], atol=1e-4, rtol=0)


def test_face_features_image_is_pulids(files, reference):
    """PuLID's get_id_embedding, line for line, on facexlib's network."""
    from torchvision.transforms.functional import normalize

    folder, _ = files
    parser = load_face_parser(str(folder / "parsing_bisenet.pth"))
    image = faces(seed=3)
    with torch.no_grad():
        parsing_out = reference(normalize(image, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))[0]
    parsing_out = parsing_out.argmax(dim=1, keepdim=True)
    bg = sum(parsing_out == i for i in [0, 16, 18, 7, 8, 9, 14, 15]).bool()
    assert bg.any() and not bg.all()            # both branches of the where are exercised
    gray = (0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]).repeat(1, 3, 1, 1)
    expected = torch.where(bg, torch.ones_like(image), gray)

    torch.testing.assert_close(face_labels(image, parser), parsing_out, atol=0, rtol=0)
    got = face_features_image(image.permute(0, 2, 3, 1), parser)       # ComfyUI's [B, H, W, 3]
    assert got.shape == (2, 3, 512, 512) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


class ForcedLabels:
    """A parser stub: one-hot logits of a fixed label map; records what it was given."""

    def __init__(self, labels: torch.Tensor):
        self.labels, self.seen = labels, None

    def __call__(self, pixels):
        self.seen = pixels
        return torch.nn.functional.one_hot(self.labels, 19).permute(0, 3, 1, 2).float()


def test_background_labels_turn_white_and_the_rest_grey():
    labels = torch.arange(20).remainder(19).view(1, 4, 5)            # every class, 0..18, then 0 again
    image = torch.zeros(1, 3, 4, 5)
    image[:, 0], image[:, 1], image[:, 2] = 0.2, 0.6, 1.0            # grey = 0.0598 + 0.3522 + 0.114
    stub = ForcedLabels(labels)
    out = face_features_image(image, stub)
    grey = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0
    for label in range(19):
        where = labels[0] == label
        want = 1.0 if label in (0, 16, 18, 7, 8, 9, 14, 15) else grey
        assert torch.allclose(out[0][:, where], torch.full_like(out[0][:, where], want)), label
    assert set(BG_LABELS) == {0, 7, 8, 9, 14, 15, 16, 18}
    # the parser sees ImageNet-normalised RGB, channels first, from either layout
    torch.testing.assert_close(stub.seen[0, :, 0, 0], (torch.tensor([0.2, 0.6, 1.0]) - torch.tensor(MEAN))
                               / torch.tensor(STD))
    torch.testing.assert_close(face_features_image(image.permute(0, 2, 3, 1), stub), out)


def test_a_bare_network_and_wrapped_files_work(files, tmp_path):
    _, sd = files
    torch.save({"params": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    parser = load_face_parser(str(tmp_path / "wrapped.pth"))
    image = faces(1, 64, seed=5)
    torch.testing.assert_close(face_labels(image, parser.model), face_labels(image, parser), atol=0, rtol=0)


def test_wrong_files_are_named(files, tmp_path):
    folder, sd = files
    torch.save({"lora_unet.weight": torch.zeros(2)}, tmp_path / "lora.pth")
    with pytest.raises(InfuseError, match="not a BiSeNet face-parsing model") as e:
        load_face_parser(str(tmp_path / "lora.pth"))
    assert "parsing_bisenet.pth" in e.value.fix and e.value.input_name == "face_parser"

    raw = (folder / "parsing_bisenet.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InfuseError, match="truncated") as e:
        load_face_parser(str(tmp_path / "truncated.pth"), input_name="parser")
    assert e.value.input_name == "parser" and "download" in e.value.fix

    damaged = {k: v for k, v in sd.items() if k != "cp.arm16.conv_atten.weight"}
    torch.save(damaged, tmp_path / "damaged.pth")
    with pytest.raises(InfuseError, match="damaged or different BiSeNet"):
        load_face_parser(str(tmp_path / "damaged.pth"))

    torch.save(bisenet_state_dict(num_class=11), tmp_path / "eleven.pth")
    with pytest.raises(InfuseError, match="parses 11 classes"):
        load_face_parser(str(tmp_path / "eleven.pth"))

    with pytest.raises(InfuseError, match=r"\[B, H, W, 3\] or \[B, 3, H, W\]"):
        face_features_image(torch.rand(2, 64, 64), ForcedLabels(torch.zeros(1, 64, 64, dtype=torch.long)))
