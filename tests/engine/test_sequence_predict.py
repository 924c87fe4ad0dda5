"""Sequence inputs through ``mlupdated.predict``, the ``Predictor`` and ``mlupdated
predict``: a classic network's ``[C]`` input fed as Core ML's ``[Seq, 1, C]`` or
``[Seq, 1, C, 1, 1]`` array runs its recurrent layer over the Seq steps; the state
outputs come with the default outputs and the optional state inputs are taken (zeros
when left out, as Core ML does). Checked against ``torch.nn.LSTM`` and ``torch.nn.RNN``
with the same weights (the networks built by coremltools' NeuralNetworkBuilder)."""

from __future__ import annotations

import json
import warnings

import mlupdated
import numpy as np
import pytest
import torch
from mlupdated import cli
from mlupdated.coreml.spec import save_spec
from mlupdated.engine.predictor import Predictor
from mlupdated.errors import FeatureError, InvalidModelError

from .helpers import assert_close, build_spec, rng

SEQ, IN, H = 7, 4, 5


def _lstm_blocks(lstm: torch.nn.LSTM) -> tuple[list, list, list]:
    """torch's (i, f, g, o) gate blocks as the builder's [i, f, o, z] lists."""

    def blocks(t):
        i, f, g, o = np.split(t.detach().numpy(), 4)
        return [i, f, o, g]

    bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
    return blocks(lstm.weight_hh_l0), blocks(lstm.weight_ih_l0), blocks(bias)


