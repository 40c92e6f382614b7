"""docs/benchmarks.md is generated: it is exactly what bench/benchmarks.template.md gives with
bench/last-run.json and bench/last-chaos.json, its template has no hand-typed figure (no digit
in its prose outside placeholders and code), every number on the page is, in its place, the one
the results' figures give there (a stale number fails even when it equals another figure), the
stored figures and rows are what bench/report.py derives from the stored raw values, and the
results name the commit they measured. Whether that commit's code is HEAD's is a maintainer's
check (`python -m bench.docs --check-commit`): here it only warns. The README's speed claim is
only a link to that page."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from bench import chaos, docs, report, run
from bench.common import CHAOS_RESULTS, PAGE, RUN_RESULTS
from tests.bench.test_report import good_results

CODE = re.compile(r"`[^`]*`")


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


def test_every_number_on_the_page_is_the_results_figure_in_its_place() -> None:
    problems = docs.number_problems(
        PAGE.read_text(), docs.load(RUN_RESULTS), docs.load(CHAOS_RESULTS)
    )
    assert problems == [], problems


def test_the_stored_figures_and_rows_are_what_the_raw_values_give() -> None:
    """A figure edited in bench/last-run.json, or left from an older report, is caught; after a
    change to bench/report.py, `python -m bench.run --refigure` derives them again."""
    stored = docs.load(RUN_RESULTS)
    again = copy.deepcopy(stored)
    run.summarize(again)
    for key in ("figures", "rows", "activity_max"):
        assert json.loads(report.raw_json(again[key])) == stored[key], (
            f"bench/last-run.json's {key} are not what bench/report.py gives from its raw "
            "values: run `python -m bench.run --refigure`"
        )


# -- a stale number is caught --------------------------------------------------------------------


def synthetic() -> tuple[dict[str, Any], str]:
    """Results of every stage (tests/bench/test_report.py) and the page they give."""
    results = good_results()
    results |= {
        "method": run.method(20, seed=99),
        "started": "2026-01-01 00:00",
        "mode": "full run",
    }
    run.summarize(results)
    results = json.loads(report.raw_json(results))
    return results, docs.render(docs.TEMPLATE.read_text(), results, docs.load(CHAOS_RESULTS))


def mutate(page: str, before: str, after: str) -> str:
    assert page.count(before) == 1, before
    return page.replace(before, after)


def test_every_placeholder_of_the_template_names_a_figure_a_run_gives() -> None:
    """A misspelt path would show n/a on every page: each one resolves in a run of every stage."""
    results, _ = synthetic()
    data = {"run": results, "targets": report.TARGETS}
    keys = [m[1].strip() for m in docs.PLACEHOLDER.finditer(docs.TEMPLATE.read_text())]
    missing = [k for k in keys if k.startswith(("run.", "targets."))
               and docs.lookup(data, k) is docs.MISSING]  # fmt: skip
    assert missing == [], missing


def test_the_synthetic_page_passes() -> None:
    results, page = synthetic()
    assert docs.number_problems(page, results, docs.load(CHAOS_RESULTS)) == []


def test_a_stale_ratio_fails_the_check() -> None:
    results, page = synthetic()
    est = results["figures"]["session"]["ratio_a"]["estimate"]
    stale = f"{est + 0.05:.2f}"  # the last run's figure, say
    bad = mutate(page, f"Ratio to A {est:.2f}", f"Ratio to A {stale}")
    problems = docs.number_problems(bad, results, docs.load(CHAOS_RESULTS))
    assert len(problems) == 1 and f"{stale} where the results give {est:.2f}" in problems[0]


def test_a_stale_number_equal_to_another_figure_fails_too() -> None:
    """The check that this one replaces accepted any number found anywhere in the results: a
    stale figure that happens to equal another figure of the page passed it."""
    results, page = synthetic()
    ratio_a = f"{results['figures']['session']['ratio_a']['estimate']:.2f}"
    ratio_b = f"{results['figures']['session']['ratio_b']['estimate']:.2f}"
    assert ratio_a != ratio_b and ratio_b in docs.NUMBER.findall(page)
    bad = mutate(page, f"Ratio to A {ratio_a}", f"Ratio to A {ratio_b}")
    assert docs.number_problems(bad, results, docs.load(CHAOS_RESULTS)) != []


def test_a_stale_table_cell_and_a_missing_number_fail() -> None:
    results, page = synthetic()
    row = next(r for r in results["rows"] if r["figure"].startswith("Ctrl-C -> job gone"))
    old = f"| {row['value']} |"
    bad = mutate(page, old, old.replace(row["value"].split()[0], "0.19", 1))
    assert docs.number_problems(bad, results, docs.load(CHAOS_RESULTS)) != []
    cut = mutate(page, old, "| n/a |")
    assert any("numbers on the page" in p for p in docs.number_problems(cut, results, {}))


def test_a_hand_typed_figure_is_caught() -> None:
    text = "Ratio {{ run.figures.session.ratio_a.estimate : .2f }}, about 0.5 s faster."
    assert re.search(r"\d", prose(text))
    page = docs.render(text, {"figures": {"session": {"ratio_a": {"estimate": 1.04}}}}, {})
    assert page == "Ratio 1.04, about 0.5 s faster."


# -- the commit measured -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [RUN_RESULTS, CHAOS_RESULTS], ids=["bench", "chaos"])
def test_the_results_name_their_commit_and_the_page_shows_it(path: Path) -> None:
    commit = docs.load(path)["machine"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit), commit
    assert f"`{commit}`" in PAGE.read_text()


def test_results_from_an_older_commit_only_warn_here() -> None:
    """`python -m bench.docs --check-commit` fails on them; the unit tests do not: the stored
    results are regenerated by `make bench` and `make chaos` on the commit that lands."""
    for path in (RUN_RESULTS, CHAOS_RESULTS):
        for problem in docs.commit_problems(docs.load(path), path.name):
            warnings.warn(f"{problem} (python -m bench.docs --check-commit)", stacklevel=1)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True)  # fmt: skip
    return done.stdout.strip()


def commit_all(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    return git(repo, "rev-parse", "HEAD")


def test_check_commit_compares_the_code_measured_with_head(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    measured = commit_all(tmp_path, {"driver/x.py": "x = 1\n", "README.md": "a\n"})
    results = {"machine": {"commit": measured, "dirty_paths": []}}
    assert docs.commit_problems(results, "r", tmp_path) == []
    # the results themselves, the page, its template and renderer and other files: still HEAD's
    commit_all(tmp_path, {"bench/last-run.json": "{}", "docs/benchmarks.md": "x",
                          "bench/benchmarks.template.md": "t", "bench/docs.py": "# r",
                          "README.md": "b\n"})  # fmt: skip
    assert docs.commit_problems(results, "r", tmp_path) == []
    commit_all(tmp_path, {"roles/r/tasks/main.yml": "- x\n"})
    (problem,) = docs.commit_problems(results, "r", tmp_path)
    assert "roles/r/tasks/main.yml" in problem
    dirty = {"machine": {"commit": measured, "dirty_paths": ["driver/x.py", "README.md"]}}
    assert any("driver/x.py" in p for p in docs.commit_problems(dirty, "r", tmp_path))
    unknown = {"machine": {"commit": "0" * 40}}
    assert "not in this repository" in docs.commit_problems(unknown, "r", tmp_path)[0]
    assert docs.commit_problems({}, "r", tmp_path) == ["r: no results"]


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
