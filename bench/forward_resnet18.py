"""Forward speed of a full-size ResNet-18 (random weights, 224x224, 1000 classes):
mlupdated's engine (Core ML spec → ONNX → onnxruntime) against PyTorch eager, on the
same batch of decoded photographs, in one run.

    python bench/forward_resnet18.py [--batch 16] [--repeats 5]

Needs the test extras (torch, scikit-image). Prints images/s for both and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SIZE = 224
CLASSES = 1000
SCALE = 1 / (255 * 0.226)
BIAS = [-0.485 / 0.226, -0.456 / 0.226, -0.406 / 0.226]


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + self.down(x))


def resnet18() -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for i, w in enumerate((64, 128, 256, 512)):
        layers += [Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1)]
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, CLASSES), nn.Softmax(1)]
    return nn.Sequential(*layers)


def convert(model: nn.Module, path: Path) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        import coremltools as ct

        example = torch.rand(1, 3, SIZE, SIZE)
        mlmodel = ct.convert(
            torch.jit.trace(model, example),
            inputs=[ct.ImageType(name="image", shape=example.shape, scale=SCALE, bias=BIAS)],
            classifier_config=ct.ClassifierConfig([f"class{i}" for i in range(CLASSES)]),
            convert_to="neuralnetwork",
            minimum_deployment_target=ct.target.iOS13,
        )
    path.write_bytes(mlmodel.get_spec().SerializeToString())


def photos(directory: Path, count: int) -> list[Path]:
    from PIL import Image
    from skimage import data

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
    ]
    paths = []
    for i in range(count):
        path = directory / f"photo{i}.jpg"
        Image.fromarray(getattr(data, names[i % len(names)])()).save(path, quality=90)
        paths.append(path)
    return paths


def best_rates(runs: list, batch: int, repeats: int) -> list[float]:
    """Images/s of each run (best of ``repeats``), the runs interleaved so that load
    from elsewhere on the machine affects them alike."""
    for run in runs:
        run()  # warm-up
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return [batch / b for b in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from mlupdated.coreml.images import load_tensor
    from mlupdated.engine.predictor import Predictor

    torch.manual_seed(0)
    model = resnet18().eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model_path = tmp_path / "resnet18.mlmodel"
        convert(model, model_path)
        predictor = Predictor.from_path(model_path, cache=False)
        image_type = predictor.image_feature.type.imageType
        paths = photos(tmp_path, args.batch)
        batch = np.stack([load_tensor(p, image_type) for p in paths])

        def engine() -> None:
            predictor.predict_tensors({"image": batch})

        tensor = torch.from_numpy(batch)
        bias = torch.tensor(BIAS).view(1, 3, 1, 1)

        def eager() -> None:
            with torch.no_grad():
                model(tensor * SCALE + bias)

        def end_to_end() -> None:
            predictor.predict_paths(paths)

        ours, theirs, full = best_rates([engine, eager, end_to_end], args.batch, args.repeats)
        got = np.array(
            [
                [p.probabilities[f"class{i}"] for i in range(CLASSES)]
                for p in predictor.predict_tensors({"image": batch})
            ]
        )
        with torch.no_grad():
            want = model(tensor * SCALE + bias).numpy()

    print(f"batch {args.batch} of {SIZE}x{SIZE} images, torch threads {torch.get_num_threads()}")
    print(f"mlupdated engine (onnxruntime): {ours:8.1f} images/s")
    print(f"PyTorch eager:                  {theirs:8.1f} images/s")
    print(f"ratio engine / eager:           {ours / theirs:8.2f}x")
    print(f"mlupdated predict_paths (decode+resize+forward): {full:8.1f} images/s")
    print(f"max abs probability difference: {np.max(np.abs(got - want)):.2e}")


if __name__ == "__main__":
    main()