def _builder(inputs, outputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from coremltools.models import datatypes
        from coremltools.models.neural_network import NeuralNetworkBuilder

        return NeuralNetworkBuilder(
            [(name, datatypes.Array(*shape)) for name, shape in inputs],
            [(name, None) for name in outputs],
        )


def _optional_states(spec, names) -> None:
    for feature in spec.description.input:
        if feature.name in names:
            feature.type.isOptional = True


@pytest.fixture(scope="module")
def lstm_model(tmp_path_factory):
    """x [IN] → uniDirectionalLSTM (every step out) → y; h/c in (optional) and out."""
    torch.manual_seed(7)
    lstm = torch.nn.LSTM(IN, H, batch_first=True)
    w_h, w_x, b = _lstm_blocks(lstm)
    builder = _builder(
        [("x", (IN,)), ("lstm_h_in", (H,)), ("lstm_c_in", (H,))],
        ["y", "lstm_h_out", "lstm_c_out"],
    )
    builder.add_unilstm(
        "lstm",
        w_h,
        w_x,
        b,
        H,
        IN,
        ["x", "lstm_h_in", "lstm_c_in"],
        ["y", "lstm_h_out", "lstm_c_out"],
        output_all=True,
    )
    _optional_states(builder.spec, {"lstm_h_in", "lstm_c_in"})
    path = tmp_path_factory.mktemp("lstm") / "lstm.mlmodel"
    save_spec(builder.spec, path)
    return path, lstm


@pytest.fixture(scope="module")
def rnn_model(tmp_path_factory):
    """x [IN, 1, 1] → simpleRecurrent (last step out) → innerProduct → y [3]."""
    torch.manual_seed(8)
    rnn = torch.nn.RNN(IN, H, batch_first=True)
    dense = torch.nn.Linear(H, 3)
    builder = _builder([("x", (IN, 1, 1))], ["y"])
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy()
    builder.add_simple_rnn(
        "rnn",
        rnn.weight_hh_l0.detach().numpy(),
        rnn.weight_ih_l0.detach().numpy(),
        bias,
        H,
        IN,
        "TANH",
        ["x"],
        ["h"],
        output_all=False,
    )
    weights = dense.weight.detach().numpy()
    builder.add_inner_product("fc", weights, dense.bias.detach().numpy(), H, 3, True, "h", "y")
    path = tmp_path_factory.mktemp("rnn") / "rnn.mlmodel"
    save_spec(builder.spec, path)
    return path, rnn, dense


def _torch_lstm(lstm, x: np.ndarray, h0=None, c0=None):
    """torch's per-step outputs [Seq, H] and final (h, c), one example of ``x`` [Seq, IN]."""
    h0 = np.zeros(H, np.float32) if h0 is None else h0
    c0 = np.zeros(H, np.float32) if c0 is None else c0
    state = (torch.from_numpy(h0)[None, None], torch.from_numpy(c0)[None, None])
    with torch.no_grad():
        y, (h, c) = lstm(torch.from_numpy(x)[None], state)
    return y.numpy()[0], h.numpy().reshape(H), c.numpy().reshape(H)


def _x(seed: int, steps: int = SEQ) -> np.ndarray:
    return rng(seed).standard_normal((steps, IN)).astype(np.float32)


@pytest.mark.parametrize("form", ["[Seq, 1, C]", "[Seq, 1, C, 1, 1]"])
def test_predict_runs_the_lstm_over_the_sequence(lstm_model, form) -> None:
    path, lstm = lstm_model
    x = _x(1)
    fed = x[:, None] if form == "[Seq, 1, C]" else x[:, None, :, None, None]
    got = mlupdated.predict(path, {"x": fed})
    y, h, c = _torch_lstm(lstm, x)
    assert set(got) == {"y", "lstm_h_out", "lstm_c_out"}
    # The per-step output as Core ML writes a sequence blob: [Seq, 1, H, 1, 1].
    assert got["y"].shape == (SEQ, 1, H, 1, 1)
    assert_close(got["y"], y[:, None, :, None, None])
    assert_close(got["lstm_h_out"].reshape(H), h)
    assert_close(got["lstm_c_out"].reshape(H), c)


def test_state_inputs_are_taken_and_default_to_zeros(lstm_model) -> None:
    path, lstm = lstm_model
    x = _x(2)[:, None]
    h0 = rng(3).standard_normal(H).astype(np.float32)
    c0 = rng(4).standard_normal(H).astype(np.float32)
    given = mlupdated.predict(path, {"x": x, "lstm_h_in": h0, "lstm_c_in": c0})
    y, h, c = _torch_lstm(lstm, x[:, 0], h0, c0)
    assert_close(given["y"].reshape(SEQ, H), y)
    assert_close(given["lstm_h_out"].reshape(H), h)
    assert_close(given["lstm_c_out"].reshape(H), c)

    absent = mlupdated.predict(path, {"x": x})
    zeros = mlupdated.predict(path, {"x": x, "lstm_h_in": np.zeros(H), "lstm_c_in": np.zeros(H)})
    for name in absent:
        np.testing.assert_array_equal(absent[name], zeros[name])
    assert not np.allclose(absent["lstm_h_out"], given["lstm_h_out"], atol=1e-3)


def test_a_predictor_feeds_zeros_for_the_state_inputs_left_out(lstm_model) -> None:
    path, lstm = lstm_model
    xs = np.stack([_x(50 + i) for i in range(3)])
    predictions = Predictor.from_path(path).predict_features({"x": xs})
    for x, prediction in zip(xs, predictions, strict=True):
        y, h, c = _torch_lstm(lstm, x)
        assert_close(prediction.outputs["y"].reshape(SEQ, H), y)
        assert_close(prediction.outputs["lstm_c_out"].reshape(H), c)


def test_a_state_input_that_is_not_optional_must_be_given(tmp_path) -> None:
    """Core ML's zeros are for optional inputs only: a required one left out is
    refused in one line naming it."""
    torch.manual_seed(9)
    w_h, w_x, b = _lstm_blocks(torch.nn.LSTM(IN, H))
    builder = _builder([("x", (IN,)), ("h_in", (H,)), ("c_in", (H,))], ["y", "h_out", "c_out"])
    builder.add_unilstm("l", w_h, w_x, b, H, IN, ["x", "h_in", "c_in"], ["y", "h_out", "c_out"])
    path = tmp_path / "required.mlmodel"
    save_spec(builder.spec, path)
    with pytest.raises(FeatureError, match=r"^input 'h_in' is missing \(it takes an array\)$"):
        mlupdated.predict(path, {"x": _x(60)[:, None], "c_in": np.zeros(H)})


def test_the_state_out_fed_back_continues_the_sequence(lstm_model) -> None:
    """The state a first half returns, fed with the second half, ends where torch's
    run over the whole sequence ends."""
    path, lstm = lstm_model
    x = _x(5, steps=10)
    first = mlupdated.predict(path, {"x": x[:4, None]})
    second = mlupdated.predict(
        path,
        {"x": x[4:, None], "lstm_h_in": first["lstm_h_out"], "lstm_c_in": first["lstm_c_out"]},
    )
    y, h, c = _torch_lstm(lstm, x)
    assert_close(second["y"].reshape(6, H), y[4:])
    assert_close(second["lstm_h_out"].reshape(H), h)
    assert_close(second["lstm_c_out"].reshape(H), c)


def test_one_step_is_the_declared_shape(lstm_model) -> None:
    path, lstm = lstm_model
    x = _x(6, steps=1)
    got = mlupdated.predict(path, {"x": x[0]})
    y, h, _ = _torch_lstm(lstm, x)
    assert_close(got["y"].reshape(H), y[0])
    assert_close(got["lstm_h_out"].reshape(H), h)


def test_a_predictor_batches_sequences_and_keeps_a_graph_per_length(lstm_model) -> None:
    path, lstm = lstm_model
    predictor = Predictor.from_path(path, cache=False)
    for steps in (3, 9, 3):
        xs = np.stack([_x(10 + i, steps) for i in range(2)])
        predictions = predictor.predict_features({"x": xs})
        for x, prediction in zip(xs, predictions, strict=True):
            y, h, _ = _torch_lstm(lstm, x)
            assert_close(prediction.outputs["y"].reshape(steps, H), y)
            assert_close(prediction.outputs["lstm_h_out"].reshape(H), h)
    (stage,) = predictor._stages
    assert sorted(stage.sequences._sessions) == [(("x", 3),), (("x", 9),)]


def test_a_graph_per_length_is_kept_in_the_cache(lstm_model, tmp_path, monkeypatch) -> None:
    """A second predictor finds the graph compiled for a length in the disk cache; the
    graph for the declared shape keeps its key (one file more per length, no less)."""
    from mlupdated.engine import graph_cache

    monkeypatch.setenv("MLUPDATED_CACHE_DIR", str(tmp_path))
    path, _ = lstm_model
    xs = _x(40)[None]
    start = graph_cache.compile_count
    first = Predictor.from_path(path).predict_features({"x": xs})
    assert graph_cache.compile_count == start + 2  # declared shape, then Seq = 7
    second = Predictor.from_path(path).predict_features({"x": xs})
    assert graph_cache.compile_count == start + 2
    graphs = [p for p in (tmp_path / "graphs").glob("*.onnx") if not p.name.endswith(".opt.onnx")]
    assert len(graphs) == 2
    np.testing.assert_array_equal(first[0].outputs["y"], second[0].outputs["y"])


def test_a_rank_5_input_runs_the_rnn_over_its_steps(rnn_model) -> None:
    path, rnn, dense = rnn_model
    x = _x(20)
    got = mlupdated.predict(path, {"x": x[:, None, :, None, None]})
    with torch.no_grad():
        _, h = rnn(torch.from_numpy(x)[None])
        want = dense(h[0]).numpy()[0]
    assert_close(got["y"].reshape(3), want)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((SEQ, 2, IN), r"input 'x' has shape \(7, 2, 4\): .*batch, which must be 1.*got 2"),
        ((SEQ, 1, IN + 1), r"input 'x' has shape \(7, 1, 5\): .*steps of \(5,\)"),
        ((SEQ, 1, IN, 2, 1), r"input 'x' has shape \(7, 1, 4, 2, 1\): .*steps of \(4, 2, 1\)"),
        ((SEQ, IN), r"input 'x' has shape \(7, 4\), the model expects \(4,\) or a sequence"),
        ((0, 1, IN), r"input 'x' has shape \(0, 1, 4\): a sequence of no steps"),
    ],
)
def test_a_shape_that_is_no_sequence_is_refused_naming_the_input(lstm_model, shape, message):
    path, _ = lstm_model
    with pytest.raises(FeatureError, match=message):
        mlupdated.predict(path, {"x": np.zeros(shape)})


