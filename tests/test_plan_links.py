"""Plans that survive errors and links, and UI details that say what the numbers mean (issue 11,
defects 7 and 8): AppTest on the real app, and the pure helpers directly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest
from test_app import APP, layer_slider, metric, open_page

import workbench as wb
from ui import state
from workbench.inspect import weight_map

ROOT = Path(__file__).resolve().parents[1]


def landing(query: dict[str, str], demo: str = "digits-cnn") -> AppTest:
    """The first page a link opens (notices about the link are shown there, once)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"demo": demo, **query})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(text: str) -> str:
    """What the user reads of plain-text Markdown (ui.text.plain): escapes removed."""
    return text.replace("\\", "").replace("\u200b", "")


def warnings_of(at) -> list[str]:
    return [shown(w.value) for w in at.warning]


def card(at, label: str):
    return next(m for m in at.metric if m.label == label)


def colour(m) -> str:
    return MetricProto.MetricColor.Name(m.proto.color)


# ---- defect 7: plans get lost or break pages ---------------------------------------------------


def test_read_query_keeps_the_valid_parts_and_names_the_rest() -> None:
    link = state.read_query(
        {"sp": "fc1:1.5,features.2:nan,garbage,features.0:0.2,x:abc", "method": "nope",
         "gran": "channel", "lock": "features.0,classifier.1"}
    )  # fmt: skip
    assert link.plan == wb.PruningPlan({"features.0": 0.2}, granularity="channel")
    assert link.locks == {"features.0", "classifier.1"}
    text = " | ".join(link.dropped)
    for part in ("'fc1:1.5'", "'features.2:nan'", "'garbage'", "'x:abc'", "criterion 'nope'"):
        assert part in text
    assert len(link.dropped) == 5
    # Round trip: what the URL gets back reads as the same plan and locks.
    query = state.plan_to_query(link.plan, link.locks)
    assert state.read_query(query).plan == link.plan and not state.read_query(query).dropped
    assert query["lock"] == "classifier.1,features.0"


def test_bad_link_values_are_named_and_the_valid_ones_kept() -> None:
    at = landing({"sp": "fc1:1.5,features.2:nan,garbage,features.0:0.2"})
    text = " ".join(warnings_of(at))
    assert "fc1" in text and "features.2" in text and "garbage" in text
    at.switch_page("pages/prune.py").run()
    assert layer_slider(at, "features.0").value == 20
    assert layer_slider(at, "features.2").value == 0
    assert at.query_params["sp"] == "features.0:0.2"  # the URL now says what is applied


@pytest.mark.parametrize("page", ["pages/model.py", "pages/weights.py", "pages/importance.py"])
def test_a_plan_naming_unknown_layers_keeps_the_pages_working(page: str) -> None:
    at = landing({"sp": "nope:0.5,features.2:0.3"})
    assert any("nope" in w and "does not have" in w for w in warnings_of(at))
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["sp"] == "features.2:0.3"


def test_a_link_to_a_missing_model_says_so_and_drops_its_plan() -> None:
    at = landing({"sp": "fc9:0.5"}, demo="nope")
    assert any("'nope' is not available" in w for w in warnings_of(at))
    at.switch_page("pages/weights.py").run()
    assert not at.exception
    assert at.query_params["demo"] == "digits-cnn" and "sp" not in at.query_params


def test_an_evaluation_error_keeps_the_sliders_and_the_url(monkeypatch) -> None:
    evaluate = wb.Workbench.evaluate

    def failing(self, plan, cancel=None):
        if plan.method == "random":
            raise wb.PlanError("the random criterion cannot score this layer")
        return evaluate(self, plan, cancel)

    monkeypatch.setattr(wb.Workbench, "evaluate", failing)
    at = open_page("pages/prune.py", query={"sp": "features.2:0.6"})
    at.selectbox(key="method:digits-cnn:").set_value("random").run()
    assert any("cannot be evaluated" in e.value for e in at.error)
    assert layer_slider(at, "features.2").value == 60  # still the plan, not 0 %
    assert not at.metric  # no stale numbers of the previous plan
    layer_slider(at, "features.0").set_value(20).run()
    assert at.query_params["sp"] == "features.0:0.2,features.2:0.6"
    assert at.query_params["method"] == "random"
    assert layer_slider(at, "features.2").value == 60


