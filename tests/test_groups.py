"""Coupled channel groups (granularity "group"): channels shared by several layers go together.

Oracles: the group's ranking computed by hand (the mean of its members' channel ℓ1 norms),
`torch.nn.utils.prune.ln_structured` for layers cut alone, and the physically smaller model
(`wb.compact`, checked against a fresh evaluation) for the removal itself.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import workbench as wb
from workbench.analysis.budget import _Accounting
from workbench.models.synthetic import scale_workload


class Stages(nn.Module):
    """Residual blocks with BatchNorm, a downsampling shortcut with a BatchNorm after the
    addition, a depthwise-separable block and a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.a1 = nn.Conv2d(8, 8, 3, padding=1)
        self.a2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_a2 = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
        self.bn_down = nn.BatchNorm2d(12)
        self.short = nn.Conv2d(8, 12, 1, stride=2)
        self.post = nn.BatchNorm2d(12)
        self.expand = nn.Conv2d(12, 16, 1, bias=False)
        self.bn_e = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn_dw = nn.BatchNorm2d(16)
        self.left = nn.Conv2d(16, 6, 1)
        self.right = nn.Conv2d(16, 6, 1)
        self.mix = nn.Conv2d(12, 10, 3, padding=1)
        self.head = nn.Linear(10 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(x + self.bn_a2(self.a2(torch.relu(self.a1(x)))))
        x = torch.relu(self.post(self.bn_down(self.down(x)) + self.short(x)))
        x = torch.relu(self.bn_e(self.expand(x)))
        x = torch.relu(self.bn_dw(self.dw(x)))
        x = torch.cat([self.left(x), torch.relu(self.right(x))], dim=1)
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.mix(x)), 2)
        return self.head(torch.flatten(x, 1))


class Gated(nn.Module):
    """A residual whose branch passes a sigmoid: a zeroed channel there is 0.5, not gone."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.branch = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x + torch.sigmoid(self.branch(x))
        return self.head(x.mean(dim=(2, 3)))


class Normed(nn.Module):
    """A residual MLP with a LayerNorm after the addition."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.fc = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        return self.out(self.norm(x + self.fc(torch.relu(x))))


def _bench(model: nn.Module, shape=(3, 8, 8), classes: int = 5) -> wb.Workbench:
    torch.manual_seed(0)
    for module in model.modules():  # running statistics that would leak if a channel stayed
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(48, *shape)
    return wb.Workbench(model.eval(), (x, torch.randint(0, classes, (48,))))


def _plan(bench: wb.Workbench, level: float, granularity: str = "group") -> wb.PruningPlan:
    names = [n for n in bench.layer_names if n not in bench.output_layers]
    return wb.PruningPlan(sparsity=dict.fromkeys(names, level), granularity=granularity)


@pytest.fixture(scope="module")
def stages() -> wb.Workbench:
    return _bench(Stages())


def test_the_coupled_layers_form_groups(stages: wb.Workbench) -> None:
    groups = stages.channel_groups
    coupled = {g.names for g in groups.groups if len(g.names) > 1}
    assert coupled == {("stem", "a2"), ("down", "short"), ("expand", "dw")}
    stream = groups.of("down")
    assert {c.name for c in stream.consumers} == {"expand"}
    # the BatchNorm after the addition goes with the stream
    assert {"post.weight", "post.bias", "post.running_mean"} <= {c.name for c in stream.zeroed}
    # after the concatenation, `right`'s channels are mix's input columns 6..11
    right = groups.of("right").consumer("mix")
    assert sorted(right.index.tolist()) == list(range(6, 12))
    assert not groups.alone


def test_a_group_is_ranked_by_the_mean_of_its_members_channel_norms(stages) -> None:
    plan = _plan(stages, 0.5)
    masks = stages.masks(plan)
    weights = dict(stages.model.named_parameters())
    for members in (("stem", "a2"), ("down", "short"), ("expand", "dw")):
        norms = torch.stack(
            [weights[f"{m}.weight"].detach().abs().flatten(1).sum(1).double() for m in members]
        ).mean(0)
        removed = set(torch.argsort(norms)[: round(0.5 * len(norms))].tolist())
        for member in members:
            gone = ~masks[member].flatten(1).any(1)
            assert set(gone.nonzero().flatten().tolist()) == removed


