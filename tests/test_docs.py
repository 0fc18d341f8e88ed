"""README and docs/: the links and files they cite exist, and the README's commands are CI's."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "results" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: Docs written elsewhere in the same change, which a doc may link to before they land.
PENDING = {"docs/csv.md"}


def tracked(pattern: str) -> list[str]:
    return subprocess.run(["git", "ls-files", pattern], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_resolves(doc):
    for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text()):
        path = (doc.parent / target).resolve()
        if str(path.relative_to(REPO)) in PENDING:
            continue
        assert path.exists(), f"{doc.relative_to(REPO)} links to {target}, which does not exist"


def test_every_figure_in_docs_is_shown_by_a_doc_and_exists():
    text = "\n".join(doc.read_text() for doc in DOCS)
    shown = {name for name in re.findall(r"figures/([\w./-]+\.png)", text)}
    kept = {path.removeprefix("docs/figures/") for path in tracked("docs/figures")}
    assert kept <= shown, f"figures no doc shows: {sorted(kept - shown)}"
    assert shown <= kept, f"figures the docs show that are missing: {sorted(shown - kept)}"
    assert len(kept) <= 24, f"{len(kept)} figures tracked; keep at most 24 (dropbench-plot redraws the rest)"


def test_every_results_file_the_index_lists_exists_and_every_file_is_listed():
    index = (REPO / "results" / "README.md").read_text()
    listed = {f"results/{name}" for name in re.findall(r"^\| `([^`]+)`", index, flags=re.M)}
    files = {path for path in tracked("results") if path != "results/README.md"}
    covered = {path for path in files if any(path == name or path.startswith(name) for name in listed)}
    assert covered == files, f"files in results/ the index does not list: {sorted(files - covered)}"
    missing = {name for name in listed if not any(path.startswith(name) for path in files)}
    assert not missing, f"results/README.md lists files that are not there: {sorted(missing)}"


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; manuals belong in docs/"


def test_ci_runs_the_readme_test_command():
    readme, ci = (REPO / "README.md").read_text(), (REPO / ".ci" / "run").read_text()
    command = 'pip install -e ".[test]" && python -m pytest'
    assert command in readme, "README.md lost its test command"
    assert command in ci.splitlines(), ".ci/run should run the README's test command as it is written"
