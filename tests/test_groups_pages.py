"""Channel groups on the pages (AppTest, the scale ResNet: its residual streams are groups).

The Prune page: a group's other members follow its leader's slider, so theirs are disabled and
say whose slider cuts them. The Sensitivity page: a group scan has one row set per group, and
the budget form and the proposals speak of the scan's layers only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench as wb

APP = str(Path(__file__).resolve().parents[1] / "app.py")
DEMO = "scale-resnet"


def _open(page: str, query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["demo"] = DEMO
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def followers() -> dict[str, str]:
    demo = wb.load_demo(DEMO)
    return wb.Workbench(demo.model, demo.val).channel_groups.followers


def test_a_groups_members_follow_the_leaders_slider(followers) -> None:
    at = _open("pages/prune.py", {"gran": "group", "sp": "stem.0:0.5"})
    sliders = {s.label.split(" ·")[0]: s for s in at.slider if " · " in s.label}
    assert followers  # the demo has coupled streams
    for name, slider in sliders.items():  # the output layer is off limits to channels
        assert slider.disabled == (name in followers or name == "fc"), name
    captions = " ".join(c.value for c in at.caption)
    assert "Its channels go with stem.0's" in captions
    assert "Leads a group of 16 channels: layer1.0.conv2, layer1.1.conv2" in captions
    # under channel granularity every layer has its own slider again
    channel = _open("pages/prune.py", {"gran": "channel", "sp": "stem.0:0.5"})
    assert not any(s.disabled for s in channel.slider if s.label.startswith("layer1.0.conv2"))


def test_a_group_scan_and_its_budget_on_the_page(followers) -> None:
    at = _open("pages/sensitivity.py", {})
    key = f"sensitivity-{{}}:{DEMO}:".format
    at.selectbox(key=key("granularity")).set_value("group").run()
    at.text_input(key=key("levels")).set_value("50").run()
    at.number_input(key=key("subset")).set_value(200).run()
    next(b for b in at.button if b.label == "Run scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "level" in d.value.columns)
    assert not set(table["layer"]) & set(followers)
    assert any("Channel groups: a coupled group is scanned as one" in c.value for c in at.caption)
    constraints = next(d.value for d in at.dataframe if "lock" in d.value.columns)
    assert list(constraints["layer"]) == list(table["layer"].drop_duplicates())
    next(b for b in at.button if b.label == "Propose budgets").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m for m in at.metric if m.label == "Measured accuracy"]
