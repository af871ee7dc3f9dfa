"""Face analysis with insightface: detector + recogniser ONNX models from models/insightface/models/<name>/.

Per image: bbox, 5 keypoints, raw 512-d embedding, normalised embedding, detection score, for the selected
face (largest by default). Only the detector and the recogniser are loaded (insightface's packs also hold
landmark and gender/age models that nothing here needs). onnxruntime runs on CUDA when onnxruntime-gpu
offers it, else on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import InfuseError
from ..core.records import FaceEmbeds
from .deps import require

SELECTIONS = ("largest", "left-to-right", "index")
NO_FACE = ("error", "skip", "pass_through")
EXPECTED_LAYOUT = ("models/insightface/models/<name>/ holding a detector (antelopev2: scrfd_10g_bnkps.onnx, "
                   "buffalo_l: det_10g.onnx) and a recogniser (antelopev2: glintr100.onnx, buffalo_l: "
                   "w600k_r50.onnx)")


@dataclass
class DetectedFace:
    bbox: np.ndarray          # x1, y1, x2, y2 in pixels
    kps: np.ndarray           # [5, 2]: left eye, right eye, nose, mouth left, mouth right
    det_score: float
    embedding: np.ndarray     # [512] raw

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


def providers() -> list[str]:
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def find_pack_folder(name: str, roots: list[str]) -> str:
    """The folder holding the pack's ONNX files: <root>/models/<name>/, or one level down (a common unzip)."""
    tried = []
    for root in roots:
        for folder in (os.path.join(root, "models", name), os.path.join(root, "models", name, name)):
            tried.append(folder)
            if os.path.isdir(folder) and any(f.endswith(".onnx") for f in os.listdir(folder)):
                return folder
    raise InfuseError(f"no insightface model pack '{name}' was found (looked in: {'; '.join(tried)}).",
                      f"put the pack's ONNX files in {EXPECTED_LAYOUT}.", input_name="model_pack")


