"""Decoded images and arrays → model input tensors (colour space, size, shape).

Core ML feeds a network 8-bit pixels: whatever the file's mode, the image becomes
8-bit grayscale or RGB first (alpha dropped, not composited; palettes expanded;
16-bit samples scaled to 0..255), then it is resized with bilinear filtering
(Pillow's, which antialiases when shrinking) to the model's input size by one of three
modes, and laid out as float32 ``(C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import ImageError, InvalidModelError, UnsupportedImageError
from .proto import FeatureTypes_pb2, Model_pb2

RESIZE_MODES = ("scaleFill", "centerCrop", "scaleFit")
RESAMPLE = Image.Resampling.BILINEAR

# Images with more pixels than this are first shrunk by a whole factor (box average,
# Pillow's reducing_gap) inside the resize, keeping REDUCING_GAP times the output
# size; the geometry stays exact. Smaller images get one exact bilinear resize.
LARGE_IMAGE_PIXELS = 16_000_000
REDUCING_GAP = 2.0

_IFT = FeatureTypes_pb2.ImageFeatureType
GRAYSCALE_SPACES = (_IFT.GRAYSCALE, _IFT.GRAYSCALE_FLOAT16)
COLOR_SPACE_NAMES = {
    _IFT.GRAYSCALE: "GRAYSCALE",
    _IFT.RGB: "RGB",
    _IFT.BGR: "BGR",
    _IFT.GRAYSCALE_FLOAT16: "GRAYSCALE_FLOAT16",
}

# Modes whose samples are wider than 8 bits.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_MAX_16BIT = 65535.0


def image_size(image_type: FeatureTypes_pb2.ImageFeatureType) -> tuple[int, int]:
    """The (width, height) an image input is fed at.

    That is the type's own width and height, which is also the default of a flexible
    input (``enumeratedSizes`` / ``imageSizeRange``); when those are zero, the first
    enumerated size or the lower bound of the range.
    """
    width, height = int(image_type.width), int(image_type.height)
    if width > 0 and height > 0:
        return width, height
    which = image_type.WhichOneof("SizeFlexibility")
    if which == "enumeratedSizes" and len(image_type.enumeratedSizes.sizes):
        first = image_type.enumeratedSizes.sizes[0]
        return int(first.width), int(first.height)
    if which == "imageSizeRange":
        rng = image_type.imageSizeRange
        return max(1, int(rng.widthRange.lowerBound)), max(1, int(rng.heightRange.lowerBound))
    raise InvalidModelError(f"image input has no usable size ({width}x{height})")


def image_to_tensor(
    img: Image.Image,
    image_type: FeatureTypes_pb2.ImageFeatureType,
    *,
    resize: str = "scaleFill",
) -> np.ndarray:
    """Convert a decoded image to the float32 ``(C, H, W)`` tensor of an image input.

    C is 1 for GRAYSCALE, 3 for RGB and BGR (BGR is RGB in reverse order); values are
    0..255. ``resize`` is one of ``RESIZE_MODES``: ``scaleFill`` stretches to the
    input size, ``centerCrop`` scales the short side to fit and crops the centre,
    ``scaleFit`` scales to fit inside and pads with black, centred.
    """
    if resize not in RESIZE_MODES:
        raise ImageError(f"unknown resize mode '{resize}' (choose from {', '.join(RESIZE_MODES)})")
    space = image_type.colorSpace
    if space not in COLOR_SPACE_NAMES:
        raise InvalidModelError(f"image input has an invalid colour space ({space})")
    gray = space in GRAYSCALE_SPACES
    pixels = to_8bit(img, gray=gray)
    width, height = image_size(image_type)
    resized = _resize(pixels, (width, height), resize)
    array = np.asarray(resized, dtype=np.float32)
    if gray:
        return array[np.newaxis, :, :].copy()
    chw = array.transpose(2, 0, 1)
    if space == _IFT.BGR:
        chw = chw[::-1]
    return np.ascontiguousarray(chw)


def to_8bit(img: Image.Image, *, gray: bool) -> Image.Image:
    """The image as 8-bit ``L`` (``gray``) or ``RGB``, alpha dropped, 16-bit scaled.

    Raises ``UnsupportedImageError`` for a mode Pillow cannot convert (e.g. LAB).
    """
    target = "L" if gray else "RGB"
    try:
        return _convert(img, target)
    except (ValueError, OSError) as exc:
        raise UnsupportedImageError(
            f"image mode {img.mode} cannot be converted to {target} ({exc})"
        ) from exc


def _convert(img: Image.Image, target: str) -> Image.Image:
    mode = img.mode
    if mode == target:
        return img
    if mode in _WIDE_MODES:
        return _wide_to_8bit(img).convert(target)
    if mode in ("P", "PA"):
        # Through RGBA so a palette's transparency is read, then dropped.
        return img.convert("RGBA").convert(target)
    if mode == "La":  # premultiplied: undo that first, as for RGBa
        img, mode = img.convert("LA"), "LA"
    if mode == "LA":
        return img.getchannel("L").convert(target)
    if mode in ("RGBA", "RGBa", "RGBX"):
        rgb = img.convert("RGB")
        return rgb if target == "RGB" else rgb.convert("L")
    return img.convert(target)


def _wide_to_8bit(img: Image.Image) -> Image.Image:
    array = np.asarray(img, dtype=np.float64)
    if img.mode == "F" and array.size and float(np.nanmax(array)) <= 1.0:
        # Float images are usually 0..1.
        scaled = array * 255.0
    else:
        scaled = array * (255.0 / _MAX_16BIT)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _resize(img: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    width, height = size
    src_w, src_h = img.size
    gap = REDUCING_GAP if src_w * src_h > LARGE_IMAGE_PIXELS else None
    if mode == "scaleFill":
        if (src_w, src_h) == size:
            return img
        return img.resize(size, RESAMPLE, reducing_gap=gap)
    if mode == "centerCrop":
        scale = max(width / src_w, height / src_h)
        crop_w, crop_h = width / scale, height / scale
        left, top = (src_w - crop_w) / 2.0, (src_h - crop_h) / 2.0
        # One resampling of the central region, straight to the output size.
        box = (left, top, left + crop_w, top + crop_h)
        return img.resize(size, RESAMPLE, box=box, reducing_gap=gap)
    scale = min(width / src_w, height / src_h)
    fit_w = min(width, max(1, round(src_w * scale)))
    fit_h = min(height, max(1, round(src_h * scale)))
    if (fit_w, fit_h) == (src_w, src_h):
        fitted = img
    else:
        fitted = img.resize((fit_w, fit_h), RESAMPLE, reducing_gap=gap)
    canvas = Image.new(img.mode, size, 0)
    canvas.paste(fitted, ((width - fit_w) // 2, (height - fit_h) // 2))
    return canvas


def image_input(spec: Model_pb2.Model) -> Model_pb2.FeatureDescription | None:
    """The first image-typed input of a model's description, or ``None``."""
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") == "imageType":
            return feature
    return None


