"""Every real-world model in the shared zoo either runs, with a check that its outputs
make sense, or is refused with one line naming the reason (docs/compatibility.md is
the same list in prose).

The zoo folder is not part of the repository (tests/helpers/shared_data.py finds it).
A model that is added there without an entry here fails ``test_every_zoo_model_is_listed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlupdated.coreml.spec import load_spec
from mlupdated.coreml.weights import decode_weights
from mlupdated.engine.compile import compile_network
from mlupdated.engine.predictor import Predictor
from mlupdated.engine.runtime import Session
from mlupdated.errors import MlupdatedError
from PIL import Image, ImageDraw

from tests.helpers.shared_data import ZOO, require

# -- inputs ------------------------------------------------------------------------------


def _digit(digit: int, size: int) -> np.ndarray:
    """A digit drawn in thick white strokes on black, as MNIST has them: [1, size, size]."""
    big = 280
    image = Image.new("L", (big, big), 0)
    pen = ImageDraw.Draw(image)
    strokes = {
        0: [],
        1: [(140, 40, 140, 240)],
        4: [(170, 40, 170, 240), (170, 40, 70, 170), (70, 170, 220, 170)],
        7: [(70, 50, 210, 50), (210, 50, 120, 240)],
    }[digit]
    if digit == 0:
        pen.ellipse((80, 40, 200, 240), outline=255, width=28)
    for line in strokes:
        pen.line(line, fill=255, width=28)
    small = image.resize((size, size), Image.BILINEAR)
    return np.asarray(small, dtype=np.float32)[None]


def _photo_like(channels: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image (gradients plus a few blobs), 0..255, ``[C, H, W]``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    g = np.random.default_rng(seed)
    planes = []
    for _ in range(channels):
        fx, fy, phase = g.uniform(1, 4), g.uniform(1, 4), g.uniform(0, 6)
        plane = 0.5 + 0.5 * np.sin(fx * xx / width * 6 + phase) * np.cos(fy * yy / height * 6)
        planes.append(255 * plane)
    return np.stack(planes).astype(np.float32)


def _path(name: str) -> Path:
    return require(ZOO) / "models" / name


def _predictor(name: str) -> Predictor:
    return Predictor.from_path(_path(name), cache=False)


def _assert_probabilities(probabilities: dict, count: int) -> None:
    values = np.asarray(list(probabilities.values()))
    assert len(values) == count
    assert np.all(values >= 0) and abs(values.sum() - 1) < 1e-4


# -- models that run -----------------------------------------------------------------------


def check_keras_linear(name: str) -> None:
    """A one-weight linear regressor: y = w x + b with the spec's own w and b."""
    predictor = _predictor(name)
    layer = predictor.spec.neuralNetwork.layers[0].innerProduct
    w = decode_weights(layer.weights, count=1)[0]
    b = decode_weights(layer.bias, count=1)[0]
    x = np.array([[-2.0], [0.0], [3.5]], dtype=np.float32)
    got = [
        np.asarray(p.outputs["output"]).ravel()[0]
        for p in predictor.predict_tensors({"dense_input": x})
    ]
    np.testing.assert_allclose(got, w * x.ravel() + b, atol=1e-4)


def check_glove_sentence(name: str) -> None:
    """Keras embedding + flatten + dense over a 4-word sentence, fed as Core ML takes it
    (a sequence of 4 indices, ``[4, 1, 1, 1, 1]``) to ``mlupdated.predict``, against
    NumPy on the spec's own weights. Fed as declared (one index) the dense layer meets
    100 values instead of 400: refused in one line."""
    import mlupdated

    spec = load_spec(_path(name))
    with pytest.raises(MlupdatedError) as refused:
        mlupdated.predict(_path(name), {"input1": [3.0]})
    message = str(refused.value)
    assert "\n" not in message and "'dense_1'" in message and "100 values" in message

    layers = {layer.WhichOneof("layer"): layer for layer in spec.neuralNetwork.layers}
    emb, dense = layers["embedding"].embedding, layers["innerProduct"].innerProduct
    table = decode_weights(emb.weights, count=emb.outputChannels * emb.inputDim)
    table = table.reshape(emb.outputChannels, emb.inputDim).T
    w = decode_weights(dense.weights, count=dense.outputChannels * dense.inputChannels)
    b = decode_weights(dense.bias, count=dense.outputChannels)
    words = np.array([[1, 5, 2, 9], [3, 3, 14, 0]])
    expected = 1 / (1 + np.exp(-(table[words].reshape(2, -1) @ w.reshape(1, -1).T + b)))

    got = [
        mlupdated.predict(_path(name), {"input1": sentence.reshape(4, 1, 1, 1, 1)})["output1"]
        for sentence in words.astype(np.float64)
    ]
    np.testing.assert_allclose(np.reshape(got, (2, 1)), expected, atol=1e-4)