def test_a_layer_that_takes_no_sequence_is_named_with_the_input(tmp_path) -> None:
    spec = build_spec(
        {"x": (3, 4, 4)},
        ["y"],
        lambda b: b.add_pooling("pool", 2, 2, 2, 2, "MAX", "VALID", "x", "y"),
    )
    path = tmp_path / "pool.mlmodel"
    save_spec(spec, path)
    assert mlupdated.predict(path, {"x": np.zeros((3, 4, 4))})["y"].shape == (3, 2, 2)
    with pytest.raises(InvalidModelError) as caught:
        mlupdated.predict(path, {"x": np.zeros((5, 1, 3, 4, 4))})
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "with 'x' as a sequence of 5: layer 'pool' (pooling)" in message


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_takes_a_sequence_from_an_npy_file(lstm_model, tmp_path, capsys) -> None:
    path, lstm = lstm_model
    x = _x(30)
    npy = tmp_path / "x.npy"
    np.save(npy, x[:, None])
    code, out, _ = _cli(capsys, "predict", "--model", str(path), "--input", f"x={npy}", "--json")
    assert code == 0
    outputs = json.loads(out)["outputs"]
    y, h, c = _torch_lstm(lstm, x)
    assert np.asarray(outputs["y"]).shape == (SEQ, 1, H, 1, 1)
    assert_close(np.asarray(outputs["y"], np.float32).reshape(SEQ, H), y)
    assert_close(np.asarray(outputs["lstm_h_out"], np.float32).reshape(H), h)
    assert_close(np.asarray(outputs["lstm_c_out"], np.float32).reshape(H), c)

    # A --features file: one line per example, each its own sequence length.
    short = tmp_path / "short.npy"
    np.save(short, x[:3, None, :, None, None])
    lines = tmp_path / "examples.jsonl"
    lines.write_text(json.dumps({"x": str(npy)}) + "\n" + json.dumps({"x": str(short)}) + "\n")
    code, out, _ = _cli(capsys, "predict", "--model", str(path), "--features", str(lines), "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [np.asarray(r["outputs"]["y"]).shape[0] for r in records] == [SEQ, 3]
    y3, _, _ = _torch_lstm(lstm, x[:3])
    assert_close(np.asarray(records[1]["outputs"]["y"], np.float32).reshape(3, H), y3)


def test_the_command_refuses_a_batch_in_one_line(lstm_model, tmp_path, capsys) -> None:
    path, _ = lstm_model
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((SEQ, 2, IN)))
    code, out, err = _cli(capsys, "predict", "--model", str(path), "--input", f"x={npy}")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "input 'x' has shape (7, 2, 4)" in err and "must be 1" in err


