"""Face keypoints -> IdentityNet's condition image, and 5-point aligned face crops.

The condition image follows InstantID's drawing convention: on black, four limbs from the nose to the eyes and
mouth corners, each a filled ellipse (OpenCV's ellipse polygon, half-width 4 px) coloured by its outer point,
the limbs scaled by 0.6, then a filled circle of radius 10 on each point. Colours: left eye red, right eye
green, nose blue, mouth left yellow, mouth right magenta.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .deps import require

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
LIMBS = [(0, 2), (1, 2), (3, 2), (4, 2)]
LIMB_HALF_WIDTH = 4
LIMB_BLEND = 0.6
POINT_RADIUS = 10
# ArcFace's 5-point template for 112 x 112 crops (insightface's arcface_dst)
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                             [70.7299, 92.2041]], dtype=np.float32)


def draw_keypoints(kps: np.ndarray, width: int, height: int) -> np.ndarray:
    """[5, 2] keypoints in pixels -> RGB uint8 [height, width, 3] condition image."""
    cv2 = require("cv2")
    canvas = np.zeros((height, width, 3), dtype=np.float64)
    for a, b in LIMBS:
        (xa, ya), (xb, yb) = kps[a], kps[b]
        length = math.hypot(xa - xb, ya - yb)
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        centre = (int(np.mean([xa, xb])), int(np.mean([ya, yb])))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), LIMB_HALF_WIDTH), int(angle), 0, 360, 1)
        canvas = cv2.fillConvexPoly(canvas.copy(), polygon, COLORS[a])
    out = (canvas * LIMB_BLEND).astype(np.uint8)
    for (x, y), color in zip(kps, COLORS):
        out = cv2.circle(out.copy(), (int(x), int(y)), POINT_RADIUS, color, -1)
    return out


def keypoints_images(kps: torch.Tensor, source_hw: tuple[int, int], size_hw: tuple[int, int]) -> torch.Tensor:
    """Condition images [N, H, W, 3] (0..1) at `size_hw` for keypoints found in images of `source_hw`."""
    sy, sx = size_hw[0] / source_hw[0], size_hw[1] / source_hw[1]
    scaled = kps.numpy() * np.array([sx, sy], dtype=np.float32)
    drawn = [draw_keypoints(k, size_hw[1], size_hw[0]) for k in scaled]
    return torch.from_numpy(np.stack(drawn)).float() / 255.0


def similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares 2D similarity (rotation, uniform scale, translation) mapping src points onto dst
    (Umeyama's closed form), as a [2, 3] matrix."""
    src, dst = src.double(), dst.double()
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / src.shape[0]
    u, sigma, vt = torch.linalg.svd(cov)
    sign = torch.ones(2, dtype=torch.float64)
    if torch.det(u) * torch.det(vt) < 0:
        sign[-1] = -1
    rot = u @ torch.diag(sign) @ vt
    scale = (sigma * sign).sum() / s.pow(2).sum(1).mean()
    t = mu_d - scale * rot @ mu_s
    return torch.cat([scale * rot, t[:, None]], dim=1)


def aligned_crops(images: torch.Tensor, kps: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Faces warped onto ArcFace's 5-point template scaled to `size` (kornia warp, bilinear, black border), as
    insightface's norm_crop does: [N, H, W, 3] -> [N, size, size, 3]."""
    from kornia.geometry.transform import warp_affine

    if size % 112 == 0:
        template = ARCFACE_TEMPLATE * (size / 112.0)
    else:
        ratio = size / 128.0
        template = ARCFACE_TEMPLATE * ratio + np.array([8.0 * ratio, 0.0], dtype=np.float32)
    template = torch.from_numpy(template)
    mats = torch.stack([similarity(k.float(), template) for k in kps]).float()
    crops = warp_affine(images.movedim(-1, 1).float(), mats, dsize=(size, size), mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return crops.movedim(1, -1).clamp(0, 1)
