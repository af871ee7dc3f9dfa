"""IdentityNet's condition image and aligned face crops."""
import math

import numpy as np
import pytest
import torch

from comfyui_infuse.extractors.keypoints import aligned_crops, draw_keypoints, keypoints_images, similarity

cv2 = pytest.importorskip("cv2")
KPS = np.array([[120.3, 100.8], [180.6, 98.2], [150.1, 140.5], [128.4, 175.9], [172.2, 176.3]], dtype=np.float32)


def instantid_reference(kps, w, h):
    """InstantID's published drawing steps, written out from its description: limbs 0-2, 1-2, 3-2, 4-2 as
    filled ellipses (half width 4) in the colour of the first point, x0.6, then radius-10 dots."""
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
    img = np.zeros([h, w, 3])
    for a, b in [[0, 2], [1, 2], [3, 2], [4, 2]]:
        x, y = kps[[a, b], 0], kps[[a, b], 1]
        length = ((x[0] - x[1]) ** 2 + (y[0] - y[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(y[0] - y[1], x[0] - x[1]))
        poly = cv2.ellipse2Poly((int(np.mean(x)), int(np.mean(y))), (int(length / 2), 4), int(angle), 0, 360, 1)
        img = cv2.fillConvexPoly(img.copy(), poly, colors[a])
    img = (img * 0.6).astype(np.uint8)
    for i, (x, y) in enumerate(kps):
        img = cv2.circle(img.copy(), (int(x), int(y)), 10, colors[i], -1)
    return img


def test_condition_image_follows_instantid_convention():
    ours = draw_keypoints(KPS, 300, 260)
    assert np.array_equal(ours, instantid_reference(KPS, 300, 260))
    assert tuple(ours[100, 120]) == (255, 0, 0) and tuple(ours[140, 150]) == (0, 0, 255)   # dots
    limb = ours[int((100.8 + 140.5) / 2), int((120.3 + 150.1) / 2)]
    assert tuple(limb) == (153, 0, 0)                                                       # 0.6 x red


def test_keypoints_are_scaled_to_the_requested_size():
    img = keypoints_images(torch.from_numpy(KPS[None]), (260, 300), (520, 600))
    assert img.shape == (1, 520, 600, 3)
    assert np.array_equal((img[0].numpy() * 255).round().astype(np.uint8), instantid_reference(KPS * 2, 600, 520))


def test_similarity_recovers_a_known_transform():
    angle, scale, t = 0.3, 1.7, torch.tensor([12.0, -5.0])
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = torch.from_numpy(KPS)
    dst = (scale * src @ rot.T) + t
    m = similarity(src, dst)
    torch.testing.assert_close(m[:, :2].float(), scale * rot, atol=1e-5, rtol=0)
    torch.testing.assert_close(m[:, 2].float(), t, atol=1e-3, rtol=0)


def test_aligned_crop_matches_insightface_norm_crop():
    from insightface.utils import face_align

    g = np.random.default_rng(0)
    image = g.integers(0, 255, (260, 300, 3), dtype=np.uint8)
    ours = aligned_crops(torch.from_numpy(image[None]).float() / 255, torch.from_numpy(KPS[None]), 224)[0]
    ref = face_align.norm_crop(image, landmark=KPS, image_size=224).astype(np.float32) / 255
    interior = (slice(8, -8), slice(8, -8))          # borders differ only by interpolation at the image edge
    assert np.abs(ours.numpy()[interior] - ref[interior]).mean() < 2 / 255
