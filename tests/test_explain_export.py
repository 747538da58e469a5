"""Captum on a loaded torch.export program (.pt2), exported with a fixed or a dynamic batch.

The oracle is the same model as a regular nn.Module: maps, layer importance and the attribution
criteria must agree with it (within float32 rounding: batches are composed differently).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import workbench as wb
import workbench.explain as ex

N = 12  # validation samples: a few batches of 2, quick on a CPU


@pytest.fixture(scope="module")
def reference() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    x, y = demo.val.tensors
    return wb.Workbench(demo.model, (x[:N], y[:N]))


def exported(tmp_path: Path, dynamic: bool) -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    x, y = demo.val.tensors
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    path = tmp_path / ("dynamic.pt2" if dynamic else "fixed.pt2")
    torch.export.save(torch.export.export(demo.model, (x[:2],), dynamic_shapes=shapes), path)
    module = torch.export.load(path).module()
    # A fixed-batch program runs whole batches of its size, as the app builds it.
    return wb.Workbench(module, (x[:N], y[:N]), batch_size=512 if dynamic else 2)


@pytest.fixture(scope="module", params=[False, True], ids=["fixed-batch", "dynamic-batch"])
def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return exported(tmp_path_factory.mktemp("pt2"), request.param)


def close(actual: torch.Tensor, expected: torch.Tensor, scale: float | None = None) -> None:
    """Equal up to float32 rounding, relative to `scale` (by default the tensor's own)."""
    scale = scale or float(expected.abs().max()) or 1.0
    atol = 64 * torch.finfo(torch.float32).eps * scale
    torch.testing.assert_close(actual.double(), expected.double(), rtol=1e-4, atol=atol)


def test_fixed_batch_is_read_from_the_program(program: wb.Workbench) -> None:
    forward = ex._common.Forward(program.model)
    assert forward.batch == (2 if program.batch_size == 2 else None)
    # Any number of inputs runs, padded to whole batches, and gives the unpadded outputs.
    x = program.val_inputs[:5]
    with torch.no_grad():
        close(forward(x), program.dense_outputs[:5])


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "occlusion"])
def test_input_attributions_equal_the_module(program, reference, method: str) -> None:
    plan = wb.PruningPlan({"features.2": 0.5})
    options = {"n_steps": 8} if method == "integrated_gradients" else {}
    for state in (None, plan):
        ours = ex.attribute(program, [0, 3, 5], method, state, **options)
        theirs = ex.attribute(reference, [0, 3, 5], method, state, **options)
        close(ours.attributions, theirs.attributions)
        if theirs.delta is not None:  # a difference of sums: rounding scales with the sums
            close(ours.delta, theirs.delta, float(theirs.attributions.abs().sum()))


@pytest.mark.parametrize("method", list(ex.LAYER_METHODS))
def test_layer_importance_equals_the_module(program, reference, method: str) -> None:
    ours = ex.layer_importance(program, method, samples=None, n_steps=8)
    theirs = ex.layer_importance(reference, method, samples=None, n_steps=8)
    assert list(ours["layer"]) == list(theirs["layer"])
    assert not ours.attrs["skipped"]  # every layer is measured, none silently zero
    np.testing.assert_allclose(ours["importance"], theirs["importance"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["conductance", "gradient_x_activation"])
def test_attribution_criteria_score_an_exported_program(program, reference, method) -> None:
    for layer in reference.prunable_layers:
        close(
            program.statistics.channel_attribution(layer, method),
            reference.statistics.channel_attribution(layer, method),
        )
    plan = wb.PruningPlan({"features.2": 0.5}, method=method, granularity="channel")
    assert program.evaluate(plan).layers.set_index("name").loc["features.2", "sparsity"] == 0.5


def test_weight_importance_and_overlap_run_on_the_program(program, reference) -> None:
    ours = ex.weight_importance(program, "classifier.1", samples=None)
    theirs = ex.weight_importance(reference, "classifier.1", samples=None)
    close(ours, theirs)  # the mean loss's gradient: batches of 2 or 512 alike
    overlap = ex.criterion_overlap(program, "features.2", 0.5, "gradient_x_activation", "l1")
    assert 0 <= overlap.jaccard <= 1


def test_taps_leave_the_program_unchanged_outside_a_recording(program) -> None:
    copy = ex._common.model_copy(program, None)
    ex.layer_importance(program, "activation", samples=4)  # taps the copy's graph
    assert any(n.target is ex.importance._tap for n in copy.model.graph.nodes)
    with torch.no_grad():
        close(copy.forward(program.val_inputs), program.dense_outputs)
