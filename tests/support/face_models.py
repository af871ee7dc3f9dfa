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
    """Valid for every onnxruntime session setup (insightface 0.7.3 opens it with default options, 2.x its own):
    each output's row count is its own symbolic dim (`anchors_8`, ...), and every tensor is built from shapes,
    never by multiplying by zero, so onnxruntime's memory planner never sees two sizes under one name."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inits = [], []

    def const(name, arr, dtype=np.float32):
        inits.append(onnx.numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))

    def filled(name, shape_of, value):   # a tensor shaped like `shape_of`, every element `value`
        return [helper.make_node("Shape", [shape_of], [f"{name}_shape"]),
                helper.make_node("ConstantOfShape", [f"{name}_shape"], [name],
                                 value=helper.make_tensor(f"{name}_value", TensorProto.FLOAT, [1], [value]))]

    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["gray"], axes=[1], keepdims=1))   # [1, 1, H, W]
    const("half", 0.5), const("gain", 20.0), const("column", [-1, 1], np.int64)
    outputs = {"score": [], "bbox": [], "kps": []}
    for s in STRIDES:
        # cell brightness [1, 1, h, w] -> one row per cell [h*w, 1] -> two anchors per cell, consecutive [2*h*w, 1]
        nodes += [helper.make_node("AveragePool", ["gray"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
                  helper.make_node("Reshape", [f"pool{s}", "column"], [f"cell{s}"]),
                  helper.make_node("Concat", [f"cell{s}", f"cell{s}"], [f"pair{s}"], axis=1),
                  helper.make_node("Reshape", [f"pair{s}", "column"], [f"anchor{s}"])]
        if s == 32:   # fires on bright cells
            nodes += [helper.make_node("Sub", [f"anchor{s}", "half"], [f"c{s}"]),
                      helper.make_node("Mul", [f"c{s}", "gain"], [f"g{s}"]),
                      helper.make_node("Sigmoid", [f"g{s}"], [f"score_{s}"])]
        else:         # never fires
            nodes += filled(f"score_{s}", f"anchor{s}", 0.0)
        nodes += filled(f"ones{s}", f"anchor{s}", 1.0)
        const(f"dist{s}", [[BOX_DISTANCE] * 4])
        const(f"kpsoff{s}", [KPS_OFFSETS.reshape(-1)])
        nodes += [helper.make_node("Mul", [f"ones{s}", f"dist{s}"], [f"bbox_{s}"]),      # [n, 1] * [1, 4]
                  helper.make_node("Mul", [f"ones{s}", f"kpsoff{s}"], [f"kps_{s}"])]     # [n, 1] * [1, 10]
        for kind in outputs:
            outputs[kind].append(f"{kind}_{s}")
    names = outputs["score"] + outputs["bbox"] + outputs["kps"]
    dims = {"score": 1, "bbox": 4, "kps": 10}
    graph_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"anchors_{n.split('_')[1]}", dims[n.split("_")[0]]])
                     for n in names]
    graph = helper.make_graph(nodes, "scrfd_test", [helper.make_tensor_value_info(
        "input.1", TensorProto.FLOAT, [1, 3, "height", "width"])], graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)   # full_check: shape inference agrees with the declared outputs
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


def face_image(cells: list[tuple[int, int]], width: int = 320, height: int = 256, marked: bool = False) -> np.ndarray:
    """An RGB uint8 image, black with a white 32x32 square at each (column, row) stride-32 cell: one face each.

    Every plain square is the same person: its aligned crop is the same wherever it lies. `marked` gives each square
    a darker left half, another person to the recogniser."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    for cx, cy in cells:
        img[cy * 32:(cy + 1) * 32, cx * 32:(cx + 1) * 32] = 255
        if marked:
            img[cy * 32:(cy + 1) * 32, cx * 32:cx * 32 + 16] = 140
    return img


def expected_face(cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(bbox x1 y1 x2 y2, keypoints [5, 2]) the test detector reports for a square at `cell`, in pixels."""
    centre = np.array([cell[0] * 32.0, cell[1] * 32.0], dtype=np.float32)   # insightface anchors: cell corner
    d = BOX_DISTANCE * 32
    return np.array([centre[0] - d, centre[1] - d, centre[0] + d, centre[1] + d]), centre + KPS_OFFSETS * 32