def test_only_the_most_recently_used_sequence_graphs_are_kept(lstm_model, monkeypatch) -> None:
    from mlupdated.engine import sequence_feeds

    monkeypatch.setattr(sequence_feeds, "KEPT_SESSIONS", 2)
    path, lstm = lstm_model
    predictor = Predictor.from_path(path, cache=False)
    for steps in (2, 3, 2, 4):
        x = _x(20 + steps, steps)[None]
        (prediction,) = predictor.predict_features({"x": x})
        assert_close(prediction.outputs["y"].reshape(steps, H), _torch_lstm(lstm, x[0])[0])
    (stage,) = predictor._stages
    # 3 was used less recently than 2, so it made room for 4.
    assert list(stage.sequences._sessions) == [(("x", 2),), (("x", 4),)]


def _pipeline(stages, inputs, outputs):
    """A pipeline of ``stages`` (specs), described by the first's ``inputs`` and the
    last's ``outputs`` (names)."""
    from mlupdated.coreml.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.specificationVersion = max(s.specificationVersion for s in stages)
    spec.pipeline.models.extend(stages)
    first, last = stages[0].description, stages[-1].description
    spec.description.input.extend(f for f in first.input if f.name in inputs)
    spec.description.output.extend(f for f in last.output if f.name in outputs)
    return spec


