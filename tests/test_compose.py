"""compose.py end to end: the build folder, its manifest, atomic writes, and messages with exit statuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailroom.compose.build import Manifest, load_build
from mailroom.errors import InputError
from tests.projects import compose_copy, make_project

COMPOSE = str(Path(__file__).resolve().parents[1] / "compose.py")


def compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, COMPOSE, *args], cwd=project, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(COMPOSE).parent)})


def test_compose_writes_every_version_and_a_manifest(project: Path, sample_dir: Path) -> None:
    result = compose(project, "newsletters/2024-11-08-online-safety")
    assert result.returncode == 0, result.stderr
    assert "Composed “Online safety: sextortion and the rise of AI”" in result.stdout
    assert "Preview in your browser: newsletters/2024-11-08-online-safety/build/preview.html" in result.stdout
    build_dir = sample_dir / "build"
    for name in ("versions/parents.tokens.html", "versions/parents.tokens.txt", "versions/staff.tokens.html",
                 "versions/staff.tokens.txt", "web.html", "preview.html",
                 "manifest.json", "images/home-learning-hub.png", "images/school-logo.png"):
        assert (build_dir / name).is_file(), name
    manifest = Manifest.read(build_dir)
    assert manifest.subject == "Online safety: sextortion and the rise of AI"
    assert manifest.audiences == ("parents", "staff")
    assert manifest.campaign == "online-safety-2024-11"
    assert set(manifest.sources) >= {
        "newsletters/2024-11-08-online-safety/newsletter.md", "school.toml#rendering", "templates/base.mjml.j2",
        "newsletters/2024-11-08-online-safety/images/home-learning-hub.png", "assets/logo.png"}
    parents = manifest.versions["parents"]
    assert parents.tokens == ("greeting", "unsubscribe_url")
    assert parents.html_bytes == (build_dir / parents.html).stat().st_size
    assert {image.filename for image in parents.images} == {"home-learning-hub.png", "school-logo.png"}
    assert any("ineqe.com/home-learning-hub/" in link for link in parents.links)
    build = load_build(sample_dir, project)
    assert build.changed_sources() == []
    assert len(build.build_hash) == 64


@pytest.fixture
def composed_dir(tmp_path: Path) -> Path:
    """The sample already composed (a copy of the session's composed project): for tests of what a build
    remembers, which need a build but are not about running compose.py (the tests above and below are)."""
    return make_project(tmp_path / "composed", composed=True)


def test_editing_a_source_after_compose_is_detected(composed_dir: Path) -> None:
    project, sample_dir = composed_dir.parents[1], composed_dir
    source = sample_dir / "newsletter.md"
    source.write_text(source.read_text().replace("Thank you", "Many thanks"))
    (project / "templates" / "footer.mjml.j2").write_text("changed")
    build = load_build(sample_dir, project)
    assert build.changed_sources() == ["newsletters/2024-11-08-online-safety/newsletter.md",
                                       "templates/footer.mjml.j2"]


def test_only_the_rendering_part_of_school_toml_counts(composed_dir: Path) -> None:
    """Changing the sending pace must not force a new compose; changing the school's address must."""
    project, sample_dir = composed_dir.parents[1], composed_dir
    toml = project / "school.toml"
    toml.write_text(toml.read_text().replace("messages_per_minute = 30", "messages_per_minute = 20")
                    + "\n# a comment\n")
    assert load_build(sample_dir, project).changed_sources() == []
    toml.write_text(toml.read_text().replace("Oakfield Lane", "Oakfield Road"))
    assert load_build(sample_dir, project).changed_sources() == ["school.toml#rendering"]


def test_same_sources_give_the_same_build_hash(composed_dir: Path) -> None:
    project, sample_dir = composed_dir.parents[1], composed_dir
    first = load_build(sample_dir, project).build_hash
    compose_copy(sample_dir)  # composed again, later, in another folder than the first time
    assert load_build(sample_dir, project).build_hash == first


def test_a_failed_compose_leaves_the_previous_build_intact(composed_dir: Path) -> None:
    project, sample_dir = composed_dir.parents[1], composed_dir
    before = (sample_dir / "build" / "manifest.json").read_text()
    source = sample_dir / "newsletter.md"
    source.write_text(source.read_text().replace("(images/home-learning-hub.png)", "(images/gone.png)"))
    result = compose(project, str(sample_dir))
    assert result.returncode == 2
    assert (sample_dir / "build" / "manifest.json").read_text() == before
    assert sorted(p.name for p in sample_dir.iterdir()) == ["build", "images", "newsletter.md"]


@pytest.mark.parametrize(("change", "message"), [
    (("subject: Online safety: sextortion and the rise of AI\n", ""),
     "newsletters/2024-11-08-online-safety/newsletter.md, line 6: the front matter needs a 'subject'"),
    (("audiences: parents, staff", "audiences: parents, governors"),
     "newsletters/2024-11-08-online-safety/newsletter.md, line 5: unknown audience 'governors'; "
     "the lists in school.toml are: parents, staff"),
    (("::: button", "::: banner"),
     "newsletters/2024-11-08-online-safety/newsletter.md, line 31: unknown block '::: banner'; "
     "the blocks are: ::: alert, ::: button, ::: only"),
    (("(images/home-learning-hub.png)", "(images/hub.png)"),
     "newsletters/2024-11-08-online-safety/newsletter.md, line 37: the image file 'images/hub.png' does not exist"),
    (("[![Home Learning Hub for Parents: a free library of resources to help parents and carers keep their "
      "children safer online. Button: Home Learning Hub.]", "[![]"),
     "newsletters/2024-11-08-online-safety/newsletter.md, line 37: the image 'images/home-learning-hub.png' has "
     "no alt text: write what it shows, like ![The school choir](images/home-learning-hub.png)"),
])
def test_bad_newsletter_gives_one_clear_message_and_exit_2(
        project: Path, sample_dir: Path, change: tuple[str, str], message: str) -> None:
    source = sample_dir / "newsletter.md"
    text = source.read_text()
    assert change[0] in text
    source.write_text(text.replace(change[0], change[1], 1))
    result = compose(project, "newsletters/2024-11-08-online-safety")
    assert result.returncode == 2
    assert result.stderr.strip().replace(str(project) + "/", "") == f"Error: {message}"
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_template_error_exit_2_names_the_template(project: Path, sample_dir: Path) -> None:
    (project / "templates" / "blocks" / "alert.mjml.j2").write_text("{% if block.title %}\n<mj-text>x</mj-text>\n")
    result = compose(project, str(sample_dir))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"Error: {project}/templates/blocks/alert.mjml.j2, line 1: template error: Unexpected end of template")
    assert "Traceback" not in result.stderr


def test_missing_folder_and_missing_build(project: Path) -> None:
    result = compose(project, "newsletters/no-such-week")
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: newsletters/no-such-week: there is no such newsletter folder"
    with pytest.raises(InputError) as caught:
        load_build(project / "newsletters" / "2024-11-08-online-safety", project)
    assert "this newsletter has not been composed yet: run  python compose.py" in str(caught.value)
