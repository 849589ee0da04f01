"""What office staff see: compose prints the findings (and still succeeds); `mailroom check` runs them alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailroom.cli import main
from tests.pictures import write_heavy_photo_png
from tests.projects import FIXTURE_NEWSLETTERS, REPO, make_project

SAMPLE_LINE_COUNT = "Checks: no problems found."
CANNOT_SEND = "This newsletter cannot be sent until the errors are fixed."


def run(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(root)
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def problems(tmp_path: Path) -> Path:
    folder = make_project(tmp_path, FIXTURE_NEWSLETTERS / "problems")
    write_heavy_photo_png(folder / "images" / "big.png")
    return folder


def test_compose_prints_the_findings_and_still_succeeds(problems: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, _ = run(problems.parent.parent, monkeypatch, "compose", "newsletters/problems")
    assert status == 0
    lines = out.splitlines()
    start = lines.index("Checks: 7 errors, 13 warnings")
    assert lines[start + 1] == ("  Error:   newsletter.md, line 14: '{{ first_name }}' is left in the email: template "
                                "code that was never filled in")
    assert lines[start + 7] == ("  Error:   the email has no unsubscribe link; the law requires one in every "
                                "newsletter, and mail services bin emails without one")
    assert lines[start + 8] == ("  Warning: newsletter.md, line 2: the subject is 93 characters long; most inboxes "
                                "show only about the first 60 (phones fewer), so put what matters first")
    assert lines[-1] == f"{CANNOT_SEND} Fix them and compose again."
    assert len(lines) == start + 1 + 20 + 1


def test_compose_of_the_sample_reports_no_problems(sample_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, _ = run(sample_folder.parent.parent, monkeypatch, "compose", f"newsletters/{sample_folder.name}")
    assert status == 0
    assert out.splitlines()[-1] == SAMPLE_LINE_COUNT


def test_check_exits_2_while_there_are_errors(problems: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = problems.parent.parent
    run(root, monkeypatch, "compose", "newsletters/problems")
    status, out, _ = run(root, monkeypatch, "check", "newsletters/problems")
    assert status == 2
    assert out.splitlines()[0] == "Checks: 7 errors, 13 warnings"
    assert out.splitlines()[-1] == CANNOT_SEND


def test_check_exits_0_with_only_warnings(problems: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = problems.parent.parent
    for name in ("footer.mjml.j2", "text.txt.j2"):  # the project's own, with the unsubscribe links
        (root / "templates" / name).write_text((REPO / "templates" / name).read_text(encoding="utf-8"),
                                               encoding="utf-8")
    newsletter = problems / "newsletter.md"
    text = newsletter.read_text(encoding="utf-8")
    newsletter.write_text(text.replace("Dear {{ first_name }}, your class code is %%class_code%%.", "Hello."),
                          encoding="utf-8")
    run(root, monkeypatch, "compose", "newsletters/problems")
    status, out, err = run(root, monkeypatch, "check", "newsletters/problems")
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "Checks: 0 errors, 9 warnings"
    assert CANNOT_SEND not in out


def test_check_says_when_the_sources_changed_since_compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample_folder = make_project(tmp_path / "project", composed=True)  # the per-worker composed copy
    root = sample_folder.parent.parent
    with (sample_folder / "newsletter.md").open("a", encoding="utf-8") as source:
        source.write("\nTODO: one more thing.\n")
    status, out, _ = run(root, monkeypatch, "check", f"newsletters/{sample_folder.name}")
    assert status == 0
    assert out.splitlines() == [
        f"Note: newsletters/{sample_folder.name}/newsletter.md changed since the newsletter was composed; these "
        "checks are of the last compose. Compose again to check your changes.",
        SAMPLE_LINE_COUNT]


def test_check_before_compose_is_a_clear_error(sample_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, _, err = run(sample_folder.parent.parent, monkeypatch, "check", f"newsletters/{sample_folder.name}")
    assert status == 2
    assert err.startswith(f"Error: {sample_folder / 'build' / 'manifest.json'}: this newsletter has not been "
                          "composed yet: run  python compose.py ")
