"""docs/benchmarks.md is generated: it is exactly what bench/benchmarks.template.md gives with
bench/last-run.json and bench/last-chaos.json, its template has no hand-typed figure (no digit
in its prose outside placeholders and code), and every number on the page occurs in those
files. The README's speed claim is only a link to that page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench import chaos, docs, report
from bench.common import CHAOS_RESULTS, PAGE, RUN_RESULTS

NUMBER = re.compile(r"\d+(?:\.\d+)?")
CODE = re.compile(r"`[^`]*`")


def numbers_of(value: Any, out: set[str]) -> set[str]:
    """Every number a JSON value can show as: ints, floats at 0-3 decimals, digits in strings."""
    if isinstance(value, dict):
        for k, v in value.items():
            numbers_of(k, out)
            numbers_of(v, out)
    elif isinstance(value, list):
        for v in value:
            numbers_of(v, out)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int | float):
        texts = [str(value)] + [f"{value:.{nd}f}" for nd in range(4)]
        texts += [f"{value * 100:.0f}"]  # percentages (a CI's level)
        for t in texts:
            out.update(NUMBER.findall(t))
    else:
        out.update(NUMBER.findall(str(value)))
    return out


def prose(text: str) -> str:
    """The text without placeholders, code spans, fenced code and HTML comments."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = docs.PLACEHOLDER.sub("", text)
    return CODE.sub("", text)


def test_the_page_is_what_the_results_give() -> None:
    assert PAGE.read_text() == docs.generate(), (
        "docs/benchmarks.md differs from its template and bench/last-*.json: "
        "run `python -m bench.docs` (never edit the page by hand)"
    )


def test_the_template_has_no_hand_typed_figure() -> None:
    text = prose(docs.TEMPLATE.read_text())
    digits = [line for line in text.splitlines() if re.search(r"\d", line)]
    assert digits == [], digits


def test_every_number_on_the_page_occurs_in_the_results() -> None:
    known = numbers_of({"run": docs.load(RUN_RESULTS), "chaos": docs.load(CHAOS_RESULTS),
                        "targets": report.TARGETS}, set())  # fmt: skip
    page = re.sub(r"<!--.*?-->", "", PAGE.read_text(), flags=re.S)
    page = CODE.sub("", page)
    stray = sorted({n for n in NUMBER.findall(page) if n not in known})
    assert stray == [], stray


def test_a_hand_typed_figure_is_caught() -> None:
    text = "Ratio {{ run.figures.session.ratio_a.ratio : .2f }}, about 0.5 s faster."
    assert re.search(r"\d", prose(text))
    page = docs.render(text, {"figures": {"session": {"ratio_a": {"ratio": 1.04}}}}, {})
    assert page == "Ratio 1.04, about 0.5 s faster."
    assert "5" not in numbers_of({"ratio": 1.04}, set())


def test_missing_values_render_as_not_available() -> None:
    assert docs.render("{{ run.figures.nothing : .2f }} {{ table: chaos }}", {}, {}) == (
        "n/a _(no chaos run recorded)_"
    )
    with pytest.raises(KeyError):
        docs.render("{{ figures.x }}", {}, {})


def test_the_readme_speed_claim_is_a_link_to_the_generated_page() -> None:
    readme = (docs.REPO / "README.md").read_text()
    step = readme.split("4. Start a notebook:", 1)[1].split("### Commands", 1)[0]
    assert "half a second" not in step
    assert "(docs/benchmarks.md)" in step
    claims = [s for s in re.split(r"(?<=[.)])\s+", " ".join(step.split())) if "benchmarks" in s]
    assert claims and not any(re.search(r"\d", CODE.sub("", c)) for c in claims), claims


def test_the_chaos_results_cover_every_exit_path() -> None:
    raw = docs.load(CHAOS_RESULTS)
    assert raw, "bench/last-chaos.json is missing: run `make chaos`"
    assert [r["path"] for r in raw["results"]] == list(chaos.PATHS)
    assert all(r["rounds"] == raw["rounds"] for r in raw["results"])


def test_the_chaos_table_says_missed_for_a_path_that_left_something() -> None:
    counts = {k: 0 for k in chaos.COUNTED} | {"retried": 0}
    ok = {"path": "sigint", "rounds": 10, "failed_rounds": 0, "seconds": 50.0,
          "failed": False, "counts": counts}  # fmt: skip
    token = "cn01:/tmp/nodebook-alice-7/token"
    bad = {**ok, "path": "sigkill", "failed_rounds": 1, "failed": True,
           "counts": counts | {"files": 1}, "files": [token]}  # fmt: skip
    table = docs.t_chaos({}, {"results": [ok, bad]}).splitlines()
    assert table[2].endswith("| met |") and table[3].endswith("| MISSED |")
    assert "| 1 |" in table[3]
    assert token in docs.t_chaos_failures({}, {"results": [bad]})
