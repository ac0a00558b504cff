"""Cutting a found face out of a photo the way UTKFace's crops were cut, so that a model sees what
it was trained on.

UTKFace's images are 200 x 200 crops of faces aligned by their landmarks. The geometry of those
crops was measured from the data itself (`calibrate`, on training-split crops): where dlib's five
landmarks and its detector's box sit inside a crop, on average. A face found in a new photo is
then cut out so that its landmarks land on those average places (a similarity transform:
rotation, scale and shift, fitted by least squares), which also levels the eyes as UTKFace's
are; a face without landmarks is cut out so that its box sits where boxes sit in UTKFace's crops
(no rotation). Either way the result is a 200 x 200 RGB image, `UTKFACE_SIZE`.

`margin` scales the crop around its centre: 1 is UTKFace's framing, above 1 looser, below 1
tighter (`agegender.faces.synthetic.margin_check` measures what it does to a model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

UTKFACE_SIZE = 200
# What fills a crop where it reaches beyond the photo: mid grey, as for transparency
# (`agegender.data.cache.BACKGROUND`).
FILL = (128, 128, 128)
# ITU-R 601 luma weights of R, G, B: what Pillow's "L" mode computes from RGB.
LUMA = np.array([0.299, 0.587, 0.114])

# The calibration, measured by `calibrate` on 1,000 training-split UTKFace crops (drawn with seed
# 15) with `agegender.faces.detect.FaceDetector` (dlib's HOG detector and its five-point
# landmarks), each crop padded by 100 px of grey on every side so that faces touching the border
# are found too; a face was found in 97.8% of them. Coordinates are in a 200 x 200 crop's pixels,
# continuous (the crop's top-left corner is (0, 0) and pixel (i, j) spans [i, i + 1) x [j, j + 1)).
# The eye line's angle in UTKFace's crops: median 0.0 degrees, 5th-95th percentiles -2.9 to 3.2
# (UTKFace's crops are levelled), so levelling the eyes is what makes a crop look like theirs.
# Re-measure: ``calibrate(files, FaceDetector())``.
#
# The mean landmarks, in dlib's order (0-1: outer and inner corner of the eye on the image's
# right, 2-3: outer and inner corner of the eye on the image's left, 4: below the nose).
LANDMARKS = np.array(
    [
        [152.20, 60.38],
        [121.53, 62.02],
        [44.51, 59.99],
        [75.43, 61.86],
        [98.75, 118.44],
    ]
)
# The detector's box, relative to the crop: centre (x, y) and side (its boxes are square),
# medians. UTKFace's crops are tight: the box nearly fills them.
BOX_CENTRE = (0.465, 0.4675)
BOX_SIDE = 0.935


@dataclass(frozen=True)
class Crop:
    """A face cut out of a photo.

    Attributes:
        image: the crop, RGB, `UTKFACE_SIZE` square.
        corners: the crop's corners in the photo's pixels (continuous coordinates), ``(4, 2)``:
            top-left, top-right, bottom-right, bottom-left of the crop.
        angle: how far the crop is turned against the photo, in degrees (counter-clockwise).
        how: ``"landmarks"`` or ``"box"``, what placed it.
    """

    image: Image.Image
    corners: np.ndarray
    angle: float
    how: str


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The similarity transform (rotation, uniform scale, shift) that best maps `source` points on
    `target` points (least squares; Umeyama 1991), as a 2 x 3 matrix ``[A | t]``."""
    source, target = np.asarray(source, float), np.asarray(target, float)
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    covariance = t.T @ s / len(source)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / s.var(0).sum()
    matrix = scale * rotation
    return np.hstack([matrix, (mean_t - matrix @ mean_s)[:, None]])


def crop_face(
    image: Image.Image,
    face,
    *,
    margin: float = 1.0,
    size: int = UTKFACE_SIZE,
) -> Crop:
    """Cut `face` (an `agegender.faces.detect.Face`) out of `image` as UTKFace's crops were cut.

    Args:
        image: the photo, RGB.
        face: a found face: its landmarks are used when it has them, else its box.
        margin: the crop's side against UTKFace's framing (1: the same; 1.2: 20% looser).
        size: the side of the result in pixels.
    """
    if face.landmarks is not None:
        # photo -> crop, from the landmarks (dlib's integer pixel centres, made continuous)
        to_crop = similarity(np.asarray(face.landmarks, float) + 0.5, LANDMARKS)
        how = "landmarks"
    else:
        x, y, w, h = face.box
        side = (w + h) / 2 / BOX_SIDE  # the crop's side in the photo's pixels
        scale = UTKFACE_SIZE / side
        centre = np.array([x + w / 2, y + h / 2])
        offset = np.array(BOX_CENTRE) * UTKFACE_SIZE - scale * centre
        to_crop = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])
        how = "box"
    return _cut(image, to_crop, margin, size, how)