def test_a_layer_of_its_own_is_cut_as_ln_structured(stages: wb.Workbench) -> None:
    plan = wb.PruningPlan(sparsity={"a1": 0.5, "mix": 0.3}, granularity="group")
    masks = stages.masks(plan)
    for name, amount in plan.sparsity.items():
        module = dict(stages.model.named_modules())[name]
        probe = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size)
        with torch.no_grad():
            probe.weight.copy_(module.weight)
        prune.ln_structured(probe, "weight", amount=amount, n=1, dim=0)
        assert torch.equal(masks[name], probe.weight_mask.bool())


@pytest.mark.parametrize("level", [0.25, 0.5, 0.75, 1.0])
def test_the_group_plan_is_the_smaller_model(stages: wb.Workbench, level: float) -> None:
    plan = _plan(stages, level)
    want = stages.outputs(plan)
    small = wb.compact(stages, plan)
    with torch.no_grad():
        got = small.model(stages.val_inputs)
    assert got.shape == want.shape  # the output layer keeps its outputs
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    # the engine's own zeros in a fresh copy give the same outputs
    with torch.no_grad():
        fresh = stages.pruned_model(plan)(stages.val_inputs)
    assert torch.allclose(fresh, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    # every coupled stream narrowed: nothing scattered back to full width
    assert not any(isinstance(m, wb.ChannelScatter) for m in small.model.modules())
    report = stages.evaluate(plan)
    params = dict(stages.model.named_parameters())
    zeros = sum(int((~m).sum()) for n, m in stages.kept(plan).items() if n in params)
    kept = sum(p.numel() for p in params.values()) - zeros
    if level < 1.0:
        assert small.params == kept == report.size["nonzero_params"]
    else:  # no layer has zero outputs: a fully cut one keeps one channel of zeros
        assert small.params > kept


def test_groups_shrink_the_scale_resnet_further_than_layers_alone() -> None:
    model, (x, y) = scale_workload()
    bench = wb.Workbench(model, (x[:64], y[:64]))
    stem = bench.channel_groups.of("stem.0")
    assert stem.names == ("stem.0", "layer1.0.conv2", "layer1.1.conv2")
    alone = wb.compact(bench, _plan(bench, 0.5, "channel"))
    grouped = wb.compact(bench, _plan(bench, 0.5, "group"))
    want = bench.outputs(_plan(bench, 0.5, "group"))
    with torch.no_grad():
        got = grouped.model(bench.val_inputs)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert grouped.params < alone.params
    assert grouped.flops(x[:1]) < alone.flops(x[:1])


def test_a_member_follows_its_leader_and_the_report_says_so(stages: wb.Workbench) -> None:
    plan = wb.PruningPlan(sparsity={"stem": 0.25, "a2": 0.75}, granularity="group")
    report = stages.evaluate(plan)
    assert any("a2" in note and "stem" in note for note in report.notes)
    masks = stages.masks(plan)
    assert int((~masks["a2"].flatten(1).any(1)).sum()) == 2  # 25 % of 8, with stem
    only_member = wb.PruningPlan(sparsity={"a2": 0.5}, granularity="group")
    assert stages.evaluate(only_member).metrics == stages.dense_metrics


@pytest.mark.parametrize(
    ("model", "shape", "why"),
    [
        (Gated(), (3, 6, 6), "them"),  # found out by the removal check
        (Normed(), (8,), "LayerNorm"),
    ],
)
def test_groups_that_are_not_removals_are_cut_alone_with_the_reason(model, shape, why) -> None:
    bench = _bench(model, shape, classes=3)
    groups = bench.channel_groups
    assert groups.alone and all(why in reason for reason in groups.alone.values())
    plan = _plan(bench, 0.5)
    # the layers are cut as a channel plan cuts them, exactly
    assert bench.evaluate(plan).metrics == bench.evaluate(plan.replace(granularity="channel")).metrics


def test_a_graph_program_has_no_groups_and_says_why() -> None:
    demo = wb.load_demo("digits-cnn")
    x = wb.Workbench(demo.model, demo.val).val_inputs[:4]
    batch = {0: torch.export.Dim("batch")}
    program = torch.export.export(demo.model.eval(), (x,), dynamic_shapes=(batch,)).module()
    bench = wb.Workbench(program, demo.val)
    assert not bench.channel_groups.groups
    assert all("compiled program" in why for why in bench.channel_groups.alone.values())
    # the user is told, in the report, why the group plan cut its layers one by one
    notes = bench.evaluate(_plan(bench, 0.5)).notes
    assert any("cut alone" in note and "compiled program" in note for note in notes)


def test_a_group_scan_has_one_row_set_per_group_measured_as_the_smaller_model(stages) -> None:
    scan = wb.sensitivity(stages, levels=(0.25, 0.5), granularity="group")
    # the followers (a2, short, dw) have no rows of their own: their leader's rows are theirs
    assert list(dict.fromkeys(scan["layer"])) == [
        "stem", "a1", "down", "expand", "left", "right", "mix", "head"
    ]
    assert scan.attrs["groups"] == {"stem": ["a2"], "down": ["short"], "expand": ["dw"]}
    for _, row in scan[scan["layer"].isin(["stem", "down", "expand"])].iterrows():
        plan = wb.PruningPlan({row["layer"]: row["level"]}, granularity="group")
        small = wb.compact(stages, plan)
        with torch.no_grad():
            predicted = small.model(stages.val_inputs).argmax(1)
        want = (predicted == stages.targets).double().mean().item()
        assert row["accuracy"] == pytest.approx(want, abs=1e-12)


def test_a_group_budget_allocates_groups_and_reaches_its_target_in_the_real_model(stages) -> None:
    scan = wb.sensitivity(stages, levels=(0.25, 0.5, 0.75), granularity="group")
    proposals = wb.solve_budget(stages, scan, wb.Budget(target=0.4))
    assert proposals
    for proposal in proposals:
        assert not {"a2", "short", "dw"} & set(proposal.plan.sparsity)
        # what the proposal says it reaches is what the engine's report of the plan says
        report = stages.evaluate(proposal.plan)
        assert proposal.footprint["params"] == report.size["nonzero_params"]
        assert proposal.measured == report.metrics[proposal.metric]
        # the allocation counted every member's lost rows: it did not overshoot the target
        if proposal.meets_target:
            assert proposal.footprint["sparsity"] <= 0.4 + 0.05
    # the solver's footprint of one group, composed from layer states, is the plan's real one
    # (the consumers' input columns aside, which a composition of layers alone leaves out)
    accounting = _Accounting(stages)
    states = dict(accounting.dense_state) | accounting.layer_state("down", 0.5, "l1", "group")
    exact = accounting.states_of(wb.PruningPlan({"down": 0.5}, granularity="group"))
    assert {n: states[n] for n in ("down", "short")} == {n: exact[n] for n in ("down", "short")}
    assert states["short"] != accounting.dense_state["short"]


def test_a_group_budget_refuses_a_bound_on_a_follower_naming_its_leader(stages) -> None:
    scan = wb.sensitivity(stages, levels=(0.5,), granularity="group")
    with pytest.raises(wb.BudgetError, match="'a2'.*'stem'"):
        wb.solve_budget(stages, scan, wb.Budget(target=0.3, locked={"a2": 0.0}))


def test_the_model_card_lists_the_groups_cut(stages, tmp_path) -> None:
    plan = wb.PruningPlan({"down": 0.5, "a1": 0.25}, granularity="group")
    card = wb.export(stages, plan, tmp_path / "card.md", format="card").read_text()
    assert "## Coupled groups cut together" in card
    assert "- down with short: 6 of 12 channels removed, with their input columns in expand" in card
    assert "- a1: 2 of 8 channels removed, with their input columns in a2" in card