def preprocessing_for(nn: object, input_name: str) -> object | None:
    """The ``NeuralNetworkPreprocessing`` of ``nn`` for input ``input_name``, or ``None``.

    An entry with an empty ``featureName`` applies to the network's only input.
    """
    unnamed = None
    for entry in nn.preprocessing:  # type: ignore[attr-defined]
        if entry.featureName == input_name:
            return entry
        if not entry.featureName and unnamed is None:
            unnamed = entry
    return unnamed


def multiarray_shape(feature: Model_pb2.FeatureDescription) -> tuple[int, ...]:
    """The default shape of a multi-array input (its ``shape``, else the first
    enumerated shape, else the lower bounds of its shape range)."""
    if feature.type.WhichOneof("Type") != "multiArrayType":
        raise InvalidModelError(f"input '{feature.name}' is not a multi-array")
    array_type = feature.type.multiArrayType
    if len(array_type.shape):
        return tuple(int(d) for d in array_type.shape)
    which = array_type.WhichOneof("ShapeFlexibility")
    if which == "enumeratedShapes" and len(array_type.enumeratedShapes.shapes):
        return tuple(int(d) for d in array_type.enumeratedShapes.shapes[0].shape)
    if which == "shapeRange":
        return tuple(max(1, int(r.lowerBound)) for r in array_type.shapeRange.sizeRanges)
    raise InvalidModelError(f"multi-array input '{feature.name}' has no shape")


def _allowed_shapes(feature: Model_pb2.FeatureDescription) -> list[tuple[int, ...]] | None:
    array_type = feature.type.multiArrayType
    if array_type.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
        return [tuple(int(d) for d in s.shape) for s in array_type.enumeratedShapes.shapes]
    return None


def _in_range(shape: Sequence[int], feature: Model_pb2.FeatureDescription) -> bool:
    ranges = feature.type.multiArrayType.shapeRange.sizeRanges
    if len(ranges) != len(shape):
        return False
    for dim, rng in zip(shape, ranges, strict=True):
        upper = int(rng.upperBound)
        if dim < rng.lowerBound or (upper >= 0 and dim > upper):
            return False
    return True


def as_multiarray(values: object, feature: Model_pb2.FeatureDescription) -> np.ndarray:
    """``values`` as a float32 array of the input's shape (or one of its allowed shapes).

    Raises ``ImageError`` naming the input when the shape does not fit or the values
    are not numbers.
    """
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ImageError(f"input '{feature.name}': values are not numbers ({exc})") from exc
    default = multiarray_shape(feature)
    which = feature.type.multiArrayType.WhichOneof("ShapeFlexibility")
    if array.shape == default:
        return array
    allowed = _allowed_shapes(feature)
    if allowed is not None and array.shape in allowed:
        return array
    if which == "shapeRange" and _in_range(array.shape, feature):
        return array
    raise ImageError(f"input '{feature.name}' expects shape {default}, got {tuple(array.shape)}")
