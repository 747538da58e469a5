"""PruningPlan: a frozen, hashable value with a JSON form, that refuses bad values clearly."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb

PLAN = wb.PruningPlan(
    sparsity={"b": 0.25, "a": 0.5},
    method="taylor",
    granularity="channel",
    scope="global",
    methods={"b": "l2", "a": "random"},
    seed=3,
)


def test_plan_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PLAN.method = "l2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        PLAN.sparsity["a"] = 0.9  # type: ignore[index]
    with pytest.raises(TypeError):
        PLAN.methods["a"] = "l1"  # type: ignore[index]
    assert PLAN.sparsity["a"] == 0.5


def test_plan_copies_the_caller_dicts() -> None:
    sparsity, methods = {"a": 0.5}, {"a": "l2"}
    plan = wb.PruningPlan(sparsity=sparsity, methods=methods)
    sparsity["a"], sparsity["b"] = 0.9, 0.1
    methods["a"] = "random"
    assert dict(plan.sparsity) == {"a": 0.5}
    assert dict(plan.methods) == {"a": "l2"}


def test_equal_plans_hash_equal_regardless_of_dict_order() -> None:
    # PLAN's values, its dicts written in the other order.
    same = dataclasses.replace(
        PLAN, sparsity={"a": 0.5, "b": 0.25}, methods={"a": "random", "b": "l2"}
    )
    assert same == PLAN and hash(same) == hash(PLAN)
    assert len({PLAN, same}) == 1
    assert {PLAN: 1}[same] == 1
    assert list(same.sparsity) == list(PLAN.sparsity) == ["a", "b"]
    # An int sparsity is the same value as the float.
    assert wb.PruningPlan(sparsity={"a": 1}) == wb.PruningPlan(sparsity={"a": 1.0})
    assert hash(wb.PruningPlan(sparsity={"a": 1})) == hash(wb.PruningPlan(sparsity={"a": 1.0}))


@pytest.mark.parametrize(
    "change",
    [
        {"sparsity": {"a": 0.5, "b": 0.26}},
        {"sparsity": {"a": 0.5}},
        {"method": "l1"},
        {"granularity": "2:4"},
        {"scope": "layer"},
        {"methods": {"b": "l2"}},
        {"seed": 4},
    ],
)
def test_plans_differing_in_any_field_are_different(change: dict) -> None:
    other = PLAN.replace(**change)
    assert other != PLAN
    assert hash(other) != hash(PLAN)  # not guaranteed in general, but true for these values


def test_defaults_and_helpers() -> None:
    plan = wb.PruningPlan()
    assert (plan.method, plan.granularity, plan.scope, plan.seed) == (
        "l1",
        "unstructured",
        "layer",
        0,
    )
    assert plan.is_dense and wb.PruningPlan(sparsity={"a": 0.0}).is_dense
    assert not wb.PruningPlan(sparsity={"a": 0.1}).is_dense
    assert PLAN.method_for("a") == "random" and PLAN.method_for("zzz") == "taylor"
    uniform = wb.PruningPlan.uniform(["x", "y"], 0.3, method="l2")
    assert dict(uniform.sparsity) == {"x": 0.3, "y": 0.3} and uniform.method == "l2"
    moved = PLAN.with_sparsity("c", 0.75)
    assert dict(moved.sparsity) == {"a": 0.5, "b": 0.25, "c": 0.75}
    assert moved.replace(sparsity={"a": 0.5, "b": 0.25}) == PLAN
    assert dict(PLAN.sparsity) == {"a": 0.5, "b": 0.25}  # helpers return new plans


@pytest.mark.parametrize(
    "plan",
    [
        PLAN,
        wb.PruningPlan(),
        wb.PruningPlan(sparsity={"features.0": 1.0, "classifier.3": 0.0}, granularity="4:8"),
        wb.PruningPlan(sparsity={"x": 0.1 + 0.2}),  # not exactly representable in decimal
    ],
)
def test_json_round_trip(plan: wb.PruningPlan) -> None:
    text = plan.to_json()
    assert json.loads(text) == plan.to_dict()
    back = wb.PruningPlan.from_json(text)
    assert back == plan and hash(back) == hash(plan)
    assert back.sparsity == plan.sparsity  # floats survive exactly
    assert wb.PruningPlan.from_json(plan.to_json(indent=None)) == plan
    assert wb.PruningPlan.from_dict(plan.to_dict()) == plan


def test_json_with_missing_fields_uses_defaults() -> None:
    plan = wb.PruningPlan.from_json('{"sparsity": {"fc1": 0.5}}')
    assert plan == wb.PruningPlan(sparsity={"fc1": 0.5})


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"sparsity": {"fc1": 1.5}}, ["fc1", "[0, 1]", "1.5"]),
        ({"sparsity": {"fc1": -0.1}}, ["fc1", "[0, 1]", "-0.1"]),
        ({"sparsity": {"fc1": math.nan}}, ["fc1", "nan"]),
        ({"sparsity": {"fc1": math.inf}}, ["fc1", "inf"]),
        ({"sparsity": {"fc1": "0.5"}}, ["fc1", "number", "'0.5'"]),
        ({"sparsity": {"fc1": None}}, ["fc1", "number", "None"]),
        ({"sparsity": {"fc1": True}}, ["fc1", "number", "True"]),
        ({"sparsity": {"fc1": [0.5]}}, ["fc1", "number"]),
        ({"sparsity": {3: 0.5}}, ["layer names", "3"]),
        ({"method": "magnitude"}, ["unknown method", "'magnitude'", *wb.CRITERIA]),
        ({"methods": {"fc1": "magnitude"}}, ["unknown method", "'magnitude'"]),
        ({"granularity": "block"}, ["unknown granularity", "'block'", *wb.GRANULARITIES]),
        ({"scope": "model"}, ["unknown scope", "'model'", *wb.SCOPES]),
        ({"seed": 1.5}, ["seed", "integer", "1.5"]),
        ({"seed": "1"}, ["seed", "integer"]),
    ],
)
def test_bad_values_raise_plan_error_naming_the_problem(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(wb.PlanError) as info:
        wb.PruningPlan(**kwargs)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_boundaries_are_valid() -> None:
    assert wb.PruningPlan(sparsity={"a": 0.0, "b": 1.0, "c": 0, "d": 1}).sparsity["d"] == 1.0
    assert all(isinstance(v, float) for v in wb.PruningPlan(sparsity={"a": 1}).sparsity.values())


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"sparsity": {"fc1": 0.5}, "sparsty": {}}', ["unknown plan field", "sparsty"]),
        ('{"sparsity": {"fc1": 0.5}, "budget": 1, "zeta": 2}', ["budget", "zeta"]),
        ('{"sparsity": {"fc1": 0.5', ["not valid JSON"]),
        ("", ["not valid JSON"]),
        ("[0.5]", ["JSON object"]),
        ('"l1"', ["JSON object"]),
        ('{"sparsity": [0.5]}', ["sparsity", "object"]),
        ('{"methods": "l2"}', ["methods", "object"]),
        ('{"sparsity": {"fc1": 2}}', ["fc1", "[0, 1]"]),
        ('{"sparsity": {"fc1": NaN}}', ["fc1", "nan"]),
        ('{"sparsity": {"fc1": "half"}}', ["fc1", "number"]),
        ('{"method": "obd"}', ["unknown method", "obd"]),
        ('{"granularity": "1:4"}', ["unknown granularity", "1:4"]),
        ('{"scope": "everything"}', ["unknown scope", "everything"]),
    ],
)
def test_bad_json_raises_plan_error(text: str, words: list[str]) -> None:
    with pytest.raises(wb.PlanError) as info:
        wb.PruningPlan.from_json(text)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(
    "text", ['{"method": ["l1"]}', '{"granularity": {"n": 2}}', '{"methods": {"fc1": ["l2"]}}']
)
def test_unhashable_method_in_json_is_a_plan_error(text: str) -> None:
    with pytest.raises(wb.PlanError):
        wb.PruningPlan.from_json(text)


@pytest.mark.parametrize("value", [np.float32(0.5), np.int64(1)])
def test_numpy_scalars_are_numbers(value: np.generic) -> None:
    plan = wb.PruningPlan(sparsity={"a": value})
    assert plan == wb.PruningPlan(sparsity={"a": float(value)})


def test_plan_pickles_and_deep_copies() -> None:
    assert pickle.loads(pickle.dumps(PLAN)) == PLAN
    assert copy.deepcopy(PLAN) == PLAN


def test_evaluate_with_an_unknown_layer_lists_the_valid_names() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    bench = wb.Workbench(model, (torch.randn(20, 4), torch.randint(0, 3, (20,))))
    for bad in ({"1": 0.5}, {"2": 0.5, "9": 0.1}, {"0.weight": 0.5}):
        with pytest.raises(wb.PlanError) as info:
            bench.evaluate(wb.PruningPlan(sparsity=bad))
        message = str(info.value)
        assert "unknown layer" in message
        assert any(repr(name) in message for name in bad if name not in ("0", "2"))
        assert "0" in message and "2" in message
        assert message.endswith("prunable layers are: 0, 2")
    with pytest.raises(wb.PlanError, match="'fc'.*prunable layers are: 0, 2"):
        bench.evaluate(wb.PruningPlan(sparsity={"0": 0.5}, methods={"fc": "l2"}))
    # A valid plan still works on the same workbench afterwards.
    assert bench.evaluate(wb.PruningPlan(sparsity={"0": 0.5})).layers["nonzero"][0] == 16
