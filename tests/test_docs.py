"""The README a newcomer reads first, the docs/ pages it links, LICENSE and CITATION.cff."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAPER_TITLE = "Asymptotic Midpoint Mixup for Margin Balancing and Moderate Broadening"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _links(path: Path):
    """(target, anchor) of every relative Markdown link (not images, not URLs) of ``path``."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        yield (path.parent / file).resolve() if file else path.resolve(), anchor


def test_readme_is_short_and_its_lines_fit_a_screen():
    lines = README.splitlines()
    assert len(lines) <= 200
    assert [n for n, line in enumerate(lines, 1) if len(line) > 125] == []


def test_readme_says_what_this_is_before_anything_else_and_names_the_paper():
    first_screen = "\n".join(README.splitlines()[:15])
    assert PAPER_TITLE in first_screen and "reproduction" in first_screen
    assert "arxiv.org" in first_screen
    assert "Welch" not in first_screen


def test_results_at_a_glance_markers_and_the_figure_below_them():
    start = README.index("<!-- results-at-a-glance:start -->")
    end = README.index("<!-- results-at-a-glance:end -->")
    assert start < end
    assert README.count("<!-- results-at-a-glance:start -->") == 1
    figure = README.index("![ours vs the paper](results/REPORT_vs_paper.png)")
    assert figure > end


def test_readme_tells_how_to_use_the_environment_the_scripts_make():
    assert "source .venv/bin/activate" in README
    assert "bash scripts/main.sh" in README and "bash scripts/test.sh" in README
    assert "AMIXUP_PLUGINS" in README and "../shared/datasets" in README


def test_packing_and_compile_step_are_off_the_main_path():
    for word in ("--pack", "packing", "compile_step", "streams"):
        assert word not in README
    speed = (ROOT / "docs" / "speed.md").read_text()
    assert "benchmarks/" in speed.split("## Set aside", 1)[1]


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page):
    for target, anchor in _links(page):
        assert target.exists(), f"{page.name} links to a missing {target}"
        if anchor and target.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{page.name}: no heading #{anchor} in {target.name}"


def test_every_docs_page_is_reachable_from_the_readme():
    reachable = {t for t, _ in _links(ROOT / "README.md")}
    reachable |= {t for t, _ in _links(ROOT / "docs" / "README.md")}
    assert {p.resolve() for p in DOCS} <= reachable | {(ROOT / "docs" / "README.md").resolve()}


def test_tests_and_ci_page_has_the_notebooks_section():
    assert re.search(r"^## What the notebooks' outputs pin down$", (ROOT / "docs" / "testing.md").read_text(), re.M)


def test_license_citation_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    license_text = (ROOT / "LICENSE").read_text()
    assert project["license"]["text"] == "MIT" and license_text.startswith("MIT License")
    assert "Copyright (c)" in license_text and "amixup contributors" in license_text
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["license"] == "MIT" and str(cff["version"]) == project["version"]
    paper = cff["preferred-citation"]
    assert paper["title"] == PAPER_TITLE
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == [
        ("Hoyong", "Kim"), ("Semi", "Lee"), ("Kangil", "Kim")]


def test_readme_bibtex_cites_the_paper_the_citation_file_prefers():
    bib = re.search(r"```bibtex\n(.*?)```", README, re.S).group(1)
    assert re.search(r"title\s*=\s*\{" + re.escape(PAPER_TITLE) + r"\}", bib)
    assert re.search(r"author\s*=\s*\{Kim, Hoyong and Lee, Semi and Kim, Kangil\}", bib)
    assert bib.count("{") == bib.count("}")


def test_the_paper_text_beside_the_clone_has_this_title():
    paper = ROOT.parent / "shared" / "paper" / "am-mixup-paper.md"
    if not paper.exists():
        pytest.skip("no ../shared/paper beside this clone")
    assert f"# {PAPER_TITLE}" in paper.read_text()
    assert "Hoyong Kim, Semi Lee, Kangil Kim" in paper.read_text()