class FaceAnalyzer:
    def __init__(self, name: str, folder: str, det_size: int = 640):
        require("insightface")
        from insightface.model_zoo import model_zoo

        self.name, self.folder, self.det_size = name, folder, det_size
        found = {}
        files = sorted(f for f in os.listdir(folder) if f.endswith(".onnx"))
        for f in files:
            try:
                model = model_zoo.get_model(os.path.join(folder, f), providers=providers())
            except Exception as e:  # a broken file is reported with the layout below
                raise InfuseError(f"'{f}' in {folder} could not be loaded by onnxruntime ({e}).",
                                  "download the pack again.", input_name="model_pack") from e
            if model is not None and model.taskname in ("detection", "recognition"):
                found.setdefault(model.taskname, model)
        missing = [t for t in ("detection", "recognition") if t not in found]
        if missing:
            raise InfuseError(f"the folder {folder} has no {' and no '.join(missing)} model "
                              f"(files found: {', '.join(files) or 'none'}).",
                              f"the expected layout is {EXPECTED_LAYOUT}.", input_name="model_pack")
        self.detector, self.recogniser = found["detection"], found["recognition"]
        self.detector.prepare(ctx_id=0, input_size=(det_size, det_size))

    def faces(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Every face in an RGB uint8 image."""
        from insightface.app.common import Face

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        bboxes, kpss = self.detector.detect(bgr, input_size=(self.det_size, self.det_size))
        out = []
        for i in range(bboxes.shape[0]):
            face = Face(bbox=bboxes[i, :4], kps=kpss[i], det_score=bboxes[i, 4])
            self.recogniser.get(bgr, face)
            out.append(DetectedFace(bboxes[i, :4].astype(np.float32), kpss[i].astype(np.float32),
                                    float(bboxes[i, 4]), np.asarray(face.embedding, dtype=np.float32)))
        return out


def select_face(faces: list[DetectedFace], selection: str, index: int, image_number: int) -> DetectedFace:
    if not faces:
        raise InfuseError(f"no face was found in image {image_number}.",
                          "use a photo where the face is clearly visible, or a larger detection size.",
                          input_name="image")
    if selection == "largest":
        return max(faces, key=lambda f: f.area)
    ordered = sorted(faces, key=lambda f: f.bbox[0]) if selection == "left-to-right" else \
        sorted(faces, key=lambda f: -f.area)
    if index >= len(ordered):
        raise InfuseError(f"image {image_number} has {len(ordered)} face(s); face index {index} does not exist.",
                          f"use an index from 0 to {len(ordered) - 1}.", input_name="face_index")
    return ordered[index]


def analyze(analyzer: FaceAnalyzer, images: torch.Tensor, selection: str = "largest",
            index: int = 0, no_face: str = "error") -> FaceEmbeds:
    """One selected face per image of a ComfyUI IMAGE batch -> FACE_EMBEDS (progress bar per image).

    An image without a face is an error (`no_face="error"`), or (`"skip"`, `"pass_through"`) a zero entry marked
    not found, which the identity mechanisms leave out; `skip_missing` then drops such entries and their images."""
    import comfy.utils

    from .clip_vision import as_rgb

    if selection not in SELECTIONS:
        raise InfuseError(f"face selection must be one of {SELECTIONS}, got '{selection}'.",
                          "pick largest, left-to-right or index.", input_name="selection")
    if no_face not in NO_FACE:
        raise InfuseError(f"no_face must be one of {NO_FACE}, got '{no_face}'.",
                          "pick error, skip or pass_through.", input_name="no_face")
    images = as_rgb(images)
    picked: list[DetectedFace | None] = []
    bar = comfy.utils.ProgressBar(images.shape[0])
    for k, image in enumerate(images):
        rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        found = analyzer.faces(rgb)
        picked.append(select_face(found, selection, index, k + 1) if found or no_face == "error" else None)
        bar.update(1)
    dim = next((f.embedding.shape[0] for f in picked if f is not None), 512)
    empty = DetectedFace(np.zeros(4, np.float32), np.zeros((5, 2), np.float32), 0.0, np.zeros(dim, np.float32))
    rows = [f if f is not None else empty for f in picked]
    raw = torch.from_numpy(np.stack([f.embedding for f in rows]))
    faces = FaceEmbeds.from_raw(analyzer.name, raw)
    faces.bbox = torch.from_numpy(np.stack([f.bbox for f in rows]))
    faces.kps = torch.from_numpy(np.stack([f.kps for f in rows]))
    faces.det_score = torch.tensor([f.det_score for f in rows])
    faces.image_hw = torch.tensor([list(images.shape[1:3])] * len(rows), dtype=torch.float32)
    faces.found = torch.tensor([f is not None for f in picked])
    return faces


def skip_missing(faces: FaceEmbeds, images: torch.Tensor) -> tuple[FaceEmbeds, torch.Tensor]:
    """The entries with a face and their images (no_face = skip); an error when no image had a face."""
    kept = faces.present()
    if kept is None:
        raise InfuseError(f"no face was found in any of the {len(faces)} image(s), so skipping leaves nothing.",
                          "use photos where the face is clearly visible, a larger detection size, or no_face = "
                          "pass_through to let the identity nodes act as weight 0.", input_name="image")
    return kept, images[faces.found]


_ANALYZERS: dict[tuple[str, int], FaceAnalyzer] = {}


def cached_analyzer(name: str, roots: list[str], det_size: int) -> FaceAnalyzer:
    """ONNX sessions are slow to create: keep the last two analyzers (pack folder, detection size)."""
    folder = find_pack_folder(name, roots)
    key = (folder, det_size)
    if key not in _ANALYZERS:
        if len(_ANALYZERS) >= 2:
            _ANALYZERS.pop(next(iter(_ANALYZERS)))
        _ANALYZERS[key] = FaceAnalyzer(name, folder, det_size)
    return _ANALYZERS[key]


def pack_names(roots: list[str]) -> list[str]:
    """insightface packs present under the roots (folders of models/)."""
    names = set()
    for root in roots:
        models = os.path.join(root, "models")
        if os.path.isdir(models):
            names |= {d for d in os.listdir(models) if os.path.isdir(os.path.join(models, d))}
    return sorted(names) or ["antelopev2"]
