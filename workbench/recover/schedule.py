"""Gradual pruning: the polynomial-decay (AGP) sparsity schedule of Zhu & Gupta (2017).

The semantics of TF-MOT's `PolynomialDecay`: from `begin` to `end` step, every `every` steps,
a layer's sparsity rises from its initial value to its target as

    s(t) = target + (initial - target) · (1 - (t - begin) / (end - begin)) ** power

(power 3 prunes fast while the network is redundant and slowly near the end). Before `begin`
the layer holds its initial sparsity, from `end` on exactly its target. A plan gives each layer
its target; the schedule gives the curve all of them follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.pruning.plan import PruningPlan


class ScheduleError(WorkbenchError):
    """A schedule that cannot run as given (it ends after the training does, ...)."""


@dataclass(frozen=True)
class Schedule:
    """When and how far a gradual run prunes. `steps` and `every` of None are chosen from the
    run's length when it starts (`resolved`): the ramp takes 70 % of the steps, in 10 prunings."""

    start: float = 0.0  # initial sparsity of every layer (capped at the layer's target)
    begin: int = 0  # first pruning step
    steps: int | None = None  # length of the ramp: the target is reached at begin + steps
    every: int | None = None  # steps between two prunings (TF-MOT's frequency)
    power: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.start < 1.0:
            raise ScheduleError(f"the initial sparsity must be in [0, 1), got {self.start}")
        if self.begin < 0:
            raise ScheduleError(f"the first pruning step must be >= 0, got {self.begin}")
        if self.steps is not None and self.steps < 1:
            raise ScheduleError(f"the ramp must last at least one step, got {self.steps}")
        if self.every is not None and self.every < 1:
            raise ScheduleError(f"prunings must be at least one step apart, got {self.every}")
        if self.power <= 0:
            raise ScheduleError(f"the power must be positive, got {self.power}")

    @classmethod
    def agp(
        cls,
        start: float = 0.0,
        steps: int | None = None,
        every: int | None = None,
        begin: int = 0,
        power: float = 3.0,
    ) -> Schedule:
        """Automated gradual pruning (Zhu & Gupta 2017): polynomial decay of power 3."""
        return cls(start=start, begin=begin, steps=steps, every=every, power=power)

    @property
    def end(self) -> int:
        if self.steps is None:
            raise ScheduleError("the schedule's length is set when a run starts (resolved)")
        return self.begin + self.steps

    def resolved(self, total_steps: int) -> Schedule:
        """This schedule with its length and frequency fixed for a run of `total_steps`."""
        steps = self.steps
        if steps is None:
            steps = max(1, math.floor(0.7 * (total_steps - self.begin)))
        every = self.every if self.every is not None else max(1, steps // 10)
        schedule = Schedule(self.start, self.begin, steps, every, self.power)
        if schedule.end >= total_steps:
            raise ScheduleError(
                f"the schedule reaches its target at step {schedule.end}, but the run has "
                f"{total_steps} steps: shorten the ramp or train for more epochs"
            )
        return schedule

    def fraction(self, step: int) -> float:
        """How far along the ramp step `step` is: 0 before `begin`, 1 from `end` on."""
        return (
            1.0
            - (1.0 - min(1.0, max(0.0, (step - self.begin) / (self.end - self.begin))))
            ** self.power
        )

    def prunes_at(self, step: int) -> bool:
        """Whether the masks are recomputed before step `step` (0-based)."""
        if step == self.end:
            return True  # the target itself, whatever the frequency
        return self.begin <= step < self.end and (step - self.begin) % (self.every or 1) == 0

    def sparsity(self, target: float, step: int) -> float:
        """A layer's sparsity at `step` on its way to `target`."""
        initial = min(self.start, target)
        return target + (initial - target) * (1.0 - self.fraction(step))

    def plan_at(self, plan: PruningPlan, step: int) -> PruningPlan:
        """The plan with every layer at its scheduled sparsity (the plan itself from `end`)."""
        if step >= self.end:
            return plan
        return plan.replace(
            sparsity={name: self.sparsity(s, step) for name, s in plan.sparsity.items()}
        )
