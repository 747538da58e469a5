"""Captum on token ids (issue 15 #4): maps at the input embeddings against Captum called directly,
Integrated Gradients' completeness against a fresh evaluation of the baseline, conductance
through the embeddings against Captum's LayerConductance with the embedding output as input,
the attribution criterion on a text model, and the embedding task's similarity target. Tiny
random BERTs saved with save_pretrained, and the real minilm-topics demo."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench as wb
import workbench.explain as ex
import workbench.io as wio
from workbench.explain.text import token_input

transformers = pytest.importorskip("transformers")
from tests.hf_models import VOCAB  # noqa: E402
from tests.test_hf_text import _bert_folder  # noqa: E402  (the tiny random BERT folders)

captum_attr = pytest.importorskip("captum.attr")

# float32 models: sums of a few hundred products agree to a few float32 ulps of the largest term.
EPS = torch.finfo(torch.float32).eps
RTOL = 1e3 * EPS


def _ids(n: int = 12, length: int = 9, seed: int = 0) -> torch.Tensor:
    """[CLS] words [SEP] then padding (id 0), of different lengths."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.zeros(n, length, dtype=torch.long)
    for i in range(n):
        size = 1 + i % (length - 2)
        words = torch.randint(5, len(VOCAB), (size,), generator=generator)
        rows[i, : size + 2] = torch.cat([torch.tensor([2]), words, torch.tensor([3])])
    return rows


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> wb.Workbench:
    loaded = wio.load_model(_bert_folder(tmp_path_factory.mktemp("bert"), classes=3))
    ids = _ids()
    return wb.Workbench(loaded.model, (ids, torch.arange(len(ids)) % 3))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> wb.Workbench:
    """A bare random BERT: mean-pooled embeddings, the embedding task."""
    loaded = wio.load_model(_bert_folder(tmp_path_factory.mktemp("encoder")))
    assert loaded.model.output == "embedding"
    return wb.Workbench(loaded.model, (_ids(), None))


def _embedding(bench: wb.Workbench) -> torch.nn.Module:
    return bench.model.model.get_input_embeddings()


def test_text_models_get_the_embedding_methods(bench) -> None:
    shape = tuple(bench.val_inputs.shape[1:])
    methods = ex.applicable_methods("text", shape, integer=True)
    assert methods == ["integrated_gradients", "saliency", "input_x_gradient"]
    assert ex.applicable_methods(None, shape, "embedding", integer=True) == ["integrated_gradients"]
    token = token_input(bench.model)
    assert token.module is _embedding(bench) and token.pad_token_id == 0
    assert token.name == "model.bert.embeddings.word_embeddings"
    for method in ("gradient_shap", "occlusion"):
        with pytest.raises(ex.ExplainError, match="token ids are integers"):
            ex.attribute(bench, [0], method)
    # The baseline option means nothing on text: its baseline is padding.
    with pytest.raises(ex.ExplainError, match="no option 'baseline'"):
        ex.attribute(bench, [0], baseline="mean")


@pytest.mark.parametrize("method", ["integrated_gradients", "input_x_gradient", "saliency"])
def test_token_attributions_equal_captum_called_directly(bench, method) -> None:
    indices = [0, 3, 7, 10]
    ours = ex.attribute(bench, indices, method)
    ids = bench.val_inputs[indices]
    model, layer = bench.model, _embedding(bench)
    target = model(ids).argmax(dim=1)
    if method == "integrated_gradients":
        attr = captum_attr.LayerIntegratedGradients(model, layer).attribute(
            ids, baselines=torch.zeros_like(ids), target=target, n_steps=50
        )
    else:
        attr = captum_attr.LayerGradientXActivation(
            model, layer, multiply_by_inputs=method == "input_x_gradient"
        ).attribute(ids, target=target)
        attr = attr.abs() if method == "saliency" else attr
    real = ids != 0
    expected = attr.sum(dim=-1) * real
    assert ours.kind == "text" and ours.attributions.shape == ids.shape
    assert torch.equal(ours.tokens, real) and torch.equal(ours.targets, target)
    torch.testing.assert_close(ours.attributions, expected, rtol=RTOL, atol=RTOL * 1e-3)
    assert (ours.attributions[~real] == 0).all() and (ours.attributions[real] != 0).all()
    view = ex.map_view(ours)
    assert view.kind == "text" and (view.tokens == real.numpy()).all()
    assert (view.inputs == ids.numpy()).all()


@contextlib.contextmanager
def _embedding_replaced(layer: torch.nn.Module, value: list[torch.Tensor]):
    """The embedding's output replaced by value[0]: the model as a function of it."""
    handle = layer.register_forward_hook(lambda _m, _i, _o: value[0])
    try:
        yield
    finally:
        handle.remove()