def check_mnist(digits: tuple[int, ...], size: int) -> Callable[[str], None]:
    def check(name: str) -> None:
        """Digits drawn with PIL are recognized."""
        predictor = _predictor(name)
        batch = np.stack([_digit(d, size) for d in digits])
        predictions = predictor.predict_tensors({"image": batch})
        assert [int(p.label) for p in predictions] == list(digits)
        for p in predictions:
            _assert_probabilities(p.probabilities, 10)

    return check


def check_quickdraw(name: str) -> None:
    """A 15-class sketch classifier: a distribution over its labels for a drawing."""
    predictor = _predictor(name)
    predictions = predictor.predict_tensors({"image": np.stack([_digit(0, 28), _digit(7, 28)])})
    labels = list(predictor.spec.neuralNetworkClassifier.stringClassLabels.vector)
    for p in predictions:
        assert p.label in labels
        _assert_probabilities(p.probabilities, len(labels))


def check_knn(name: str) -> None:
    """An updatable k-NN shipped without examples: every input gets its default label."""
    predictor = _predictor(name)
    knn = predictor.spec.kNearestNeighborsClassifier
    assert len(knn.nearestNeighborsIndex.floatSamples) == 0
    x = np.random.default_rng(0).standard_normal((2, 21)).astype(np.float32)
    got = [p.label for p in predictor.predict_tensors({"input": x})]
    assert got == [knn.defaultStringLabel] * 2


def check_squeezenet(name: str) -> None:
    """An 8-bit lookup-table ImageNet classifier: 1000 probabilities that sum to 1."""
    predictor = _predictor(name)
    (p,) = predictor.predict_tensors({"image": _photo_like(3, 227, 227)[None]})
    labels = predictor.spec.neuralNetworkClassifier.stringClassLabels.vector
    assert len(labels) == 1000
    # A few ImageNet names occur twice ("crane", "maillot"): one dictionary key each.
    _assert_probabilities(p.probabilities, len(set(labels)))


def check_waifu2x(name: str) -> None:
    """A denoiser of 7 valid 3x3 convolutions: 142 → 128 pixels; a clean smooth image
    comes back nearly unchanged (as 0..1 values, which the model works in)."""
    x = _photo_like(3, 142, 142, seed=1)[None] / 255
    session = Session(compile_network(load_spec(_path(name))))
    (out,) = session.run({"input": x}).values()
    assert out.shape == (1, 3, 128, 128)
    assert np.abs(out - x[:, :, 7:-7, 7:-7]).mean() < 0.02


def check_candy(name: str) -> None:
    """A 720x720 style transfer: an image of the same size, finite, mostly 0..255
    (the rest is clipped when it becomes an image)."""
    predictor = _predictor(name)
    (p,) = predictor.predict_tensors({"inputImage": _photo_like(3, 720, 720)[None]})
    out = np.asarray(p.outputs["outputImage"])
    assert out.shape == (3, 720, 720) and np.isfinite(out).all()
    assert np.mean((out > -1) & (out < 256)) > 0.9


def check_stylize(name: str) -> None:
    """A 26-style transfer (562 layers; permutes that move Core ML's sequence axis).
    Its app feeds the style as a one-hot sequence of 26: each style gives a different
    256x256 image in 0..255; fed as declared (one value) it runs too."""
    spec = load_spec(_path(name))
    image = _photo_like(3, 256, 256, seed=2)[None] / 255
    predictor = Predictor(spec, path=name, cache=False)  # the declared form compiles
    outs = []
    for style in (0, 7):
        # A batch of one sequence: [N, Seq, *declared] (Core ML's [26, 1, 1, 1, 1]).
        one_hot = np.zeros((1, 26, 1, 1, 1), dtype=np.float32)
        one_hot[0, style] = 1
        (p,) = predictor.predict_tensors({"input__0": image, "style_num__0": one_hot})
        out = np.asarray(p.outputs["Squeeze__0"])[None]
        assert out.shape == (1, 3, 256, 256)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
        outs.append(out)
    assert np.abs(outs[0] - outs[1]).mean() > 1


