"""Identity similarity: PuLID's ArcFace identity loss as a metric (1 - its loss). The cosine between the reference's
identity (the mean of its faces' unit embeddings, made unit again) and each image's face, from the same recogniser;
an image without a face scores NO_FACE, never a crash of the batch."""
from __future__ import annotations

import numpy as np
import torch

from ..core.errors import InfuseError
from ..core.records import FaceEmbeds

NO_FACE = -1.0           # below any cosine two detected faces reach in practice; documented on the node


def reference_identity(reference: FaceEmbeds) -> torch.Tensor:
    present = reference.present()
    if present is None or len(present) == 0:
        raise InfuseError("the reference has no face (every entry of its face analysis was passed through empty).",
                          "analyse a photo where the face is visible, or lower det_size there.",
                          input_name="reference_faces")
    mean = present.normed.float().mean(0)
    return mean / mean.norm().clamp_min(1e-12)


def similarities(reference: FaceEmbeds, faces: FaceEmbeds) -> list[float]:
    """Cosine similarity of each entry of `faces` to the reference identity; NO_FACE where no face was found."""
    identity = reference_identity(reference)
    scores = faces.normed.float() @ identity
    return [float(s) if ok else NO_FACE for s, ok in zip(scores.tolist(), faces.found.tolist())]


def annotated(images: torch.Tensor, faces: FaceEmbeds, scores: list[float]) -> torch.Tensor:
    """The images with each face's box and score drawn (green, or red text where no face was found)."""
    from PIL import Image, ImageDraw

    out = []
    for image, box, found, score in zip(images, faces.bbox, faces.found.tolist(), scores):
        pil = Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
        draw = ImageDraw.Draw(pil)
        if found:
            x1, y1, x2, y2 = box.tolist()
            draw.rectangle([x1, y1, x2, y2], outline=(0, 255, 0), width=max(1, pil.width // 200))
            draw.text((x1 + 2, max(0.0, y1 - 12)), f"{score:.3f}", fill=(0, 255, 0))
        else:
            draw.text((4, 4), "no face", fill=(255, 0, 0))
        out.append(torch.from_numpy(np.asarray(pil).astype(np.float32) / 255))
    return torch.stack(out)


def report(scores: list[float]) -> str:
    lines = [f"image {i + 1}: " + ("no face" if s == NO_FACE else f"{s:.4f}") for i, s in enumerate(scores)]
    found = [s for s in scores if s != NO_FACE]
    if found:
        lines.append(f"mean over {len(found)} face(s): {sum(found) / len(found):.4f}")
    return "\n".join(lines)
