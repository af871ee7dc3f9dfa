"""Small ONNX face models with the exact signatures insightface expects, in the real folder layout.

- Detector (SCRFD, as `scrfd_10g_bnkps.onnx` in antelopev2 / `det_10g.onnx` in buffalo_l): input `input.1`
  [1, 3, H, W]; 9 outputs: scores [N, 1], boxes [N, 4], keypoints [N, 10] for strides 8, 16, 32, two anchors
  per cell. It "fires" on bright stride-32 cells: score = sigmoid(20 * (mean brightness - 0.5)), so a white
  32x32 square aligned to the 32-pixel grid on black is one face, at a known place:
  box = the cell centre -/+ BOX_DISTANCE * 32; keypoints = the cell centre + KPS_OFFSETS * 32.
- Recogniser (ArcFace, `glintr100.onnx` / `w600k_r50.onnx`): input [N, 3, 112, 112] -> output [N, 512], a fixed
  random linear map of the 8x8-pooled aligned crop, so different faces give different embeddings.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

STRIDES = (8, 16, 32)
BOX_DISTANCE = 2.0                     # l, t, r, b in stride units
KPS_OFFSETS = np.array([[-0.6, -0.5], [0.6, -0.5], [0.0, 0.1], [-0.45, 0.6], [0.45, 0.6]], dtype=np.float32)

LAYOUTS = {   # pack name -> (detector file, recogniser file), as the real packs name them
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
}


def _detector(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    nodes, inits = [], []
    const = lambda name, arr: inits.append(onnx.numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["gray"], axes=[1], keepdims=1))
    const("zero", 0.0), const("one", 1.0), const("half", 0.5), const("gain", 20.0)
    outputs = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        nodes.append(helper.make_node("AveragePool", ["gray"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]))
        if s == 32:
            nodes += [helper.make_node("Sub", [f"pool{s}", "half"], [f"c{s}"]),
                      helper.make_node("Mul", [f"c{s}", "gain"], [f"g{s}"]),
                      helper.make_node("Sigmoid", [f"g{s}"], [f"map{s}"])]
        else:
            nodes.append(helper.make_node("Mul", [f"pool{s}", "zero"], [f"map{s}"]))
        # [1, 1, h, w] -> [h*w, 1] -> two anchors per cell, consecutive -> [2*h*w, 1]
        const(f"shape_col{s}", [])
        inits[-1] = onnx.numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), f"shape_col{s}")
        nodes += [helper.make_node("Reshape", [f"map{s}", f"shape_col{s}"], [f"col{s}"]),
                  helper.make_node("Concat", [f"col{s}", f"col{s}"], [f"pair{s}"], axis=1),
                  helper.make_node("Reshape", [f"pair{s}", f"shape_col{s}"], [f"score_{s}"])]
        nodes += [helper.make_node("Mul", [f"score_{s}", "zero"], [f"z{s}"]),
                  helper.make_node("Add", [f"z{s}", "one"], [f"ones{s}"])]
        const(f"dist{s}", [[BOX_DISTANCE] * 4])
        const(f"kpsoff{s}", [KPS_OFFSETS.reshape(-1)])
        nodes += [helper.make_node("Mul", [f"ones{s}", f"dist{s}"], [f"bbox_{s}"]),
                  helper.make_node("Mul", [f"ones{s}", f"kpsoff{s}"], [f"kps_{s}"])]
        for kind in outputs:
            outputs[kind].append(f"{kind}_{s}")
    names = outputs["score"] + outputs["bbox"] + outputs["kps"]
    dims = {"score": 1, "bbox": 4, "kps": 10}
    graph_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", dims[n.split("_")[0]]]) for n in names]
    graph = helper.make_graph(nodes, "scrfd_test", [helper.make_tensor_value_info(
        "input.1", TensorProto.FLOAT, [1, 3, "?", "?"])], graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _recogniser(path: Path, seed: int) -> None:
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((3 * 14 * 14, 512)).astype(np.float32) / 8.0
    inits = [onnx.numpy_helper.from_array(weight, "w"),
             onnx.numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat")]
    nodes = [helper.make_node("AveragePool", ["input.1"], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Reshape", ["p", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["683"])]
    graph = helper.make_graph(nodes, "arcface_test",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_pack(insightface_root: Path, name: str = "antelopev2", nested: bool = False, seed: int = 0) -> Path:
    """models/insightface/models/<name>/ with a detector and a recogniser (nested: one level down, as the
    antelopev2 zip unpacks)."""
    folder = Path(insightface_root) / "models" / name
    if nested:
        folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    det, rec = LAYOUTS[name]
    _detector(folder / det)
    _recogniser(folder / rec, seed)
    return folder


def face_image(cells: list[tuple[int, int]], width: int = 320, height: int = 256) -> np.ndarray:
    """An RGB uint8 image, black with a white 32x32 square at each (column, row) stride-32 cell: one face each."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    for cx, cy in cells:
        img[cy * 32:(cy + 1) * 32, cx * 32:(cx + 1) * 32] = 255
    return img


def expected_face(cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(bbox x1 y1 x2 y2, keypoints [5, 2]) the test detector reports for a square at `cell`, in pixels."""
    centre = np.array([cell[0] * 32.0, cell[1] * 32.0], dtype=np.float32)   # insightface anchors: cell corner
    d = BOX_DISTANCE * 32
    return np.array([centre[0] - d, centre[1] - d, centre[0] + d, centre[1] + d]), centre + KPS_OFFSETS * 32