def _cut(image: Image.Image, to_crop: np.ndarray, margin: float, size: int, how: str) -> Crop:
    """Cut out the square whose UTKFace-crop coordinates are ``100 +- 100 * margin`` around the
    centre, given the photo -> UTKFace-crop transform `to_crop`."""
    matrix, shift = to_crop[:, :2], to_crop[:, 2]
    inverse = np.linalg.inv(matrix)
    half = UTKFACE_SIZE / 2
    square = half + half * margin * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    corners = (square - shift) @ inverse.T
    side = np.linalg.norm(corners[1] - corners[0])  # the crop's side in the photo's pixels
    top = corners[1] - corners[0]
    angle = float(np.degrees(np.arctan2(-top[1], top[0])))
    # Shrinking by more than 2x with bicubic sampling alone aliases: cut the region out and shrink
    # it by area averaging first, to at most twice the final size.
    source, origin, factor = image, np.zeros(2), 1
    reduce = int(side / (2 * size))
    if reduce >= 2:
        left, top = np.floor(corners.min(0)).astype(int)
        right, bottom = np.ceil(corners.max(0)).astype(int)
        region = image.crop((left, top, right, bottom))  # outside the photo: black, masked below
        inside = Image.new("L", image.size, 255).crop((left, top, right, bottom))
        region, inside = region.reduce(reduce), inside.reduce(reduce)
        source = Image.composite(region, Image.new("RGB", region.size, FILL), inside)
        origin, factor = np.array([left, top], float), reduce
    # output pixel (u, v) -> the photo's (or the shrunk region's) continuous coordinates
    step = margin * UTKFACE_SIZE / size
    a = inverse * step / factor
    start = (square[0] - shift) @ inverse.T
    c = (start - origin) / factor
    data = (a[0, 0], a[0, 1], c[0], a[1, 0], a[1, 1], c[1])
    crop = source.transform(
        (size, size), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC, fillcolor=FILL
    )
    return Crop(image=crop, corners=corners, angle=angle, how=how)


def model_input(crop: Image.Image, size: int, channels: int = 3) -> np.ndarray:
    """A 200 x 200 crop as the models' image cache gives it at `size` px (uint8).

    `agegender.data.cache.load_image` decodes UTKFace's JPEGs at the smallest DCT scale (1/2,
    1/4, 1/8) that keeps at least `size` px, then area-averages to `size`; this shrinks by the
    same power of two first (a 2 x 2 mean is what a DCT scaling computes, nearly), then the same.

    Args:
        crop: the crop (any mode; it is made RGB).
        size: the side the model takes.
        channels: 3 for an RGB model, ``(size, size, 3)``; 1 for a greyscale one,
            ``(size, size, 1)``: ITU-R 601 luma, as Pillow's ``"L"`` (the greyscale cache).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels!r}")
    factor = 1
    while factor < 8 and crop.width // (factor * 2) >= size:
        factor *= 2
    if factor > 1:
        crop = crop.reduce(factor)
    if crop.size != (size, size):
        crop = crop.resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(crop.convert("RGB"), dtype=np.uint8)
    if channels == 1:
        return np.round(pixels @ LUMA)[..., None].astype(np.uint8)
    return pixels


def calibrate(crops, detector) -> dict:
    """Measure where faces sit inside UTKFace crops: what `LANDMARKS`, `BOX_CENTRE` and `BOX_SIDE`
    hold.

    Args:
        crops: 200 x 200 UTKFace crops (PIL images or paths), e.g. training-split ones.
        detector: an `agegender.faces.detect.FaceDetector` (with landmarks, for ``landmarks``).

    Returns:
        ``landmarks`` (mean, 5 x 2, continuous crop coordinates), ``box_centre`` and ``box_side``
        (medians, relative to the crop), ``eye_angle`` (median and 5th/95th percentiles of the
        eye line's angle, degrees), ``found`` (share of crops with a face) and ``crops``.
    """
    pad = UTKFACE_SIZE // 2
    points, boxes, found, total = [], [], 0, 0
    for item in crops:
        crop = item if isinstance(item, Image.Image) else Image.open(item)
        crop = crop.convert("RGB")
        total += 1
        padded = Image.new("RGB", (crop.width + 2 * pad, crop.height + 2 * pad), FILL)
        padded.paste(crop, (pad, pad))
        faces = detector(np.asarray(padded))
        if not faces:
            continue
        found += 1
        face = faces[0]
        scale = UTKFACE_SIZE / crop.width
        x, y, w, h = face.box
        boxes.append(((x - pad + w / 2) * scale, (y - pad + h / 2) * scale, (w + h) / 2 * scale))
        if face.landmarks is not None:
            points.append((face.landmarks + 0.5 - pad) * scale)
    boxes = np.array(boxes) / UTKFACE_SIZE
    result = {
        "crops": total,
        "found": found / max(total, 1),
        "box_centre": tuple(np.round(np.median(boxes[:, :2], 0), 4).tolist()),
        "box_side": round(float(np.median(boxes[:, 2])), 4),
    }
    if points:
        points = np.array(points)
        eyes = points[:, 0:2].mean(1), points[:, 2:4].mean(1)  # image-right eye, image-left eye
        line = eyes[0] - eyes[1]
        angles = np.degrees(np.arctan2(line[:, 1], line[:, 0]))
        result["landmarks"] = np.round(points.mean(0), 2).tolist()
        result["eye_angle"] = np.round(np.percentile(angles, [50, 5, 95]), 2).tolist()
    return result
