"""Guided lessons: data the Learn page walks through (see model.py for the structure)."""

from workbench.learn.lessons import LESSONS
from workbench.learn.model import (
    Facts,
    Lesson,
    Measured,
    OnModel,
    PlanIs,
    Recovered,
    Run,
    Setup,
    Step,
    fill,
)

__all__ = [
    "LESSONS",
    "Facts",
    "Lesson",
    "Measured",
    "OnModel",
    "PlanIs",
    "Recovered",
    "Run",
    "Setup",
    "Step",
    "fill",
]