def _at_baseline(model: torch.nn.Module, layer: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """A fresh evaluation of the baseline: every token's embedding replaced by padding's (id 0),
    the text's own attention mask kept (the path of the maps runs with it)."""
    with torch.no_grad():
        base = [layer(torch.zeros_like(ids))]
        with _embedding_replaced(layer, base):
            return model(ids)


def test_integrated_gradients_completeness_on_a_random_bert(bench) -> None:
    indices = list(range(8))
    result = ex.attribute(bench, indices, n_steps=100)
    ids = bench.val_inputs[indices]
    with torch.no_grad():  # a fresh evaluation of the input and of the padding baseline
        outputs, baseline = bench.model(ids), _at_baseline(bench.model, _embedding(bench), ids)
    rows = torch.arange(len(ids))
    change = outputs[rows, result.targets] - baseline[rows, result.targets]
    total = result.attributions.sum(dim=1)
    # Captum's delta is exactly the miss against the output change ...
    torch.testing.assert_close(total - result.delta, change, rtol=RTOL, atol=RTOL * 1e-2)
    # ... and it is small against what the attributions add up to.
    assert (result.delta.abs() <= 0.02 * total.abs()).all(), (result.delta, total)


def test_pruned_text_maps_and_their_comparison(bench) -> None:
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.5)
    dense = ex.attribute(bench, [1, 2], "input_x_gradient")
    pruned = ex.attribute(bench, [1, 2], "input_x_gradient", plan=plan)
    assert not torch.equal(dense.attributions, pruned.attributions)
    table = ex.compare(dense, pruned)
    assert ((table["similarity"] > -1) & (table["similarity"] < 1)).all()
    # The pruned map is the dense map of the pruned model: Captum on the pruned copy.
    model, ids = bench.pruned_model(plan), bench.val_inputs[[1, 2]]
    attr = captum_attr.LayerGradientXActivation(
        model, model.model.get_input_embeddings()
    ).attribute(ids, target=pruned.targets)
    torch.testing.assert_close(
        pruned.attributions, attr.sum(dim=-1) * (ids != 0), rtol=RTOL, atol=RTOL * 1e-3
    )


