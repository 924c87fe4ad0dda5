"""Images → tensors: colour spaces, odd modes, resize geometry, multi-array inputs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec
from mlupdated.coreml import image_tensor, images
from mlupdated.coreml.proto import FeatureTypes_pb2, Model_pb2
from mlupdated.errors import ImageError, InvalidModelError, UnsupportedImageError
from PIL import Image

IFT = FeatureTypes_pb2.ImageFeatureType


def image_type(width: int, height: int, space: int = IFT.RGB) -> FeatureTypes_pb2.ImageFeatureType:
    return IFT(width=width, height=height, colorSpace=space)


def solid(mode: str, value, size=(6, 4)) -> Image.Image:
    return Image.new(mode, size, value)


# --- colour spaces --------------------------------------------------------------------

RGB = (10, 100, 200)


def luma(r, g, b) -> float:
    """ITU-R 601-2 luma, the grey value Pillow (and most decoders) use."""
    return (r * 299 + g * 587 + b * 114) / 1000


def test_rgb_bgr_grayscale():
    img = solid("RGB", RGB)
    rgb = images.image_to_tensor(img, image_type(6, 4, IFT.RGB))
    bgr = images.image_to_tensor(img, image_type(6, 4, IFT.BGR))
    gray = images.image_to_tensor(img, image_type(6, 4, IFT.GRAYSCALE))
    assert rgb.dtype == np.float32 and rgb.shape == (3, 4, 6)
    assert bgr.shape == (3, 4, 6) and gray.shape == (1, 4, 6)
    np.testing.assert_array_equal(rgb[:, 0, 0], RGB)
    np.testing.assert_array_equal(bgr[:, 0, 0], RGB[::-1])
    np.testing.assert_array_equal(bgr, rgb[::-1])
    assert abs(gray[0, 0, 0] - luma(*RGB)) <= 1


def test_grayscale_float16_space_is_one_channel():
    gray = images.image_to_tensor(solid("L", 77), image_type(6, 4, IFT.GRAYSCALE_FLOAT16))
    assert gray.shape == (1, 4, 6) and np.all(gray == 77)


def test_invalid_colour_space():
    with pytest.raises(InvalidModelError, match="colour space"):
        images.image_to_tensor(solid("RGB", RGB), image_type(6, 4, 0))


# --- odd modes ------------------------------------------------------------------------


def rgba_with_transparent_pixel() -> Image.Image:
    img = solid("RGBA", RGB + (255,))
    img.putpixel((0, 0), (250, 5, 60, 0))  # fully transparent, colour must survive
    return img


def test_rgba_drops_alpha_without_compositing():
    t = images.image_to_tensor(rgba_with_transparent_pixel(), image_type(6, 4))
    np.testing.assert_array_equal(t[:, 0, 0], (250, 5, 60))
    np.testing.assert_array_equal(t[:, 1, 1], RGB)


def test_palette_and_palette_alpha():
    palette = rgba_with_transparent_pixel().convert("RGB").quantize(colors=4)
    expected = np.asarray(palette.convert("RGB"))
    t = images.image_to_tensor(palette, image_type(6, 4))
    np.testing.assert_array_equal(t.transpose(1, 2, 0), expected)
    pa = palette.convert("PA")
    pa.putdata([(int(i), 0) for i in np.asarray(palette).reshape(-1)])  # fully transparent
    assert pa.mode == "PA"
    t = images.image_to_tensor(pa, image_type(6, 4))
    palette_rgb = np.asarray(palette.getpalette()[: 3 * 256]).reshape(-1, 3)
    index = np.asarray(palette)
    np.testing.assert_array_equal(t.transpose(1, 2, 0), palette_rgb[index])


def test_transparent_palette_entry_keeps_its_colour():
    img = Image.new("P", (6, 4), 1)
    img.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    img.info["transparency"] = 1
    t = images.image_to_tensor(img, image_type(6, 4))
    np.testing.assert_array_equal(t[:, 0, 0], (30, 60, 90))


def test_la_drops_alpha():
    la = Image.merge("LA", (solid("L", 123), solid("L", 0)))
    np.testing.assert_array_equal(images.image_to_tensor(la, image_type(6, 4, IFT.GRAYSCALE)), 123)
    np.testing.assert_array_equal(images.image_to_tensor(la, image_type(6, 4)), 123)


def test_cmyk():
    c, m, y, k = 100, 50, 200, 30
    t = images.image_to_tensor(solid("CMYK", (c, m, y, k)), image_type(6, 4))
    expected = [(255 - v) * (255 - k) / 255 for v in (c, m, y)]
    assert np.abs(t[:, 0, 0] - expected).max() <= 1


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_scaled(mode):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(values) if mode == "I;16" else Image.fromarray(values.astype(np.int32))
    assert img.mode == mode
    t = images.image_to_tensor(img, image_type(4, 1, IFT.GRAYSCALE))
    np.testing.assert_array_equal(t[0, 0], np.rint(values[0] * 255.0 / 65535.0))
    rgb = images.image_to_tensor(img, image_type(4, 1, IFT.RGB))
    np.testing.assert_array_equal(rgb[1, 0], np.rint(values[0] * 255.0 / 65535.0))


def test_float_mode_in_unit_range():
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    t = images.image_to_tensor(img, image_type(3, 1, IFT.GRAYSCALE))
    np.testing.assert_array_equal(t[0, 0], np.rint(np.array([0.0, 0.5, 1.0]) * 255))


def test_bilevel():
    img = Image.fromarray(np.array([[0, 1, 1, 0]], dtype=bool))
    assert img.mode == "1"
    t = images.image_to_tensor(img, image_type(4, 1, IFT.GRAYSCALE))
    np.testing.assert_array_equal(t[0, 0], [0, 255, 255, 0])


# --- resize geometry ------------------------------------------------------------------


def ramp(width: int, height: int, *, horizontal: bool = True) -> Image.Image:
    """8-bit grey ramp whose value is the x (or y) coordinate."""
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray((x if horizontal else y).astype(np.uint8), mode="L")


def centres(n_out: int, start: float, length: float) -> np.ndarray:
    """Source coordinates (pixel-centre convention) sampled by n_out outputs over
    [start, start + length)."""
    return start + (np.arange(n_out) + 0.5) * (length / n_out) - 0.5


def test_scale_fill_stretches_both_axes():
    t = images.image_to_tensor(ramp(200, 40), image_type(20, 10, IFT.GRAYSCALE))[0]
    assert t.shape == (10, 20)
    expected = centres(20, 0, 200)
    # Interior columns (the filter is clipped at the image border).
    np.testing.assert_allclose(t[5, 2:-2], expected[2:-2], atol=1.0)
    t = images.image_to_tensor(ramp(40, 200, horizontal=False), image_type(10, 20, IFT.GRAYSCALE))[
        0
    ]
    np.testing.assert_allclose(t[2:-2, 5], centres(20, 0, 200)[2:-2], atol=1.0)


def test_center_crop_takes_the_middle_of_a_wide_image():
    # 240x60 → 30x30: scale 0.5, the central 60x60 (x 90..150) is kept.
    t = images.image_to_tensor(
        ramp(240, 60), image_type(30, 30, IFT.GRAYSCALE), resize="centerCrop"
    )[0]
    np.testing.assert_allclose(t[15], centres(30, 90, 60), atol=1.0)
    assert np.ptp(t[:, 15]) == 0  # every row the same: nothing cut vertically


def test_center_crop_takes_the_middle_of_a_tall_image():
    img = ramp(50, 250, horizontal=False)  # 50x250 → 25x25: y 100..150 kept
    t = images.image_to_tensor(img, image_type(25, 25, IFT.GRAYSCALE), resize="centerCrop")[0]
    np.testing.assert_allclose(t[:, 12], centres(25, 100, 50), atol=1.0)


def test_center_crop_marker_lands_in_the_centre():
    a = np.zeros((60, 180, 3), np.uint8)
    a[26:34, 86:94] = 255  # 8x8 marker at the centre of a 180x60 image
    t = images.image_to_tensor(Image.fromarray(a), image_type(30, 30), resize="centerCrop")[0]
    # Scale 0.5: the marker becomes 4x4 at the output's centre (rows/cols 13..16).
    bright = np.argwhere(t > 128)
    assert bright[:, 0].min() == 13 and bright[:, 0].max() == 16
    assert bright[:, 1].min() == 13 and bright[:, 1].max() == 16


@pytest.mark.parametrize(
    ("src", "dst"),
    [((64, 32), (32, 32)), ((100, 30), (20, 20)), ((30, 90), (40, 40)), ((50, 50), (40, 20))],
)
def test_scale_fit_letterboxes_with_black(src, dst):
    img = Image.new("RGB", src, (200, 150, 100))
    t = images.image_to_tensor(img, image_type(*dst), resize="scaleFit")
    scale = min(dst[0] / src[0], dst[1] / src[1])
    fit_w, fit_h = round(src[0] * scale), round(src[1] * scale)
    left, top = (dst[0] - fit_w) // 2, (dst[1] - fit_h) // 2
    content = np.zeros(dst[::-1], bool)
    content[top : top + fit_h, left : left + fit_w] = True
    np.testing.assert_array_equal(t[0] > 0, content)
    np.testing.assert_array_equal(t[:, content].T, np.tile([200, 150, 100], (content.sum(), 1)))


def test_scale_fit_keeps_aspect_of_a_marker():
    a = np.zeros((40, 80), np.uint8)
    a[10:30, 30:50] = 255  # a 20x20 square
    t = images.image_to_tensor(
        Image.fromarray(a), image_type(40, 40, IFT.GRAYSCALE), resize="scaleFit"
    )[0]
    bright = np.argwhere(t > 128)
    height = bright[:, 0].max() - bright[:, 0].min() + 1
    width = bright[:, 1].max() - bright[:, 1].min() + 1
    assert height == width == 10  # still square, half size
    assert bright[:, 0].min() == 10 + 5 and bright[:, 1].min() == 15


def test_unknown_resize_mode():
    with pytest.raises(ImageError, match="resize mode"):
        images.image_to_tensor(solid("RGB", RGB), image_type(6, 4), resize="stretch")


def test_load_tensor_end_to_end(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (64, 32), RGB).save(path)
    t = images.load_tensor(path, image_type(16, 16, IFT.BGR), resize="centerCrop")
    assert t.shape == (3, 16, 16)
    np.testing.assert_array_equal(t[:, 8, 8], RGB[::-1])


# --- sizes and spec helpers -----------------------------------------------------------


def test_flexible_sizes_use_the_default():
    flexible = image_type(32, 24)
    size = flexible.enumeratedSizes.sizes.add()
    size.width, size.height = 64, 48
    assert images.image_size(flexible) == (32, 24)
    no_default = IFT(colorSpace=IFT.RGB)
    size = no_default.enumeratedSizes.sizes.add()
    size.width, size.height = 64, 48
    assert images.image_size(no_default) == (64, 48)
    ranged = IFT(colorSpace=IFT.RGB)
    ranged.imageSizeRange.widthRange.lowerBound = 20
    ranged.imageSizeRange.widthRange.upperBound = -1
    ranged.imageSizeRange.heightRange.lowerBound = 10
    ranged.imageSizeRange.heightRange.upperBound = 100
    assert images.image_size(ranged) == (20, 10)
    t = images.image_to_tensor(solid("RGB", RGB), ranged)
    assert t.shape == (3, 10, 20)


def test_image_input_and_preprocessing():
    spec = build_updatable_spec(input_shape=(1, 8, 8))
    feature = images.image_input(spec)
    assert feature.name == "image"
    assert feature.type.imageType.colorSpace == IFT.GRAYSCALE
    pre = images.preprocessing_for(spec.neuralNetworkClassifier, "image")
    assert pre.WhichOneof("preprocessor") == "scaler"
    assert pre.scaler.channelScale == pytest.approx(1 / 255)
    assert images.preprocessing_for(spec.neuralNetworkClassifier, "other") is None
    unnamed = Model_pb2.Model()
    unnamed.CopyFrom(spec)
    unnamed.neuralNetworkClassifier.preprocessing[0].featureName = ""
    assert (
        images.preprocessing_for(unnamed.neuralNetworkClassifier, "image").scaler.channelScale > 0
    )
    assert images.image_input(build_updatable_spec(image_input=False)) is None


def test_multiarray_inputs():
    spec = build_updatable_spec(image_input=False, input_shape=(3, 4, 4))
    feature = spec.description.input[0]
    assert images.multiarray_shape(feature) == (3, 4, 4)
    values = np.arange(48, dtype=np.float64).reshape(3, 4, 4)
    out = images.as_multiarray(values, feature)
    assert out.dtype == np.float32 and out.shape == (3, 4, 4)
    np.testing.assert_array_equal(out, values)
    with pytest.raises(ImageError, match=r"expects shape \(3, 4, 4\), got \(48,\)"):
        images.as_multiarray(values.reshape(-1), feature)
    with pytest.raises(ImageError, match="not numbers"):
        images.as_multiarray([["a", "b"]], feature)
    with pytest.raises(InvalidModelError):
        images.multiarray_shape(build_updatable_spec().description.input[0])


def test_multiarray_flexible_shapes():
    feature = Model_pb2.FeatureDescription(name="x")
    array_type = feature.type.multiArrayType
    for shape in ((2, 3), (4, 3)):
        array_type.enumeratedShapes.shapes.add().shape.extend(shape)
    assert images.multiarray_shape(feature) == (2, 3)
    assert images.as_multiarray(np.zeros((4, 3)), feature).shape == (4, 3)
    with pytest.raises(ImageError):
        images.as_multiarray(np.zeros((3, 3)), feature)
    ranged = Model_pb2.FeatureDescription(name="y")
    for low, high in ((1, 5), (3, 3)):
        r = ranged.type.multiArrayType.shapeRange.sizeRanges.add()
        r.lowerBound, r.upperBound = low, high
    assert images.multiarray_shape(ranged) == (1, 3)
    assert images.as_multiarray(np.zeros((5, 3)), ranged).shape == (5, 3)
    with pytest.raises(ImageError):
        images.as_multiarray(np.zeros((6, 3)), ranged)


@pytest.mark.parametrize("mode", images.RESIZE_MODES)
def test_large_images_reduce_before_resizing(monkeypatch, mode):
    from mlupdated.coreml import image_tensor

    y, x = np.mgrid[0:300, 0:400]
    img = Image.fromarray(
        np.stack([x * 255 // 399, y * 255 // 299, (x + y) % 256], -1).astype(np.uint8)
    )
    target = image_type(20, 12)
    exact = images.image_to_tensor(img, target, resize=mode)
    monkeypatch.setattr(image_tensor, "LARGE_IMAGE_PIXELS", 10_000)
    reduced = images.image_to_tensor(img, target, resize=mode)
    smooth = slice(0, 2)  # the gradient channels; the third one wraps around
    assert np.abs(reduced[smooth] - exact[smooth]).max() <= 2


def test_premultiplied_modes_are_unpremultiplied():
    la = Image.new("La", (2, 2), (100, 128))
    expected_l = la.convert("LA").getpixel((0, 0))[0]
    t = images.image_to_tensor(la, image_type(2, 2, IFT.GRAYSCALE))
    assert np.all(t == expected_l)
    rgba = Image.new("RGBa", (2, 2), (100, 50, 20, 128))
    t = images.image_to_tensor(rgba, image_type(2, 2))
    np.testing.assert_array_equal(t[:, 0, 0], rgba.convert("RGBA").getpixel((0, 0))[:3])


def test_unconvertible_mode_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(path)

    def refuse(img, *, gray):
        raise ValueError("conversion from XYZ to RGB not supported")

    monkeypatch.setattr(image_tensor, "_convert", lambda img, target: refuse(img, gray=False))
    with pytest.raises(UnsupportedImageError, match="cannot be converted") as info:
        images.load_tensor(path, image_type(4, 4))
    assert info.value.path == str(path)
