"""transformers' Conv1D (GPT-2's layers, weight stored (in, out)) as prunable layers (issue 15 #5):
found by their Hugging Face names, a channel a column of the stored weight, masks equal to
torch.nn.utils.prune on a deep copy (ln_structured with dim=1 for channels), sizes and FLOPs
counted, and the pruned model equal to the oracle's evaluation. A tiny random GPT-2 built from
GPT2Config and saved with save_pretrained."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import prune

import workbench as wb
import workbench.io as wio
from workbench.evaluate.metrics import compute_metrics

transformers = pytest.importorskip("transformers")

VOCAB = 40
FC = "model.transformer.h.0.mlp.c_fc"  # Conv1D(nf=64, nx=16): weight (16, 64)
PROJ = "model.transformer.h.1.attn.c_proj"  # Conv1D(nf=16, nx=16)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> tuple[wb.Workbench, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=2, n_head=2, num_labels=3,
        eos_token_id=VOCAB - 1, bos_token_id=VOCAB - 1, pad_token_id=VOCAB - 1,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.GPT2ForSequenceClassification(config).eval().save_pretrained(folder)
    loaded = wio.load_model(folder)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB - 1, (48, 10), generator=generator)  # no padding
    labels = torch.randint(0, 3, (48,), generator=generator)
    return wb.Workbench(loaded.model, (ids, labels)), loaded.model


def test_conv1d_layers_are_found_by_their_names(gpt2) -> None:
    bench, model = gpt2
    conv1d = transformers.pytorch_utils.Conv1D
    expected = [n for n, m in model.named_modules() if isinstance(m, conv1d)]
    assert len(expected) == 8 and set(expected) <= set(bench.layer_names)
    layer = next(layer for layer in bench.prunable_layers if layer.name == FC)
    stored = model.get_submodule(FC).weight
    assert tuple(stored.shape) == (16, 64)
    assert layer.transposed and layer.channel_axis == 1 and layer.kind == "Linear"
    assert layer.shape == (64, 16) and layer.channels == 64 and layer.params == stored.numel()
    assert torch.equal(bench.dense_weight(FC), stored.detach())
    assert "model.score" in bench.layer_names  # the head, an nn.Linear, stays as it was
    score = next(layer for layer in bench.prunable_layers if layer.name == "model.score")
    assert not score.transposed and score.channel_axis == 0


def _oracle_outputs(model: torch.nn.Module, ids: torch.Tensor, prune_layers) -> torch.Tensor:
    oracle = copy.deepcopy(model)
    for name, function in prune_layers.items():
        function(oracle.get_submodule(name))
    with torch.no_grad():
        return oracle(ids), oracle


def test_unstructured_masks_equal_torch_prune(gpt2) -> None:
    bench, model = gpt2
    plan = wb.PruningPlan({FC: 0.6, PROJ: 0.3}, method="l1")
    outputs, oracle = _oracle_outputs(
        model,
        bench.val_inputs,
        {
            FC: lambda m: prune.l1_unstructured(m, "weight", amount=0.6),
            PROJ: lambda m: prune.l1_unstructured(m, "weight", amount=0.3),
        },
    )
    masks = bench.masks(plan)
    for name in (FC, PROJ):
        assert torch.equal(masks[name], oracle.get_submodule(name).weight_mask.bool())
    report = bench.evaluate(plan)
    expected = compute_metrics("classification", outputs, bench.targets, bench.dense_outputs)
    assert report.metrics["accuracy"] == expected["accuracy"]
    assert report.metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    torch.testing.assert_close(bench.outputs(plan), outputs, rtol=1e-5, atol=1e-6)
    zeros = int((~masks[FC]).sum() + (~masks[PROJ]).sum())
    assert report.size["nonzero_params"] == report.dense_size["nonzero_params"] - zeros


def test_channels_are_columns_as_ln_structured_dim_1(gpt2) -> None:
    bench, model = gpt2
    plan = wb.PruningPlan({FC: 0.5}, method="l2", granularity="channel")
    outputs, oracle = _oracle_outputs(
        model,
        bench.val_inputs,
        {FC: lambda m: prune.ln_structured(m, "weight", amount=0.5, n=2, dim=1)},
    )
    mask = bench.masks(plan)[FC]
    expected = oracle.get_submodule(FC).weight_mask.bool()
    assert torch.equal(mask, expected)
    removed = ~mask.any(dim=0)  # whole columns: output features
    assert int(removed.sum()) == 32 and (mask.all(dim=0) | removed).all()
    # The pruned model: the oracle's zeros written in (a removed feature's bias zeroed too, so
    # the output of the layer there is zero, as the next layer reads it).
    pruned = bench.pruned_model(plan)
    weight = pruned.get_submodule(FC).weight
    assert torch.equal(weight == 0, ~mask | (model.get_submodule(FC).weight == 0))
    report = bench.evaluate(plan)
    with torch.no_grad():
        fresh = pruned(bench.val_inputs)
    expected = compute_metrics("classification", fresh, bench.targets, bench.dense_outputs)
    assert report.metrics["accuracy"] == expected["accuracy"]
    assert report.metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_n_m_groups_run_along_the_input_axis(gpt2) -> None:
    bench, model = gpt2
    plan = wb.PruningPlan({FC: 0.5}, method="l1", granularity="2:4")
    mask = bench.masks(plan)[FC]  # stored (in, out): a group of 4 runs down a column
    stored = model.get_submodule(FC).weight.detach().abs()
    groups = mask.t().reshape(64, 4, 4)
    assert (groups.sum(dim=2) == 2).all()
    kept = stored.t().reshape(64, 4, 4).topk(2, dim=2).indices.sort(dim=2).values
    found = groups.nonzero()[:, 2].reshape(64, 4, 2)
    assert torch.equal(found, kept)


def test_flops_count_conv1d_layers(gpt2) -> None:
    bench, _ = gpt2
    report = bench.evaluate(wb.PruningPlan())
    table = bench.layers.set_index("name")
    # 2·out·in per token, 10 tokens a sample: as FlopCounterMode counts addmm.
    assert int(table.loc[FC, "flops"]) == 2 * 64 * 16 * 10
    assert report.size["flops_dense"] > 0


def test_channel_cut_is_alone_and_compaction_refuses_with_a_reason(gpt2) -> None:
    bench, _ = gpt2
    plan = wb.PruningPlan({FC: 0.5}, method="l2", granularity="channel")
    kept = bench.kept(plan)
    removed = ~bench.masks(plan)[FC].any(dim=0)
    # The removed output features: their weight columns and their bias entries.
    assert torch.equal(~kept[f"{FC}.weight"].any(dim=0), removed)
    assert torch.equal(~kept[f"{FC}.bias"], removed)
    sizes = bench.tensor_sizes(plan)
    assert sizes[f"{FC}.weight"].nonzero == int(kept[f"{FC}.weight"].sum())
    with pytest.raises(wb.WorkbenchError, match="compaction is not available"):
        wb.compact(bench, plan)


def test_taylor_scores_are_laid_out_as_the_stored_weight(gpt2) -> None:
    bench, model = gpt2
    oracle = copy.deepcopy(model)
    weight = oracle.get_submodule(FC).weight
    loss = torch.nn.functional.cross_entropy(oracle(bench.val_inputs), bench.targets)
    (grad,) = torch.autograd.grad(loss, [weight])
    expected = (weight.detach().double() * grad.double()).abs()  # (in, out), as stored
    scores = bench.unit_scores(FC, "taylor", "unstructured")  # one per element, in order
    # float32 gradients summed per batch (TaylorSum) or at once: a few ulps of the largest.
    atol = 100 * torch.finfo(torch.float32).eps * float(expected.max())
    torch.testing.assert_close(scores, expected.reshape(-1), rtol=1e-4, atol=atol)
    # A channel is a column: its score sums the column (the criterion's norm is 1 for taylor
    # or not, the ranking of channels follows the columns).
    channel = bench.unit_scores(FC, "taylor", "channel")
    assert channel.shape == (64,)
    plan = wb.PruningPlan({FC: 0.25}, method="taylor", granularity="channel")
    removed = ~bench.masks(plan)[FC].any(dim=0)
    lowest = torch.argsort(channel, stable=True)[:16]
    assert sorted(removed.nonzero()[:, 0].tolist()) == sorted(lowest.tolist())


def test_importance_tables_mark_removed_columns(gpt2) -> None:
    import workbench.explain as ex

    bench, _ = gpt2
    plan = wb.PruningPlan({FC: 0.5}, method="l2", granularity="channel")
    removed = ~bench.masks(plan)[FC].any(dim=0)
    kept = ex.channel_kept(bench, plan)
    rows = kept[kept["layer"] == FC]
    assert len(rows) == 64 and (rows["kept"] == 0).tolist() == removed.tolist()
    assert ex.removed_units(bench, plan, FC).tolist() == removed.nonzero()[:, 0].tolist()
    # Layer importance hooks the Conv1D modules: channels on the last axis of their output.
    table = ex.layer_importance(bench, "activation", samples=8)
    assert (table["layer"] == FC).sum() == 64
