"""The engine is incremental on Hugging Face transformers (issue 15 #2): torch.fx cannot trace
them, so the engine exports them with torch.export (a dynamic batch dimension) and cuts that
graph. Tiny random BERT / DistilBERT / GPT-2 folders saved with save_pretrained, and the real
minilm-topics demo.

Oracles: `torch.nn.utils.prune.l1_unstructured` on a deep copy of the loaded model, run in the
same batches; the layer operations the engine runs, counted node by node, against the layers
after the changed layer's cut.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import workbench as wb
import workbench.io as wio
from tests.hf_models import texts, tiny_folder
from workbench.evaluate.graph import trace, traced
from workbench.evaluate.metrics import compute_metrics
from workbench.pruning.layers import weight_use

transformers = pytest.importorskip("transformers")
Conv1D = transformers.pytorch_utils.Conv1D

SAMPLES, BATCH = 40, 16  # three batches, the last one smaller: the batch dimension is dynamic


@pytest.fixture(scope="module", params=["bert", "distilbert", "bert-embedding", "gpt2"])
def built(request, tmp_path_factory) -> tuple[nn.Module, torch.Tensor, wb.Workbench]:
    loaded = wio.load_model(tiny_folder(tmp_path_factory.mktemp("hf"), request.param))
    ids = loaded.tokenizer(texts(SAMPLES))
    labels = torch.randint(0, 3, (SAMPLES,), generator=torch.Generator().manual_seed(1))
    targets = labels if loaded.model.output == "logits" else None
    return loaded.model, ids, wb.Workbench(loaded.model, (ids, targets), batch_size=BATCH)


def _oracle(model: nn.Module, plan: wb.PruningPlan, ids: torch.Tensor, batch: int) -> torch.Tensor:
    """A deep copy pruned by torch.nn.utils.prune, run whole in the engine's batches."""
    pruned = copy.deepcopy(model)
    for name, amount in plan.sparsity.items():
        prune.l1_unstructured(pruned.get_submodule(name), "weight", amount=amount)
    with torch.no_grad():
        return torch.cat([pruned(b) for b in ids.split(batch)])


def _layers_run(bench: wb.Workbench, plan: wb.PruningPlan) -> list[str]:
    """Evaluate the plan and list every prunable layer operation the engine ran, in order
    (reaching into the engine's runner on purpose)."""
    runner, ran = bench._runner, []
    names = {layer.weight_name: layer.name for layer in bench.prunable_layers}
    original = runner._execute

    def counting(node, env, weights, hook):
        use = weight_use(node)
        if use is not None and use.target in names:
            ran.append(names[use.target])
        return original(node, env, weights, hook)

    runner._execute = counting
    try:
        bench.evaluate(plan)
    finally:
        del runner._execute
    return ran


def _after(bench: wb.Workbench, layer: str) -> list[str]:
    """The layers at or after the layer's cut, in execution order."""
    cuts = bench._runner.cuts
    return [name for name in bench.layer_names if cuts[name] >= cuts[layer]]


def test_transformers_get_a_graph_with_their_own_names(built) -> None:
    model, _, bench = built
    with pytest.raises(Exception):  # noqa: B017 - torch.fx cannot trace a transformer
        torch.fx.symbolic_trace(model)
    assert bench.incremental_note is None
    # Every prunable layer is a module of the loaded model under its Hugging Face name, and
    # the weight the engine masks is that module's own parameter (the private copy's).
    for name in bench.layer_names:
        module = bench.model.get_submodule(name)
        assert bench.dense_weight(name).data_ptr() == module.weight.data_ptr(), name
        torch.testing.assert_close(module.weight, model.get_submodule(name).weight, rtol=0, atol=0)
    linears = {
        n for n, m in bench.model.named_modules() if isinstance(m, (nn.Linear, Conv1D))
    }  # GPT-2's attention and MLP layers are transformers' Conv1D
    assert len(linears) > 6 and linears - {"model.bert.pooler.dense"} <= set(bench.layer_names)


