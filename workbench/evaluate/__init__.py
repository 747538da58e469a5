from workbench.evaluate.report import Report
from workbench.evaluate.workbench import Workbench

__all__ = ["Report", "Workbench"]
