"""One workbench, many sessions: evaluations overlap, and each result equals a sequential one.

The engine's lock covers its shared caches only, so forward passes of different plans run at the
same time; results must still equal a fresh workbench's, exactly. Size figures that cost more
than a step (the zlib lengths) are computed off the slider path and exact when read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from tests.helpers import one_thread
from tests.test_engine import case, slider_plans
from workbench.evaluate import size as size_module

THREADS = 4


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _plans(b: wb.Workbench) -> list[wb.PruningPlan]:
    plans = []
    for method, granularity in (("l1", "unstructured"), ("l2", "channel"), ("random", "2:4")):
        plans += slider_plans(list(b.layer_names), method, granularity)
    return plans


def _result(b: wb.Workbench, plan: wb.PruningPlan) -> tuple:
    report = b.evaluate(plan)
    return (
        report.metrics,
        dict(report.size),
        report.layers.to_dict(orient="list"),
        None if report.confusion is None else report.confusion.tolist(),
        b.outputs(plan),
    )


@pytest.mark.parametrize("name", ["digits-cnn", "residual-cnn", "transformer", "untraceable"])
def test_concurrent_evaluations_equal_sequential_ones(name: str) -> None:
    c = case(name)
    shared = wb.Workbench(c.model, (c.x, c.y), batch_size=c.batch_size)
    plans = _plans(shared)
    fresh = wb.Workbench(c.model, (c.x, c.y), batch_size=c.batch_size)
    expected = [_result(fresh, plan) for plan in plans]

    start = threading.Barrier(THREADS)
    results: dict[int, list[tuple[int, tuple]]] = {}
    errors: list[BaseException] = []

    def session(k: int) -> None:
        try:
            # Each session walks the plans in its own order, so they meet at different places.
            order = list(range(len(plans)))
            order = order[k::THREADS] + [i for i in order if i % THREADS != k]
            start.wait()
            results[k] = [(i, _result(shared, plans[i])) for i in order]
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=session, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == THREADS
    for k, answered in results.items():
        for i, got in answered:
            want = expected[i]
            assert got[:4] == want[:4], (k, plans[i])
            assert torch.equal(got[4], want[4]), (k, plans[i])


# ---- a forward pass in flight does not hold the lock ----------------------------------------

_BLOCKED, _RELEASE = threading.Event(), threading.Event()


def _gate(x: torch.Tensor) -> torch.Tensor:
    """Holds the thread named 'held' inside its forward pass until released."""
    if threading.current_thread().name == "held":
        _BLOCKED.set()
        _RELEASE.wait(timeout=60)
    return x


torch.fx.wrap("_gate")  # traced as one call, run at evaluation time


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(_gate(F.relu(self.fc1(x))))


def test_another_session_evaluates_while_a_forward_pass_is_in_flight() -> None:
    torch.manual_seed(0)
    model = Gated().eval()
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    bench = wb.Workbench(model, (x, y), batch_size=16)
    held_plan = wb.PruningPlan(sparsity={"fc1": 0.5})
    other_plan = wb.PruningPlan(sparsity={"fc1": 0.25, "fc2": 0.5})
    answers: dict[str, wb.Report] = {}
    held = threading.Thread(
        target=lambda: answers.update(held=bench.evaluate(held_plan)), name="held"
    )
    other = threading.Thread(target=lambda: answers.update(other=bench.evaluate(other_plan)))
    try:
        held.start()
        assert _BLOCKED.wait(timeout=30)
        other.start()
        other.join(timeout=30)
        assert "other" in answers, "a session waited for another session's forward pass"
        assert "held" not in answers
    finally:
        _RELEASE.set()
        held.join(timeout=30)
        other.join(timeout=30)
    fresh = wb.Workbench(model, (x, y), batch_size=16)
    for key, plan in (("held", held_plan), ("other", other_plan)):
        assert answers[key].metrics == fresh.evaluate(plan).metrics
        assert answers[key].size == fresh.evaluate(plan).size


# ---- compressed sizes off the slider path ---------------------------------------------------


@pytest.mark.parametrize("layer", [0, -1])
def test_evaluate_does_not_wait_for_compressed_sizes(
    layer: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = case("residual-cnn")
    b = wb.Workbench(c.model, (c.x, c.y), batch_size=c.batch_size)
    plan = wb.PruningPlan(sparsity={b.layer_names[layer]: 0.4})
    expected = wb.Workbench(c.model, (c.x, c.y), batch_size=c.batch_size).evaluate(plan).size
    measure, release = size_module.compressed_length, threading.Event()
    on_main: list[int] = []

    def slow(values: torch.Tensor) -> int:
        if threading.current_thread() is threading.main_thread():
            on_main.append(values.numel())
        else:  # a large tensor's worker: held until the test has looked
            release.wait(timeout=30)
        return measure(values)

    monkeypatch.setattr(size_module, "compressed_length", slow)
    monkeypatch.setattr(size_module, "BACKGROUND_ELEMENTS", 64)  # some tensors go to the worker
    try:
        report = b.evaluate(plan)
        assert on_main == []  # evaluate measured nothing
        assert not report.size.ready("compressed_bytes")
        assert report.size["nonzero_params"] == expected["nonzero_params"]
    finally:
        release.set()
    # Read now, it is the exact figure; a report from the cache shares it.
    assert report.size["compressed_bytes"] == expected["compressed_bytes"]
    assert report.size == expected and b.evaluate(plan).size == expected
    assert report.size.ready("compressed_bytes")