def test_engine_equals_torch_prune_on_each_step_of_a_drag(built) -> None:
    model, ids, bench = built
    layers = bench.layer_names
    first, middle, last = layers[0], layers[len(layers) // 2], layers[-1]
    plan = wb.PruningPlan(sparsity={first: 0.3})
    for layer in (middle, last, middle):
        for sparsity in (0.2, 0.5, 0.8):
            plan = plan.with_sparsity(layer, sparsity)
            expected = _oracle(model, plan, ids, BATCH)
            torch.testing.assert_close(bench.outputs(plan), expected)
            report = bench.evaluate(plan)
            labels = bench.targets
            oracle = compute_metrics(bench.task, expected.double(), labels, bench.dense_outputs)
            assert report.metrics.keys() == oracle.keys()
            for key, value in oracle.items():
                assert report.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_a_drag_resumes_at_the_cut(built) -> None:
    _, _, bench = built
    layers = bench.layer_names
    batches = -(-SAMPLES // BATCH)
    # A step of the first layer runs every layer once a batch: the count sees them all.
    assert _layers_run(bench, wb.PruningPlan(sparsity={layers[0]: 0.4})) == layers * batches
    for layer in (layers[len(layers) // 2], layers[-2]):
        _layers_run(bench, wb.PruningPlan(sparsity={layer: 0.1}))  # the touch: caches the cut
        ran = _layers_run(bench, wb.PruningPlan(sparsity={layer: 0.3}))
        assert ran == _after(bench, layer) * batches
        assert len(_after(bench, layer)) < len(layers)


def test_a_model_no_graph_follows_runs_whole_and_says_why() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.head = nn.Linear(6, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.fc(x))
            return self.head(h if x.sum() > 0 else -h)  # a branch on data: neither can follow

    torch.manual_seed(0)
    x = torch.randn(20, 6)
    bench = wb.Workbench(DataDependent().eval(), (x, torch.randint(0, 2, (20,))), batch_size=8)
    note = bench.incremental_note
    assert note is not None and note.startswith("not incremental")
    assert "torch.fx" in note and "torch.export" in note and "\n" not in note
    assert _layers_run(bench, wb.PruningPlan(sparsity={"head": 0.5})) == []  # runs as a module


def test_an_export_that_differs_from_the_model_is_refused() -> None:
    class Exporting(nn.Module):
        """torch.fx cannot take int() of a traced size; torch.export can, but this model
        computes something else while it is exported: its graph is not the model."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.fc(x[:, : int(x.shape[1])])
            return out + 1 if torch.compiler.is_exporting() else out

    x = torch.randn(10, 4)
    assert trace(Exporting()) is None and traced(Exporting()).reason.startswith("torch.fx")
    found = traced(Exporting().eval(), x)
    assert found.graph_module is None and "differ" in found.reason

    class Sized(Exporting):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x[:, : int(x.shape[1])])

    model = Sized().eval()
    exported = traced(model, x).graph_module
    assert exported is not None
    with torch.no_grad():  # any batch size, the model's own parameter
        assert torch.equal(exported(x[:3]), model(x[:3]))
    assert dict(exported.named_parameters())["fc.weight"] is model.fc.weight


# ---- the real pretrained demo ----------------------------------------------------------------


@pytest.fixture(scope="module")
def topics() -> wb.Demo:
    return wb.load_demo("minilm-topics")


def test_minilm_topics_drag_of_the_last_encoder_layer(topics) -> None:
    bench = wb.Workbench(topics.model, topics.val, batch_size=128)
    assert bench.incremental_note is None
    x, y = topics.val.tensors
    layer = "encoder.model.encoder.layer.5.attention.self.query"
    after = _after(bench, layer)
    assert after[0] == layer and after[-1] == "head"
    assert all(".layer.5." in name for name in after[:-1])  # the last block and the head only
    _layers_run(bench, wb.PruningPlan(sparsity={"head": 0.2, layer: 0.1}))
    plan = wb.PruningPlan(sparsity={"head": 0.2, layer: 0.4})
    assert _layers_run(bench, plan) == after * 2  # two batches of 128 and 110
    expected = _oracle(topics.model, plan, x, 128)
    torch.testing.assert_close(bench.outputs(plan), expected)
    report = bench.evaluate(plan)
    oracle = compute_metrics("classification", expected, y, bench.dense_outputs)
    assert report.metrics["accuracy"] == oracle["accuracy"]
    assert report.metrics["loss"] == pytest.approx(oracle["loss"], rel=1e-5)
