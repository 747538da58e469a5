"""The demo model zoo: small trained models with the exact data they were trained on."""

from workbench.models.demos import Demo, DemoMeta, demo_info, list_demos, load_demo
from workbench.models.info import ModelInfo

__all__ = ["Demo", "DemoMeta", "ModelInfo", "demo_info", "list_demos", "load_demo"]