def check_activity(name: str) -> None:
    """A Turi Create activity classifier (conv + LSTM with state in and out): a
    distribution over its 2 labels, and the state fed back changes the next answer."""
    predictor = _predictor(name)
    spec = predictor.spec
    g = np.random.default_rng(0)
    feeds = {
        f.name: g.standard_normal((1, f.type.multiArrayType.shape[0])).astype(np.float32)
        for f in spec.description.input
    }
    feeds["stateIn"] = np.zeros((1, 400), dtype=np.float32)
    # The state output comes with the default outputs, as Core ML returns it.
    (first,) = predictor.predict_tensors(feeds)
    _assert_probabilities(first.probabilities, 2)
    state = np.asarray(first.outputs["stateOut"])
    assert state.size == 400 and np.isfinite(state).all()
    (second,) = predictor.predict_tensors({**feeds, "stateIn": state.reshape(1, 400)})
    changed = [abs(first.probabilities[k] - second.probabilities[k]) for k in first.probabilities]
    assert max(changed) > 0


def check_posenet(name: str) -> None:
    """A float16 PoseNet: 17 keypoint heatmaps and offsets on a 33x33 grid at 513 px."""
    predictor = _predictor(name)
    (p,) = predictor.predict_tensors({"image": _photo_like(3, 513, 513)[None]})
    shapes = {k: np.asarray(v).shape for k, v in p.outputs.items()}
    assert shapes["heatmap"] == (17, 33, 33) and shapes["offsets"] == (34, 33, 33)
    assert all(np.isfinite(np.asarray(v)).all() for v in p.outputs.values())


def check_mars_pricer(name: str) -> None:
    """Apple's sample pipeline regressor (feature vectorizer, then a GLM): a finite
    price for each habitat, larger for a larger habitat (its exact value against NumPy
    is in test_zoo_classic.py)."""
    predictor = _predictor(name)
    sizes = np.array([750.0, 5000.0])
    results = predictor.predict_features(
        {"solarPanels": np.array([2.0, 2.0]), "greenhouses": np.array([3.0, 3.0]), "size": sizes}
    )
    prices = [float(np.asarray(r.outputs["price"]).reshape(-1)[0]) for r in results]
    assert all(np.isfinite(prices)) and prices[1] > prices[0]


RUNS: dict[str, Callable[[str], None]] = {
    "JacopoMangiavacchi__S4TF_CoreML_Test__keras_model_personalization.mlmodel": check_keras_linear,
    "JacopoMangiavacchi__TestGloVe__model.mlmodel": check_glove_sentence,
    "anupamchugh__iowncode__MNISTClassifier.mlmodel": check_mnist((0, 1, 4, 7), 28),
    "archdanny__mlmodels__MarsHabitatPricer.mlmodel": check_mars_pricer,
    "archdanny__mlmodels__newcoreml.mlmodel": check_mnist((1, 4, 7), 8),
    "cfinker__postal-demo-extended-with-authorship-verification__UpdatableKNN.mlmodel": check_knn,
    "chaytanc__ModelVale__SqueezeNetInt8LUT.mlmodel": check_squeezenet,
    "imxieyi__waifu2x-ios__anime_noise1_model.mlmodel": check_waifu2x,
    "lfarah__CoreML-Stylize__FNSCandy.mlmodel": check_candy,
    "lfarah__CoreML-Stylize__stylize.mlmodel": check_stylize,
    "r4ghu__iOS-CoreML-MNIST__mnistCNN.mlmodel": check_mnist((0, 1, 4, 7), 28),
    "romanmazeev__Draws__QuickDrawUpdatable.mlmodel": check_quickdraw,
    "tanpinquan__ExerciseClassification__MyCustomActivityClassifier.mlmodel": check_activity,
    "ztujing__PoseFinder-main_2__PoseNetMobileNet075S16FP16.mlmodel": check_posenet,
}

# -- models refused ------------------------------------------------------------------------------
REFUSED: dict[str, str] = {
    # A Create ML image classifier: Apple's Vision feature print, then a GLM.
    "anupamchugh__iowncode__NSFWDetector.mlmodel": (
        r"pipeline stage 0: model type 'visionFeaturePrint' can only be run by Apple's frameworks"
    ),
}


def test_every_zoo_model_is_listed() -> None:
    found = {p.name for p in (require(ZOO) / "models").glob("*.mlmodel")}
    assert found == set(RUNS) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_zoo_model_runs(name: str) -> None:
    RUNS[name](name)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_zoo_model_is_refused_in_one_line(name: str) -> None:
    with pytest.raises(MlupdatedError) as refused:
        _predictor(name)
    message = str(refused.value)
    assert "\n" not in message and name in message
    assert re.search(REFUSED[name], message), message
