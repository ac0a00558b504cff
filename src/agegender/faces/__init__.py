"""Faces in photos: finding them (`detect`), cutting them out as UTKFace's crops were cut
(`align`), and photos made from UTKFace crops to measure both (`synthetic`).

Keras-free; dlib is imported when a detector is made.
"""

from agegender.faces.align import UTKFACE_SIZE, Crop, crop_face, model_input
from agegender.faces.detect import Face, FaceDetector

__all__ = ["UTKFACE_SIZE", "Crop", "Face", "FaceDetector", "crop_face", "model_input"]