def _softmax_stage():
    builder = _builder([("y", (3,))], ["p"])
    builder.add_softmax("soft", "y", "p")
    return builder.spec


def test_a_pipeline_takes_a_sequence_where_its_first_network_does(rnn_model, tmp_path) -> None:
    from mlupdated.coreml.spec import load_spec

    path, rnn, dense = rnn_model
    spec = _pipeline([load_spec(path), _softmax_stage()], {"x"}, {"p"})
    pipeline_path = tmp_path / "pipeline.mlmodel"
    save_spec(spec, pipeline_path)
    x = _x(21, steps=9)
    got = mlupdated.predict(pipeline_path, {"x": x[:, None, :, None, None]})
    with torch.no_grad():
        _, h = rnn(torch.from_numpy(x)[None])
        want = torch.softmax(dense(h[0]), dim=-1).numpy()[0]
    assert_close(got["p"].reshape(3), want)


def test_a_pipeline_input_that_a_later_stage_reads_as_it_is_takes_no_sequence(
    rnn_model, tmp_path
) -> None:
    """The pipeline's input also feeds a stage that takes no sequence (a network with
    the input declared [IN, 1, 1] of another mapping): the sequence is refused."""
    from mlupdated.coreml.sequences import sequence_inputs
    from mlupdated.coreml.spec import load_spec

    path, _, _ = rnn_model
    plain = _builder([("x", (IN, 1, 1)), ("y", (3,))], ["z"])
    plain.add_elementwise("sum", ["y"], "z", "ADD", alpha=1.0)
    plain.spec.neuralNetwork.arrayInputShapeMapping = 1  # EXACT: no sequences
    spec = _pipeline([load_spec(path), plain.spec], {"x"}, {"z"})
    assert sequence_inputs(spec) == {}
    alone = _pipeline([load_spec(path), _softmax_stage()], {"x"}, {"p"})
    assert sequence_inputs(alone) == {"x": (IN, 1, 1)}


def test_a_pipeline_feeds_zeros_for_a_state_input_left_out(lstm_model, tmp_path) -> None:
    """The LSTM's optional state inputs, left out of a pipeline that passes them to the
    network only, start at zeros; given, they are used."""
    from mlupdated.coreml.spec import load_spec

    path, lstm = lstm_model
    after = _builder([("y", (H,))], ["z"])
    after.add_elementwise("twice", ["y"], "z", "MULTIPLY", alpha=2.0)
    spec = _pipeline(
        [load_spec(path), after.spec], {"x", "lstm_h_in", "lstm_c_in"}, {"z", "lstm_h_out"}
    )
    spec.description.output.extend(
        f for f in load_spec(path).description.output if f.name == "lstm_h_out"
    )
    pipeline_path = tmp_path / "pipeline.mlmodel"
    save_spec(spec, pipeline_path)
    x = _x(22, steps=1)[0]
    ys, h, _ = _torch_lstm(lstm, x[None])
    got = mlupdated.predict(pipeline_path, {"x": x})
    assert_close(got["z"].reshape(H), 2 * ys[-1])
    assert_close(got["lstm_h_out"].reshape(H), h)
    h0 = rng(23).standard_normal(H).astype(np.float32)
    ys, h, _ = _torch_lstm(lstm, x[None], h0=h0)
    got = mlupdated.predict(pipeline_path, {"x": x, "lstm_h_in": h0})
    assert_close(got["z"].reshape(H), 2 * ys[-1])