def test_locks_live_in_the_url() -> None:
    at = open_page("pages/prune.py", query={"lock": "features.0"})
    locks = at.multiselect(key="locks:digits-cnn:")
    assert locks.value == ["features.0"]
    locks.select("classifier.1").run()
    assert at.query_params["lock"] == "classifier.1,features.0"
    at.multiselect(key="locks:digits-cnn:").unselect("features.0").run()
    assert at.query_params["lock"] == "classifier.1"


# ---- defect 8: misleading UI details -----------------------------------------------------------


def test_a_2_4_plan_is_an_on_off_pattern_without_the_single_weights_banner() -> None:
    at = open_page("pages/prune.py", query={"sp": "features.2:0.5", "gran": "2:4"})
    assert not any("zeroes single weights" in i.value for i in at.info)
    assert any("2:4 pattern is not faster" in i.value for i in at.info)
    assert not [s for s in at.slider if s.label.startswith("classifier.1 ·")]  # no 0–100 %
    pattern = at.toggle(key="pattern:digits-cnn:features.2")
    assert pattern.value
    at.toggle(key="pattern:digits-cnn:classifier.1").set_value(True).run()
    assert at.query_params["sp"] == "classifier.1:0.5,features.2:0.5"


def test_cards_say_what_the_flops_mean_show_sparsity_and_leave_zero_deltas_grey() -> None:
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    at = open_page("pages/prune.py", query={"sp": "classifier.1:0.9"})
    report = bench.evaluate(wb.PruningPlan({"classifier.1": 0.9}))
    assert metric(at, "Sparsity") == f"{report.size['sparsity']:.1%}"
    flops = card(at, "FLOPs if zeros were skipped")
    assert colour(flops) == "GRAY"  # a hypothetical saving is not good news
    at = open_page("pages/prune.py", query={"sp": "features.2:0.5", "gran": "channel"})
    assert colour(card(at, "FLOPs / sample")) == "GREEN"
    dense = open_page("pages/prune.py")
    for m in dense.metric:  # nothing changed: no card is coloured (int8 compares with fp32)
        assert colour(m) == "GRAY" or m.label == "int8 + bitmask", m.label


def test_global_scope_shows_each_layers_real_cut() -> None:
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.5, scope="global")
    at = open_page(
        "pages/prune.py", query={"sp": state.plan_to_query(plan)["sp"], "scope": "global"}
    )
    real = bench.evaluate(plan).layers.set_index("name")["sparsity"]
    captions = [c.value for c in at.caption]
    for name in bench.layer_names:
        assert f"Real cut: {real[name]:.1%}" in captions
    assert len(set(real.round(3))) > 1  # the real cuts differ from the 50 % target


def test_the_output_layer_cannot_be_channel_pruned_and_the_page_says_why() -> None:
    at = open_page("pages/prune.py", query={"gran": "channel"})
    assert layer_slider(at, "classifier.3").disabled
    assert not layer_slider(at, "classifier.1").disabled
    assert any("classifier.3" in shown(c.value) and "output" in c.value for c in at.caption)


def test_weight_map_axes_count_units_not_cells() -> None:
    conv = torch.randn(64, 32, 3, 3)  # 192 × 96 grid: pooled 2×1 on the rows
    picture = weight_map(conv, max_rows=96)
    assert picture.pooled == (2, 1) and picture.row_label == "output filter"
    assert len(picture.rows) == picture.values.shape[0]
    assert picture.rows[0] == pytest.approx(1 / 3 - 0.5) and picture.rows[-1] < 64
    assert picture.cols[-1] == pytest.approx(31 + 1 / 3) and picture.col_label == "input channel"
    linear = weight_map(torch.randn(10, 400))  # 400 inputs pooled 3 to a cell
    assert linear.pooled == (1, 3)
    np.testing.assert_allclose(linear.rows, np.arange(10))
    assert linear.cols[0] == pytest.approx(1) and linear.cols[-1] == pytest.approx(399)


def test_sidebar_lists_pages_without_the_raw_file_names() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showSidebarNavigation"] is False
    at = landing({})
    titles = [e.value for e in at.sidebar if getattr(e, "type", "") == "page_link"]
    # exactly the app's pages, by title, in its order (never the pages/ file names)
    expected = re.findall(
        r'st\.Page\("pages/\w+\.py", title="([^"]+)"', (ROOT / "app.py").read_text()
    )
    assert titles == expected
    assert titles[:2] == ["Learn", "Model"]  # the lessons first, for a new visitor
