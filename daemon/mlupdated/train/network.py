"""The trainable suffix of a network as autodiff ops, with its parameters.

Built once per update from the spec: each suffix layer on the path to the loss becomes
an op reading the layer's own parameters (decoded from the spec); layers marked
updatable get trainable weight and bias leaves, the others constants. After training,
:meth:`SuffixNetwork.write_weights` puts the trained values back into a spec.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..coreml.padding import include_last_pixel_pads, pair, same_pads, valid_pads
from ..coreml.proto import Model_pb2
from ..coreml.rules import BACKPROP_LAYER_TYPES, LOSS_KINDS, loss_io
from ..coreml.spec import class_labels, neural_network
from ..coreml.weights import decode_weights, replace_weights
from ..errors import InvalidModelError, NotUpdatableError
from . import ops, ops_spatial
from .autodiff import DTYPE, Value
from .losses import cross_entropy, mean_squared_error
from .split import Split, is_updatable_layer

# PoolingLayerParams.PoolingType and FlattenLayerParams.FlattenOrder values.
_MAX, _AVERAGE = 0, 1
_CHANNEL_LAST = 1

TRAINABLE_LAYERS = BACKPROP_LAYER_TYPES


class SuffixNetwork:
    """Forward and backward passes of the trainable suffix of ``spec``.

    ``params`` are the trainable leaves in a stable order (per updatable layer, weights
    then bias); ``loss_kind`` is ``"crossEntropy"`` or ``"meanSquaredError"``.
    """

    def __init__(self, spec: Model_pb2.Model, split: Split) -> None:
        self.nn = neural_network(spec)
        layers = list(self.nn.layers)
        losses = list(self.nn.updateParams.lossLayers)
        if len(losses) != 1:
            raise NotUpdatableError("the network needs exactly one loss layer", rule="one-loss")
        loss = losses[0]
        kind, self.loss_input, self.target_name = loss_io(loss)
        if kind not in LOSS_KINDS:
            raise NotUpdatableError(f"loss layer type {kind!r} is not known", rule="one-loss")
        self.loss_kind = LOSS_KINDS[kind]
        self.labels = class_labels(spec)
        self.cut_blobs = split.cut_blobs

        producer = {b: i for i in split.suffix for b in layers[i].output}
        needed: set[int] = set()
        stack = [producer[self.loss_input]] if self.loss_input in producer else []
        while stack:
            i = stack.pop()
            if i not in needed:
                needed.add(i)
                stack.extend(producer[b] for b in layers[i].input if b in producer)
        if not needed:
            raise NotUpdatableError(
                f"the loss input '{self.loss_input}' is not computed from an updatable layer",
                rule="loss-input",
            )
        self.layers = [layers[i] for i in sorted(needed)]
        self.updatable: list[tuple[object, Value, Value | None]] = []
        self._ops: list[Callable[[dict[str, Value]], None]] = [
            self._build(layer) for layer in self.layers
        ]
        self.params = [v for _, w, b in self.updatable for v in (w, b) if v is not None]

    # --- running -------------------------------------------------------------------

    def forward(self, features: dict[str, np.ndarray]) -> Value:
        """The loss input (e.g. the softmax probabilities) for a batch of features."""
        blobs = {name: Value(features[name]) for name in self.cut_blobs}
        for op in self._ops:
            op(blobs)
        return blobs[self.loss_input]

    def loss(self, features: dict[str, np.ndarray], targets: np.ndarray) -> Value:
        """The mini-batch loss (a scalar ``Value``) for features and encoded targets."""
        prediction = self.forward(features)
        if self.loss_kind == "crossEntropy":
            return cross_entropy(prediction, targets)
        return mean_squared_error(prediction, targets)

    def write_weights(self, spec: Model_pb2.Model) -> None:
        """Overwrite the updatable layers' weights and biases in ``spec`` (same network)."""
        by_name = {layer.name: layer for layer in neural_network(spec).layers}
        for layer, weight, bias in self.updatable:
            target = by_name[layer.name]  # type: ignore[attr-defined]
            params = getattr(target, target.WhichOneof("layer"))
            replace_weights(params.weights, weight.data)
            if bias is not None:
                replace_weights(params.bias, bias.data)

    # --- building --------------------------------------------------------------------

    def _weights(self, layer: object, params: object, w_shape: tuple[int, ...], has_bias: bool):
        name = layer.name  # type: ignore[attr-defined]
        count = int(np.prod(w_shape))
        w = decode_weights(params.weights, count=count, layer=name).reshape(w_shape)  # type: ignore[attr-defined]
        b = None
        if has_bias:
            b = decode_weights(params.bias, count=w_shape[0], layer=name)  # type: ignore[attr-defined]
        trainable = is_updatable_layer(layer)
        weight = Value(w.copy(), requires_grad=trainable, name=f"{name}/weights")
        bias = (
            Value(b.copy(), requires_grad=trainable, name=f"{name}/bias") if b is not None else None
        )
        if trainable:
            self.updatable.append((layer, weight, bias))
        return weight, bias

    def _build(self, layer: object) -> Callable[[dict[str, Value]], None]:
        kind = layer.WhichOneof("layer")  # type: ignore[attr-defined]
        name = layer.name  # type: ignore[attr-defined]
        x_name, y_name = layer.input[0], layer.output[0]  # type: ignore[attr-defined]
        if kind not in TRAINABLE_LAYERS:
            raise NotUpdatableError(
                f"layer '{name}' ({kind}) cannot be trained through "
                f"(allowed on the backprop path: {', '.join(TRAINABLE_LAYERS)})",
                rule="backprop-path",
                layer=name,
            )
        p = getattr(layer, kind)
        try:
            op = getattr(self, f"_op_{kind}")(layer, p)
        except (ValueError, IndexError) as exc:
            raise InvalidModelError(f"layer '{name}': {exc}", layer=name) from exc

        def run(blobs: dict[str, Value]) -> None:
            blobs[y_name] = op(blobs[x_name])

        return run

    def _op_innerProduct(self, layer: object, p: object):  # noqa: N802 - spec name
        w, b = self._weights(
            layer,
            p,
            (int(p.outputChannels), int(p.inputChannels)),
            bool(p.hasBias),  # type: ignore[attr-defined]
        )
        return lambda x: ops.inner_product(x, w, b)

    def _op_convolution(self, layer: object, p: object):
        if p.isDeconvolution:  # type: ignore[attr-defined]
            raise ValueError("deconvolution cannot be trained")
        groups = int(p.nGroups) or 1  # type: ignore[attr-defined]
        kh, kw = pair(p.kernelSize, 3)  # type: ignore[attr-defined]
        stride = pair(p.stride, 1)  # type: ignore[attr-defined]
        dilation = pair(p.dilationFactor, 1)  # type: ignore[attr-defined]
        shape = (int(p.outputChannels), int(p.kernelChannels), kh, kw)  # type: ignore[attr-defined]
        w, b = self._weights(layer, p, shape, bool(p.hasBias))  # type: ignore[attr-defined]
        same = p.WhichOneof("ConvolutionPaddingType") == "same"  # type: ignore[attr-defined]
        mode = p.same.asymmetryMode  # type: ignore[attr-defined]
        (bt, bb), (bl, br) = valid_pads(p.valid)  # type: ignore[attr-defined]
        border = (bt, bb, bl, br)

        def run(x: Value) -> Value:
            if same:
                top, bottom = same_pads(x.shape[2], kh, stride[0], dilation[0], mode)
                left, right = same_pads(x.shape[3], kw, stride[1], dilation[1], mode)
                pads = (top, bottom, left, right)
            else:
                pads = border
            return ops_spatial.conv2d(
                x, w, b, stride=stride, pads=pads, dilation=dilation, groups=groups
            )

        return run

    def _op_pooling(self, layer: object, p: object):
        kind = {_MAX: "max", _AVERAGE: "average"}.get(p.type)  # type: ignore[attr-defined]
        if kind is None:
            raise ValueError("only MAX and AVERAGE pooling can be trained through")
        if p.globalPooling:  # type: ignore[attr-defined]
            return lambda x: ops_spatial.global_pool(x, kind=kind)
        kernel = pair(p.kernelSize, 3)  # type: ignore[attr-defined]
        stride = pair(p.stride, 1)  # type: ignore[attr-defined]
        padding = p.WhichOneof("PoolingPaddingType")  # type: ignore[attr-defined]
        exclude = bool(p.avgPoolExcludePadding)  # type: ignore[attr-defined]

        def run(x: Value) -> Value:
            h, w = x.shape[2], x.shape[3]
            if padding == "same":
                mode = p.same.asymmetryMode  # type: ignore[attr-defined]
                top, bottom = same_pads(h, kernel[0], stride[0], 1, mode)
                left, right = same_pads(w, kernel[1], stride[1], 1, mode)
            elif padding == "includeLastPixel":
                ph, pw = pair(p.includeLastPixel.paddingAmounts, 0)  # type: ignore[attr-defined]
                top, bottom = include_last_pixel_pads(h, kernel[0], stride[0], ph)
                left, right = include_last_pixel_pads(w, kernel[1], stride[1], pw)
            else:
                (top, bottom), (left, right) = valid_pads(p.valid)  # type: ignore[attr-defined]
            pads = (top, bottom, left, right)
            if kind == "max":
                return ops_spatial.max_pool2d(x, kernel=kernel, stride=stride, pads=pads)
            return ops_spatial.avg_pool2d(
                x, kernel=kernel, stride=stride, pads=pads, exclude_padding=exclude
            )

        return run

    def _op_flatten(self, layer: object, p: object):
        last = p.mode == _CHANNEL_LAST  # type: ignore[attr-defined]
        return lambda x: ops.flatten(x, channel_last=last)

    def _op_batchnorm(self, layer: object, p: object):
        if p.computeMeanVar:  # type: ignore[attr-defined]
            raise ValueError("batchnorm that computes its own statistics cannot be trained")
        c = int(p.channels)  # type: ignore[attr-defined]
        name = layer.name  # type: ignore[attr-defined]

        def read(field: str) -> np.ndarray:
            return decode_weights(getattr(p, field), count=c, layer=name)

        stats = {k: read(k) for k in ("gamma", "beta", "mean", "variance")}
        eps = float(p.epsilon)  # type: ignore[attr-defined]
        return lambda x: ops.batchnorm_frozen(x, epsilon=eps, **stats)

    def _op_activation(self, layer: object, p: object):
        kind = p.WhichOneof("NonlinearityType")  # type: ignore[attr-defined]
        if kind not in ops.ACTIVATIONS:
            raise ValueError(f"activation {kind} cannot be trained through")
        return lambda x: ops.activation(x, kind)

    def _op_softmax(self, layer: object, p: object):
        return lambda x: ops.softmax(x, axis=1)


def encode_targets(network: SuffixNetwork, labels: list[object]) -> np.ndarray:
    """Targets of a batch as the loss wants them: class indices, or stacked arrays."""
    if network.loss_kind == "crossEntropy":
        index = {label: i for i, label in enumerate(network.labels)}
        return np.asarray([index[label] for label in labels], dtype=np.int64)
    return np.stack([np.asarray(t, dtype=DTYPE) for t in labels])
