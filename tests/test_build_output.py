"""Issue 2, point 7: what compose writes into newsletters/<slug>/build/, and that it writes it atomically."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailroom.compose.build import MANIFEST, BuiltImage, Manifest, ManifestVersion, digest_build, load_build
from mailroom.errors import InputError
from tests.projects import REPO, compose_copy, make_project

KB = 1024


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_compose_writes_every_version_the_web_copy_the_preview_and_the_manifest(sample_folder: Path) -> None:
    result = compose_copy(sample_folder)
    build = sample_folder / "build"
    assert sorted(snapshot(build)) == [
        "images/home-learning-hub.png", "images/school-logo.png", "manifest.json", "preview.html",
        "versions/parents+staff.tokens.html", "versions/parents+staff.tokens.txt", "versions/parents.tokens.html",
        "versions/parents.tokens.txt", "versions/staff.tokens.html", "versions/staff.tokens.txt", "web.html",
        "web.txt"]
    assert result.web_path == build / "web.html" and result.preview_path == build / "preview.html"


@pytest.fixture
def composed_folder(tmp_path: Path) -> Path:
    """A copy of the sample composed once per worker (tests/projects.py's cache), for tests that read a build."""
    return make_project(tmp_path / "composed", composed=True)


def test_the_manifest_records_what_went_in_and_what_came_out(composed_folder: Path) -> None:
    sample_folder = composed_folder
    build = sample_folder / "build"
    root = sample_folder.parent.parent
    manifest = Manifest.read(build)
    assert manifest.subject == "Online safety: sextortion and the rise of AI"
    assert manifest.preheader.startswith("A safeguarding alert about a growing online threat")
    assert manifest.audiences == ("parents", "staff")
    assert manifest.campaign == "online-safety-2024-11"
    slug = sample_folder.name
    assert {f"newsletters/{slug}/newsletter.md", "school.toml#rendering", "templates/base.mjml.j2", "assets/logo.png",
            f"newsletters/{slug}/images/home-learning-hub.png"} <= set(manifest.sources)
    for name, digest in manifest.sources.items():
        if "#" not in name:  # school.toml#rendering is a digest of its rendering tables, tested in test_compose
            assert sha256(root / name) == digest, name
    assert {name: version.lists for name, version in manifest.versions.items()} == {
        "parents": ("parents",), "staff": ("staff",), "parents+staff": ("parents", "staff")}
    for audience, version in manifest.versions.items():
        html = (build / version.html).read_text(encoding="utf-8")
        assert version.html_bytes == len(html.encode("utf-8"))
        assert version.text_bytes == (build / version.text).stat().st_size
        hrefs = [h.replace("&amp;", "&") for h in re.findall(r'<a\b[^>]*?\bhref="([^"]*)"', html)]
        assert list(version.links) == hrefs
        content = audience.replace("+", "%2B")
        assert all(f"utm_content={content}" in link for link in hrefs if link.startswith("https://"))
        assert version.tokens == ("greeting", "unsubscribe_url")
        assert [image.filename for image in version.images] == ["home-learning-hub.png", "school-logo.png"]
        assert version.html_bytes < 90 * KB  # well under Gmail's 102 KB clip
    assert load_build(sample_folder, root).changed_sources() == []
    # every file of the build but the manifest and the preview has its sha256, and build_hash is made of them
    written = {p.relative_to(build).as_posix() for p in build.rglob("*") if p.is_file()}
    assert set(manifest.files) == written - {"manifest.json", "preview.html"}
    assert {"versions/parents.tokens.html", "web.html", "images/home-learning-hub.png"} <= set(manifest.files)
    for name, digest in manifest.files.items():
        assert sha256(build / name) == digest, name
    assert manifest.build_hash == digest_build(manifest.files, manifest.sources)


def test_the_web_copy_has_no_personal_tokens(composed_folder: Path) -> None:
    sample_folder = composed_folder
    build = sample_folder / "build"
    web = (build / "web.html").read_text(encoding="utf-8") + (build / "web.txt").read_text(encoding="utf-8")
    assert "%%" not in web
    assert "unsubscribe" not in web.lower()
    assert "This is the web copy of the newsletter the school emails to its mailing lists." in web
    assert "Dear Parent/Carer," in web
    assert "%%unsubscribe_url%%" in (build / "versions" / "parents.tokens.html").read_text(encoding="utf-8")


def test_tokens_typed_into_newsletter_md_never_reach_the_web_copy(sample_folder: Path) -> None:
    source = sample_folder / "newsletter.md"
    text = source.read_text(encoding="utf-8")
    source.write_text(text.replace("This week you can learn", "Hello %%first_name%% %%last_name%% "
                                   "(%%recipient_id%%, %%unsubscribe_url%%). %%greeting%%. This week you can learn", 1),
                      encoding="utf-8")
    compose_copy(sample_folder)
    build = sample_folder / "build"
    for name in ("web.html", "web.txt"):
        web = (build / name).read_text(encoding="utf-8")
        assert "%%" not in web, name
        assert "Hello (, ). Dear Parent/Carer. This week you can learn" in " ".join(web.split()), name
    emailed = (build / "versions" / "parents.tokens.html").read_text(encoding="utf-8")
    assert "Hello %%first_name%% %%last_name%%" in emailed  # each reader's copy fills them in


def test_a_failed_compose_leaves_the_previous_build_as_it_was(composed_folder: Path) -> None:
    sample_folder = composed_folder
    before = snapshot(sample_folder / "build")
    newsletter = sample_folder / "newsletter.md"
    newsletter.write_text(newsletter.read_text(encoding="utf-8") + "\n::: poll\nWhich day?\n:::\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown block '::: poll'"):
        compose_copy(sample_folder)
    assert snapshot(sample_folder / "build") == before
    assert sorted(p.name for p in sample_folder.iterdir()) == ["build", "images", "newsletter.md"]


def test_compose_open_opens_the_preview(sample_folder: Path, tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    fake_browser = tmp_path / "fake-browser"
    fake_browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    fake_browser.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROWSER": str(fake_browser)}
    result = subprocess.run([sys.executable, str(REPO / "compose.py"), f"newsletters/{sample_folder.name}", "--open"],
                            cwd=sample_folder.parent.parent, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert opened.read_text().split() == [(sample_folder / "build" / "preview.html").resolve().as_uri()]


def _manifest(**changes: object) -> Manifest:
    version = ManifestVersion(html="parents.html", text="parents.txt", html_bytes=10, text_bytes=5,
                              links=("https://example.org/?utm_source=school",), tokens=("greeting",),
                              images=(BuiltImage("logo.png", "image/png", 123),))
    fields: dict[str, object] = dict(
        slug="2024-11-08-zoë", subject="Zoë’s class — trip", preheader="", date="2024-11-08", campaign="trip",
        audiences=("parents",), composed_at="2024-11-08T09:00:00+00:00", build_hash="ab" * 32,
        sources={"newsletters/2024-11-08-zoë/newsletter.md": "cd" * 32}, versions={"parents": version})
    return Manifest(**(fields | changes))  # type: ignore[arg-type]


def test_a_manifest_reads_back_exactly_as_it_was_written(tmp_path: Path) -> None:
    manifest = _manifest()
    path = manifest.write(tmp_path)
    assert path == tmp_path / MANIFEST
    assert "Zoë’s class" in path.read_text(encoding="utf-8")  # readable by a person, not \\u-escaped
    assert Manifest.read(tmp_path) == manifest


@pytest.mark.parametrize("damage", [
    lambda data: data.pop("subject"),
    lambda data: data.update(manifest_version=99),
    lambda data: data.update(subject=7),
    lambda data: data["versions"]["parents"].update(html_bytes="lots"),
    lambda data: data["versions"]["parents"]["images"][0].pop("size"),
    lambda data: data.update(versions=[]),
])
def test_a_damaged_manifest_is_an_input_error_naming_the_file(tmp_path: Path, damage: object) -> None:
    data = _manifest().to_json()
    data = json.loads(json.dumps(data))
    damage(data)  # type: ignore[operator]
    (tmp_path / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match="manifest is damaged") as caught:
        Manifest.read(tmp_path)
    assert caught.value.path == tmp_path / MANIFEST


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", "null"])
def test_a_manifest_that_is_not_an_object_is_damaged(tmp_path: Path, content: str) -> None:
    (tmp_path / MANIFEST).write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="manifest is damaged"):
        Manifest.read(tmp_path)
