"""``upsample`` (NN, bilinear in its three grid modes, integer and fractional factors)
and ``resizeBilinear`` against NumPy references written from the proto's grid rules,
cross-checked with PyTorch's interpolate where it has a twin."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .helpers import assert_close, rng, run_one_layer, run_spec


def _upsample_grid(size_in: int, size_out: int, mode: str) -> np.ndarray:
    i = np.arange(size_out, dtype=np.float64)
    if mode == "DEFAULT":
        spacing = (size_in - size_in / size_out) / (size_out - 1) if size_out > 1 else 0.0
        grid = i * spacing
    elif mode == "ALIGN_CORNERS_TRUE":
        spacing = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        grid = i * spacing
    else:  # ALIGN_CORNERS_FALSE
        spacing = size_in / size_out
        grid = i * spacing + 0.5 * spacing - 0.5
    return np.minimum(size_in - 1, np.maximum(0, grid))


def _resize_grid(size_in: int, size_out: int, method: str) -> np.ndarray:
    if method == "STRICT_ALIGN_ENDPOINTS_MODE":
        return np.linspace(0, size_in - 1, size_out)
    if method == "ALIGN_ENDPOINTS_MODE":
        if size_out == 1:
            return np.array([(size_in - 1) / 2])
        return np.linspace(0, size_in - 1, size_out)
    # UPSAMPLE_MODE
    return np.minimum(size_in - 1, np.linspace(0, size_in - size_in / size_out, size_out))


def _interpolate(x: np.ndarray, grid: np.ndarray, axis: int) -> np.ndarray:
    lower = np.floor(grid).astype(int)
    upper = np.minimum(lower + 1, x.shape[axis] - 1)
    weight = (grid - lower).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return (1 - weight) * np.take(x, lower, axis=axis) + weight * np.take(x, upper, axis=axis)


def _bilinear(x: np.ndarray, grid_h: np.ndarray, grid_w: np.ndarray) -> np.ndarray:
    return _interpolate(_interpolate(x.astype(np.float64), grid_h, 2), grid_w, 3)


@pytest.mark.parametrize(("sh", "sw"), [(1, 1), (2, 2), (3, 1), (2, 4)])
def test_nearest_neighbour_repeats_pixels(sh: int, sw: int) -> None:
    x = rng(sh * 5 + sw).standard_normal((2, 3, 4, 5)).astype(np.float32)

    def add(builder):
        builder.add_upsample("u", sh, sw, "x", "y", mode="NN")

    y = run_one_layer(add, {"x": (3, 4, 5)}, {"x": x})
    assert_close(y, x.repeat(sh, axis=2).repeat(sw, axis=3))
    expected = F.interpolate(torch.from_numpy(x), scale_factor=(sh, sw), mode="nearest")
    assert_close(y, expected.numpy())


@pytest.mark.parametrize("mode", ["DEFAULT", "ALIGN_CORNERS_TRUE", "ALIGN_CORNERS_FALSE"])
@pytest.mark.parametrize(("sh", "sw"), [(2, 2), (3, 2), (1, 4)])
def test_bilinear_integer_factors(mode: str, sh: int, sw: int) -> None:
    x = rng(sh * 5 + sw).standard_normal((2, 3, 4, 5)).astype(np.float32)

    def add(builder):
        builder.add_upsample("u", sh, sw, "x", "y", mode="BILINEAR", linear_upsample_mode=mode)

    y = run_one_layer(add, {"x": (3, 4, 5)}, {"x": x})
    grid_h = _upsample_grid(4, 4 * sh, mode)
    grid_w = _upsample_grid(5, 5 * sw, mode)
    assert_close(y, _bilinear(x, grid_h, grid_w))
    if mode != "DEFAULT":
        twin = F.interpolate(
            torch.from_numpy(x).double(),
            scale_factor=(sh, sw),
            mode="bilinear",
            align_corners=mode == "ALIGN_CORNERS_TRUE",
        )
        assert_close(y, twin.numpy())


@pytest.mark.parametrize("mode", ["ALIGN_CORNERS_TRUE", "ALIGN_CORNERS_FALSE"])
@pytest.mark.parametrize(("fh", "fw"), [(1.5, 2.5), (0.5, 1.75), (2.3, 1.0)])
def test_bilinear_fractional_factors(mode: str, fh: float, fw: float) -> None:
    x = rng(int(fh * 10 + fw)).standard_normal((2, 2, 6, 8)).astype(np.float32)

    def add(builder):
        builder.add_upsample("u", fh, fw, "x", "y", mode="BILINEAR", linear_upsample_mode=mode)

    y = run_one_layer(add, {"x": (2, 6, 8)}, {"x": x})
    out_h, out_w = math.floor(6 * fh), math.floor(8 * fw)
    expected = _bilinear(x, _upsample_grid(6, out_h, mode), _upsample_grid(8, out_w, mode))
    assert_close(y, expected)


@pytest.mark.parametrize(
    "method", ["STRICT_ALIGN_ENDPOINTS_MODE", "ALIGN_ENDPOINTS_MODE", "UPSAMPLE_MODE"]
)
@pytest.mark.parametrize(("out_h", "out_w"), [(9, 11), (3, 2), (1, 7), (1, 1), (5, 1)])
def test_resize_bilinear(method: str, out_h: int, out_w: int) -> None:
    x = rng(out_h * 13 + out_w).standard_normal((2, 3, 6, 5)).astype(np.float32)

    def add(builder):
        builder.add_resize_bilinear(
            "r", "x", "y", target_height=out_h, target_width=out_w, mode=method
        )

    y = run_one_layer(add, {"x": (3, 6, 5)}, {"x": x})
    expected = _bilinear(x, _resize_grid(6, out_h, method), _resize_grid(5, out_w, method))
    assert_close(y, expected)


def test_resize_bilinear_roi_align_mode_is_refused() -> None:
    from mlupdated.errors import UnsupportedLayerError

    def add(builder):
        builder.add_resize_bilinear("r", "x", "y", 4, 4, mode="ROI_ALIGN_MODE")

    with pytest.raises(UnsupportedLayerError, match="ROI_ALIGN_MODE"):
        run_one_layer(add, {"x": (1, 2, 2)}, {"x": np.zeros((1, 1, 2, 2), np.float32)})


def _convert(module: torch.nn.Module, shape: tuple[int, ...]):
    """``module`` as coremltools converts it (neuralnetwork backend), as a spec."""
    from mlupdated.coreml import proto  # noqa: F401  (quiets coremltools first)

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct

        traced = torch.jit.trace(module.eval(), torch.zeros(shape))
        model = ct.convert(
            traced,
            inputs=[ct.TensorType(name="x", shape=shape)],
            convert_to="neuralnetwork",
            minimum_deployment_target=ct.target.iOS14,
        )
    return model.get_spec()


class _Interpolate(torch.nn.Module):
    def __init__(self, size: tuple[int, int], align_corners: bool) -> None:
        super().__init__()
        self.size, self.align_corners = size, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(13, 17), (5, 7)])
def test_bilinear_interpolate_as_coremltools_converts_it(size, align_corners: bool) -> None:
    # coremltools writes non-integer ratios as fractionalScalingFactor (just above the
    # ratio, so that floor(X * factor) is the wanted size).
    module = _Interpolate(size, align_corners)
    spec = _convert(module, (1, 3, 8, 10))
    assert [layer.WhichOneof("layer") for layer in spec.neuralNetwork.layers] == ["upsample"]
    x = rng(size[0]).standard_normal((2, 3, 8, 10)).astype(np.float32)
    out = run_spec(spec, {"x": x})
    (y,) = out.values()
    with torch.no_grad():
        assert_close(y, module(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("shape", [(1, 6, 5), (1, 2, 3, 6, 5)])
def test_other_ranks_treat_leading_axes_as_batch(shape) -> None:
    # Rank 3 is Core ML's [C, H, W] with the batch of one as C; rank 5 folds its
    # leading axes into the batch.
    x = rng(len(shape)).standard_normal((3, *shape[1:])).astype(np.float32)

    def add(builder):
        builder.add_upsample(
            "u", 2, 3, "x", "y", mode="BILINEAR", linear_upsample_mode="ALIGN_CORNERS_FALSE"
        )

    y = run_one_layer(add, {"x": shape}, {"x": x}, nd=True)
    x4 = x[:, None] if len(shape) == 3 else x.reshape(-1, *shape[-3:])
    expected = _bilinear(
        x4,
        _upsample_grid(6, 12, "ALIGN_CORNERS_FALSE"),
        _upsample_grid(5, 15, "ALIGN_CORNERS_FALSE"),
    )
    assert_close(y, expected.reshape(*x.shape[:-2], 12, 15))

    def add_resize(builder):
        builder.add_resize_bilinear("r", "x", "y", 4, 7, mode="STRICT_ALIGN_ENDPOINTS_MODE")

    y = run_one_layer(add_resize, {"x": shape}, {"x": x}, nd=True)
    strict = "STRICT_ALIGN_ENDPOINTS_MODE"
    expected = _bilinear(x4, _resize_grid(6, 4, strict), _resize_grid(5, 7, strict))
    assert_close(y, expected.reshape(*x.shape[:-2], 4, 7))


def test_both_kinds_of_scaling_factor_are_refused() -> None:
    from mlupdated.errors import InvalidModelError

    def add(builder):
        layer = builder.add_upsample("u", 2, 2, "x", "y", mode="NN")
        layer.upsample.fractionalScalingFactor.extend([1.5, 1.5])

    with pytest.raises(InvalidModelError, match="'u'.*fractionalScalingFactor"):
        run_one_layer(add, {"x": (1, 2, 2)}, {"x": np.ones((1, 1, 2, 2), np.float32)})