def test_conductance_through_the_embeddings_equals_captum(bench) -> None:
    indices = [0, 4, 5, 9]
    steps = 12
    table = ex.layer_importance(bench, "conductance", samples=indices, n_steps=steps)
    model, layer = bench.model, _embedding(bench)
    ids = bench.val_inputs[indices]
    with torch.no_grad():
        target = model(ids).argmax(dim=1)
        real = layer(ids)  # the embedding output is the input of Captum's function
        base = layer(torch.zeros_like(ids))  # the padding baseline's embeddings
    slot: list[torch.Tensor] = []

    def function(embedded: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        slot[:] = [embedded]
        return model(token_ids)

    checked = 0
    with _embedding_replaced(layer, slot):
        for name in ("model.bert.encoder.layer.0.intermediate.dense", "model.classifier"):
            module = model.get_submodule(name)
            attr = captum_attr.LayerConductance(function, module).attribute(
                real,
                baselines=base,
                target=target,
                additional_forward_args=(ids,),
                n_steps=steps,
            )
            values = attr.detach().abs().double()
            expected = values.reshape(len(ids), -1, values.shape[-1]).sum(dim=1).mean(dim=0)
            rows = table[table["layer"] == name]
            np.testing.assert_allclose(rows["importance"], expected.numpy(), rtol=1e-4)
            checked += 1
    assert checked == 2


def test_neuron_conductance_through_the_embeddings_equals_captum(bench) -> None:
    indices, steps = [1, 6], 16
    # Channel 5 at the first word (position 1) of the first block: the classifier reads [CLS]
    # of the last block, which attends to it (the last block's other positions reach nothing).
    name = "model.bert.encoder.layer.0.intermediate.dense"
    neuron = (1, 5)
    ours = ex.neuron_conductance(bench, name, neuron, indices, n_steps=steps)
    model, layer = bench.model, _embedding(bench)
    ids = bench.val_inputs[indices]
    with torch.no_grad():
        target = model(ids).argmax(dim=1)
        real, base = layer(ids), layer(torch.zeros_like(ids))
    slot: list[torch.Tensor] = []

    def function(embedded: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        slot[:] = [embedded]
        return model(token_ids)

    with _embedding_replaced(layer, slot):
        attr = captum_attr.NeuronConductance(function, model.get_submodule(name)).attribute(
            real, neuron_selector=neuron, baselines=base, target=target,
            additional_forward_args=(ids,), n_steps=steps,
        )  # fmt: skip
    expected = attr.sum(dim=-1) * (ids != 0)
    assert ours.shape == ids.shape and (ours[ids == 0] == 0).all() and (ours != 0).any()
    torch.testing.assert_close(ours, expected, rtol=RTOL, atol=RTOL * 1e-3)
    with pytest.raises(ex.ExplainError, match="unknown layer"):
        ex.neuron_conductance(bench, "model.nothing", 0, [0])


def test_gradient_x_activation_layer_importance_on_text(bench) -> None:
    table = ex.layer_importance(bench, "gradient_x_activation", samples=[2, 3])
    model, ids = bench.model, bench.val_inputs[[2, 3]]
    target = model(ids).argmax(dim=1)
    name = "model.bert.encoder.layer.1.output.dense"
    attr = captum_attr.LayerGradientXActivation(model, model.get_submodule(name)).attribute(
        ids, target=target
    )
    expected = attr.detach().abs().double().sum(dim=1).mean(dim=0)
    rows = table[table["layer"] == name]
    np.testing.assert_allclose(rows["importance"], expected.numpy(), rtol=1e-4)


def test_attribution_criterion_gives_a_plan_on_a_text_model(bench) -> None:
    name = "model.bert.encoder.layer.0.intermediate.dense"
    plan = wb.PruningPlan({name: 0.5}, method="conductance", granularity="channel")
    masks = bench.masks(plan)
    layer = next(layer for layer in bench.prunable_layers if layer.name == name)
    removed = ~masks[name].reshape(layer.channels, -1).any(dim=1)
    table = ex.layer_importance(
        bench, "conductance", samples=ex.CRITERION_SAMPLES, n_steps=ex.CRITERION_STEPS
    )
    scores = torch.tensor(table[table["layer"] == name]["importance"].to_numpy())
    expected = torch.zeros(layer.channels, dtype=torch.bool)
    expected[torch.argsort(scores, stable=True)[: layer.channels // 2]] = True
    assert removed.tolist() == expected.tolist()
    report = bench.evaluate(plan)
    assert report.size["sparsity"] > 0


def test_embedding_task_explains_the_similarity_to_the_dense_embedding(encoder) -> None:
    assert encoder.task == "embedding"
    with pytest.raises(ex.ExplainError, match="similarity to the dense embedding"):
        ex.attribute(encoder, [0], "input_x_gradient")
    with pytest.raises(ex.ExplainError, match="leave the target unset"):
        ex.attribute(encoder, [0], target=2)
    dense = ex.attribute(encoder, [0, 5, 8], n_steps=100)
    torch.testing.assert_close(dense.scores, torch.ones(3), rtol=0, atol=10 * EPS)
    ids = encoder.val_inputs[[0, 5, 8]]
    with torch.no_grad():
        own, base = encoder.model(ids), _at_baseline(encoder.model, _embedding(encoder), ids)
    change = dense.scores - torch.nn.functional.cosine_similarity(base, own, dim=1)
    total = dense.attributions.sum(dim=1)
    torch.testing.assert_close(total - dense.delta, change, rtol=RTOL, atol=RTOL * 1e-2)
    assert (dense.delta.abs() <= 0.02 * total.abs()).all(), (dense.delta, total)
    # The pruned model is explained against the dense embedding, not its own.
    plan = wb.PruningPlan.uniform(encoder.layer_names, 0.6)
    pruned = ex.attribute(encoder, [0, 5, 8], plan=plan, n_steps=50)
    with torch.no_grad():
        expected = torch.nn.functional.cosine_similarity(
            encoder.pruned_model(plan)(ids), own, dim=1
        )
    torch.testing.assert_close(pruned.scores, expected, rtol=RTOL, atol=RTOL * 1e-3)
    assert (pruned.scores < 1).all()
    # Layer importance: conductance of the similarity; the one-pass gradient one is refused.
    table = ex.layer_importance(encoder, "conductance", samples=4, n_steps=8)
    assert (table["importance"] > 0).any()
    with pytest.raises(ex.ExplainError, match="gradient at the input alone"):
        ex.layer_importance(encoder, "gradient_x_activation", samples=4)
    plan = wb.PruningPlan(
        {"model.encoder.layer.0.intermediate.dense": 0.5}, method="conductance",
        granularity="channel",
    )  # fmt: skip
    assert (~encoder.masks(plan)["model.encoder.layer.0.intermediate.dense"]).any()


# ---- the real pretrained demo ----------------------------------------------------------------


def test_integrated_gradients_completeness_on_minilm_topics() -> None:
    demo = wb.load_demo("minilm-topics")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    result = ex.attribute(bench, [0])  # the default 50 steps
    ids = bench.val_inputs[:1]
    assert token_input(demo.model).pad_token_id == demo.tokenizer.pad_token_id == 0
    with torch.no_grad():
        change = (
            demo.model(ids)
            - _at_baseline(demo.model, demo.model.encoder.model.get_input_embeddings(), ids)
        )[0, result.targets[0]]
    total = result.attributions.sum()
    torch.testing.assert_close(total - result.delta[0], change, rtol=1e-4, atol=1e-4)
    assert abs(float(result.delta[0])) <= 0.01 * abs(float(total)), (result.delta, total)
    tokens = demo.tokenizer.tokens(ids[0])
    kept = [t for t, real in zip(tokens, result.tokens[0].tolist(), strict=True) if real]
    assert kept[0] == "[CLS]" and kept[-1] == "[SEP]" and "[PAD]" not in kept


# ---- the Importance page on the text demo ---------------------------------------------------


def _array(value: object) -> np.ndarray:
    """A figure's array as Plotly's JSON has it: a list, or a base64 typed array."""
    if isinstance(value, dict):
        import base64

        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value, dtype=float)


def test_importance_page_draws_token_heatmaps_of_minilm_topics() -> None:
    import plotly.io
    from streamlit.testing.v1 import AppTest

    demo_name, layer = "minilm-topics", "encoder.model.encoder.layer.0.intermediate.dense"
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=600)
    at.query_params["demo"] = demo_name
    at.query_params["sp"] = f"{layer}:0.5"
    at.run()
    at.switch_page("pages/importance.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    method = at.selectbox(key=f"imp-method:{demo_name}:")
    # Text: the embedding methods only, the one-backward-pass one first.
    assert method.options == ["Input × Gradient", "Integrated Gradients", "Saliency"]
    assert any("input embeddings" in c.value for c in at.caption)
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = plotly.io.from_json(charts[0].proto.spec)
    heatmaps = [t for t in figure.data if t.type == "heatmap"]
    assert len(heatmaps) == 8  # four samples, dense and pruned
    demo = wb.load_demo(demo_name)
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    plan = wb.PruningPlan({layer: 0.5})
    expected = [ex.attribute(bench, [0, 1, 2, 3], "input_x_gradient", plan=p) for p in (None, plan)]
    for i in range(4):
        ids = bench.val_inputs[i]
        real = ids != demo.tokenizer.pad_token_id
        words = demo.tokenizer.tokens(ids[real])
        for block, result in enumerate(expected):
            trace = heatmaps[2 * i + block]
            cells = [str(w) for row in trace.text for w in row]
            assert cells[: len(words)] == words and not any(cells[len(words) :])
            shown = _array(trace.customdata).reshape(-1)[: len(words)]
            np.testing.assert_allclose(
                shown, result.attributions[i][real].numpy(), rtol=1e-5, atol=1e-9
            )
    assert words[0] == "[CLS]"
    table = at.dataframe[0].value
    assert list(table["index"]) == [0, 1, 2, 3]
    # The layer tab through the embeddings, on a few samples.
    at.session_state[f"imp-layer-samples:{demo_name}:"] = 4
    at.session_state[f"imp-layer-method:{demo_name}:"] = "gradient_x_activation"
    at.session_state[f"imp-tab:{demo_name}:"] = "Layer importance"
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    before = len(at.get("plotly_chart"))
    assert before >= 4
    # Which tokens drive a channel: NeuronConductance's token maps, dense and pruned.
    at.toggle(key=f"imp-neuron-on:{demo_name}:").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    charts = at.get("plotly_chart")
    assert len(charts) == before + 1
    layer_shown = at.selectbox(key=f"imp-layer:{demo_name}:").value
    channel = at.selectbox(key=f"imp-neuron-channel:{demo_name}:{layer_shown}").value
    position = at.selectbox(key=f"imp-neuron-position:{demo_name}:").value
    figure = [  # the last token map on the page: the neuron's
        f
        for f in (plotly.io.from_json(c.proto.spec) for c in charts)
        if any(t.type == "heatmap" and t.texttemplate for t in f.data)
    ][-1]
    traces = [t for t in figure.data if t.type == "heatmap"]
    ids = bench.val_inputs[0]
    real = ids != demo.tokenizer.pad_token_id
    expected = ex.neuron_conductance(
        bench, layer_shown, (position, channel), [0], n_steps=ex.CRITERION_STEPS
    )[0][real]
    shown = _array(traces[0].customdata).reshape(-1)[: int(real.sum())]
    np.testing.assert_allclose(shown, expected.numpy(), rtol=1e-4, atol=1e-9)
