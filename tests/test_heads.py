"""Attention heads and feed-forward neurons as coupled groups (granularity "group") on
Hugging Face transformers: tiny random BERT and DistilBERT folders, and the real minilm-topics.

Oracles: each head's score computed by hand (the mean over q, k, v of the ℓ1 norm of its
rows), `torch.nn.utils.prune.custom_from_mask` zeroing the removed heads' rows on a deep copy,
and the physically smaller model (`wb.compact`: the heads cut out of q, k, v and out of the
output projection's columns) against the engine's evaluation.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import prune

import workbench as wb
import workbench.io as wio
from tests.hf_models import texts, tiny_folder

transformers = pytest.importorskip("transformers")

HEADS, HEAD_SIZE = 4, 4


def _tiny_bench(tmp_path_factory, family: str) -> wb.Workbench:
    """A workbench on a tiny random model of `family` (two blocks of four heads), as the Load
    page builds it from the folder and 24 labelled texts."""
    folder = tiny_folder(tmp_path_factory.mktemp("hf"), family, layers=2, heads=HEADS)
    loaded = wio.load_model(folder)
    ids = loaded.tokenizer(texts(24))
    data = wio.LoadedData.of(ids, torch.randint(0, 3, (24,)), "t", "text", "text")
    return wio.run_build(loaded, data).bench


def _assert_prune_oracle(bench: wb.Workbench, plan: wb.PruningPlan, masks: dict) -> None:
    """The plan's outputs equal a deep copy pruned by torch.nn.utils.prune.custom_from_mask
    with `masks` ({module: (weight mask, bias mask)}, True = kept)."""
    oracle = copy.deepcopy(bench.model)
    for name, (weight, bias) in masks.items():
        module = oracle.get_submodule(name)
        prune.custom_from_mask(module, "weight", weight.expand_as(module.weight))
        prune.custom_from_mask(module, "bias", bias)
    with torch.no_grad():
        want = oracle(bench.val_inputs)
    got = bench.outputs(plan)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def bench(request, tmp_path_factory) -> wb.Workbench:
    return _tiny_bench(tmp_path_factory, request.param)


def _heads(bench: wb.Workbench) -> list:
    return [g for g in bench.channel_groups.groups if g.unit == "head"]


def test_each_attention_block_is_a_group_of_heads(bench) -> None:
    heads = _heads(bench)
    assert len(heads) == 2  # one per layer
    for group in heads:
        assert group.channels == HEADS and len(group.members) == 3
        q, k, v = group.names
        assert q.endswith(("query", "q_lin")) and v.endswith(("value", "v_lin"))
        (out,) = group.consumers
        assert out.name.endswith(("attention.output.dense", "out_lin"))
        assert out.root.tolist() == [c // HEAD_SIZE for c in range(HEADS * HEAD_SIZE)]
    # the feed-forward block's neurons: the intermediate layer with the output's columns
    ffn = [g for g in bench.channel_groups.groups if g.unit == "channel" and g.consumers]
    assert ffn and all(len(g.consumers) == 1 for g in ffn)


def test_heads_are_ranked_by_hand_and_removed_as_prune_would(bench) -> None:
    group = _heads(bench)[1]
    q = group.leader
    plan = wb.PruningPlan({q: 0.5}, granularity="group")
    model = bench.model
    norms = torch.stack(
        [model.get_submodule(name).weight.detach().abs().sum(1).double() for name in group.names]
    ).mean(0)
    per_head = norms.view(HEADS, HEAD_SIZE).sum(1)
    removed = set(torch.argsort(per_head)[:2].tolist())
    kept = bench.kept(plan)
    for name in group.names:
        gone = ~kept[f"{name}.weight"].any(1)
        assert {int(r) // HEAD_SIZE for r in gone.nonzero().flatten()} == removed
        assert int(gone.sum()) == 2 * HEAD_SIZE
    # oracle: torch.nn.utils.prune zeroing those heads' rows (and biases) on a deep copy
    rows = torch.tensor([r // HEAD_SIZE in removed for r in range(HEADS * HEAD_SIZE)])
    _assert_prune_oracle(bench, plan, {n: ((~rows)[:, None], ~rows) for n in group.names})


@pytest.mark.parametrize("level", [0.25, 0.5, 1.0])
def test_cutting_heads_and_neurons_is_the_smaller_model(bench, level: float) -> None:
    leaders = [g.leader for g in bench.channel_groups.groups]
    plan = wb.PruningPlan(dict.fromkeys(leaders, level), granularity="group")
    small = wb.compact(bench, plan)
    with torch.no_grad():
        got = small.model(bench.val_inputs)
    want = bench.outputs(plan)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    q = _heads(bench)[0].leader
    heads_left = small.model.get_submodule(q).out_features // HEAD_SIZE
    assert heads_left == max(1, HEADS - round(level * HEADS))  # a block keeps one head of zeros
    if level < 1.0:
        zeros = sum(int((~m).sum()) for m in bench.kept(plan).values())
        dense = sum(p.numel() for p in bench.model.parameters())
        assert small.params == dense - zeros
        # the report counts true non-zeros (a random BERT's biases start at zero)
        nonzero = sum(int((p != 0).sum()) for p in small.model.parameters())
        report = bench.evaluate(plan)
        assert nonzero == report.size["nonzero_params"]
        # the groups name their consumers' columns: the sizes are exact, not an upper bound
        assert not any("upper bound" in note for note in report.notes)


def test_the_real_demo_cuts_heads_and_compacts() -> None:
    demo = wb.load_demo("minilm-topics")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    heads = _heads(bench)
    assert len(heads) == 6 and all(g.channels == 12 for g in heads)
    last = heads[-1].leader
    assert last == "encoder.model.encoder.layer.5.attention.self.query"
    ffn = "encoder.model.encoder.layer.5.intermediate.dense"
    plan = wb.PruningPlan({last: 0.5, ffn: 0.5}, granularity="group")
    small = wb.compact(bench, plan)
    with torch.no_grad():
        got = small.model(bench.val_inputs[:64])
    want = bench.outputs(plan)[:64]
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert small.model.get_submodule(last).out_features == 6 * 32
    nonzero = sum(int((p != 0).sum()) for p in small.model.parameters())
    assert nonzero == bench.evaluate(plan).size["nonzero_params"]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> wb.Workbench:
    return _tiny_bench(tmp_path_factory, "gpt2")


def test_gpt2s_packed_projection_is_cut_by_head(gpt2) -> None:
    heads = _heads(gpt2)
    assert [g.names for g in heads] == [
        ("model.transformer.h.0.attn.c_attn",),
        ("model.transformer.h.1.attn.c_attn",),
    ]
    group = heads[1]
    (c_attn,) = group.names
    plan = wb.PruningPlan({c_attn: 0.5}, granularity="group")
    # oracle: the removed heads' q, k and v columns of the stored (in, out) weight zeroed by
    # torch.nn.utils.prune on a deep copy; which heads, from the mask the engine reports
    kept = gpt2.kept(plan)[f"{c_attn}.weight"]  # as stored: (in, 3 * width)
    width = HEADS * HEAD_SIZE
    gone = ~kept.any(0)
    removed = {int(c) % width // HEAD_SIZE for c in gone.nonzero().flatten()}
    assert len(removed) == 2 and int(gone.sum()) == 3 * 2 * HEAD_SIZE
    _assert_prune_oracle(gpt2, plan, {c_attn: ((~gone)[None, :], ~gone)})


@pytest.mark.parametrize("level", [0.25, 0.5, 1.0])
def test_gpt2_without_heads_and_neurons_is_the_smaller_model(gpt2, level: float) -> None:
    # Torch-Pruning cannot trace GPT-2: its feed-forward blocks are found by their layout
    ffn = [g for g in gpt2.channel_groups.groups if g.unit == "channel"]
    assert [(g.names, [c.name for c in g.consumers]) for g in ffn] == [
        ((f"model.transformer.h.{i}.mlp.c_fc",), [f"model.transformer.h.{i}.mlp.c_proj"])
        for i in range(2)
    ]
    leaders = [g.leader for g in _heads(gpt2)]
    plan = wb.PruningPlan(
        dict.fromkeys(leaders + [g.leader for g in ffn], level), granularity="group"
    )
    small = wb.compact(gpt2, plan)
    with torch.no_grad():
        got = small.model(gpt2.val_inputs)
    want = gpt2.outputs(plan)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    left = max(1, HEADS - round(level * HEADS))
    attention = small.model.get_submodule(leaders[0].rsplit(".", 1)[0])
    assert attention.c_attn.nf == 3 * left * HEAD_SIZE and attention.split_size == left * HEAD_SIZE
    nonzero = sum(int((p != 0).sum()) for p in small.model.parameters())
    assert nonzero == gpt2.evaluate(plan).size["nonzero_params"]
