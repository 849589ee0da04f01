"""compose: newsletter folder -> build folder (every audience's version, web copy, preview, manifest).

The build is written to a temporary folder and swapped in at the end, so a compose that fails
leaves the previous build as it was. One compose at a time per newsletter (a lock that dies with its
process): the live preview and a compose from the terminal may run together, and the second waits.
Whatever a killed compose left (its ``.build-*`` folder) is removed by the next one.

The versions send uses keep their per-recipient tokens (``%%greeting%%``), so they live in
``build/versions/<audience>.tokens.html``, out of the way: people open ``preview.html``, which shows each
version as a reader gets it, and ``web.html``, the public copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mailroom.checks.rules import Finding, check_versions
from mailroom.compose.build import (
    BUILD_DIR,
    IMAGE_PREFIX,
    RENDERING_PART,
    Build,
    BuiltImage,
    Manifest,
    ManifestVersion,
    file_sha256,
    load_build,
    source_digest,
)
from mailroom.compose.content import IMAGE_TYPES, Newsletter, image_size, load_newsletter
from mailroom.compose.render import TEMPLATE_DIR, WEB_AUDIENCE, RenderedVersion, Renderer
from mailroom.errors import InputError
from mailroom.preview.page import preview_page
from mailroom.settings import Settings

LOGO_NAME = "school-logo"
VERSIONS_DIR = "versions"  # under build/: each audience's version with its tokens, for send only
STAGING_PREFIX = ".build-"
LOCK_FILE = ".compose-lock"  # only where a folder cannot be locked itself (Windows)


def version_file_names(audience: str) -> tuple[str, str]:
    """Where an audience's HTML and text parts go in the build; the name says they hold tokens."""
    return f"{VERSIONS_DIR}/{audience}.tokens.html", f"{VERSIONS_DIR}/{audience}.tokens.txt"


@dataclass(frozen=True)
class ComposeResult:
    build: Build
    web_path: Path
    preview_path: Path
    findings: tuple[Finding, ...] = ()  # the preflight checks' findings (errors stop a send)


def _image_names(paths: list[Path]) -> dict[Path, str]:
    """A unique file name in build/images/ for each image (two folders may hold a 'banner.png')."""
    names: dict[Path, str] = {}
    taken: set[str] = {LOGO_NAME}
    for path in paths:
        if path in names:
            continue
        name, counter = path.name, 2
        while name.rsplit(".", 1)[0] in taken or name in taken:
            name = f"{path.stem}-{counter}{path.suffix}"
            counter += 1
        taken.add(name)
        names[path] = name
    return names


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path.resolve())


def renderer_for(settings: Settings, newsletter: Newsletter) -> Renderer:
    """The renderer for this newsletter, with its images' names in the build and the logo's."""
    image_names = _image_names([image.path for image in newsletter.images()])
    logo = settings.brand.logo
    logo_name = f"{LOGO_NAME}{logo.suffix.lower()}" if logo else None
    if logo is not None and logo.suffix.lower() not in IMAGE_TYPES:
        raise InputError("the logo should be a PNG, JPEG or GIF file", settings.source_file)
    logo_size = image_size(logo) if logo is not None and logo.is_file() else None
    return Renderer(settings, image_names, logo_name, logo_size)


def compose_newsletter(settings: Settings, folder: Path | str) -> ComposeResult:
    """Render every audience's version of the newsletter in ``folder`` and write its build."""
    folder = Path(folder)
    newsletter = load_newsletter(folder, settings.list_names())
    images = newsletter.images()
    renderer = renderer_for(settings, newsletter)
    image_names, logo_name, logo = renderer.image_names, renderer.logo_name, settings.brand.logo
    versions: dict[str, RenderedVersion] = {
        audience: renderer.render(newsletter, audience) for audience in newsletter.front.audiences}
    web = renderer.render(newsletter, WEB_AUDIENCE)

    # Every file that went into this build, so send can refuse a build whose sources changed.
    sources = [newsletter.path, *(image.path for image in images)]
    sources += sorted(p for p in (settings.root / TEMPLATE_DIR).rglob("*") if p.is_file())
    if logo is not None:
        sources.append(logo)
    source_hashes = {_relative(p, settings.root): file_sha256(p) for p in sources}
    settings_name = f"{_relative(settings.source_file, settings.root)}#{RENDERING_PART}"
    source_hashes[settings_name] = source_digest(settings.source_file, RENDERING_PART)

    image_files: list[tuple[Path, str]] = [(path, name) for path, name in image_names.items()]
    if logo is not None and logo_name:
        image_files.append((logo, logo_name))

    build_dir = folder.resolve() / BUILD_DIR
    with compose_lock(folder.resolve()):
        remove_leftovers(folder.resolve())
        findings = _write_build(settings, newsletter, versions, web, image_files, source_hashes, build_dir)
        build = load_build(folder, settings.root)
    return ComposeResult(build=build, web_path=build_dir / "web.html", preview_path=build_dir / "preview.html",
                         findings=tuple(findings))


def _write_build(settings: Settings, newsletter: Newsletter, versions: dict[str, RenderedVersion],
                 web: RenderedVersion, image_files: list[tuple[Path, str]], source_hashes: dict[str, str],
                 build_dir: Path) -> list[Finding]:
    """Write the whole build into a staging folder, check it, and swap it in; returns the findings."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=build_dir.parent))
    try:
        (staging / IMAGE_PREFIX).mkdir()
        (staging / VERSIONS_DIR).mkdir()
        for path, name in image_files:
            shutil.copyfile(path, staging / IMAGE_PREFIX / name)
        manifest_versions: dict[str, ManifestVersion] = {}
        for audience, version in versions.items():
            html_name, text_name = version_file_names(audience)
            (staging / html_name).write_text(version.html, encoding="utf-8")
            (staging / text_name).write_text(version.text, encoding="utf-8")
            used = [(path, name) for path, name in image_files if f'src="{IMAGE_PREFIX}{name}"' in version.html]
            manifest_versions[audience] = ManifestVersion(
                html=html_name, text=text_name,
                html_bytes=len(version.html.encode("utf-8")), text_bytes=len(version.text.encode("utf-8")),
                links=version.links, tokens=version.tokens,
                images=tuple(BuiltImage(name, IMAGE_TYPES[path.suffix.lower()], path.stat().st_size)
                             for path, name in used),
            )
        (staging / "web.html").write_text(web.html, encoding="utf-8")
        (staging / "web.txt").write_text(web.text, encoding="utf-8")
        output_digest = hashlib.sha256()
        written = [p for p in [*staging.iterdir(), *(staging / VERSIONS_DIR).iterdir()] if p.is_file()]
        for name in sorted(p.relative_to(staging).as_posix() for p in written):
            output_digest.update(name.encode() + b"\0" + (staging / name).read_bytes() + b"\0")
        for name, digest in sorted(source_hashes.items()):
            output_digest.update(f"{name}={digest}\n".encode())
        front = newsletter.front
        Manifest(
            slug=newsletter.slug,
            subject=front.subject,
            preheader=front.preheader,
            date=front.date.isoformat(),
            campaign=front.campaign or newsletter.slug,
            audiences=tuple(front.audiences),
            composed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            build_hash=output_digest.hexdigest(),
            sources=source_hashes,
            versions=manifest_versions,
        ).write(staging)
        findings = check_versions({a: (v.html, v.text) for a, v in versions.items()}, subject=front.subject,
                                  preheader=front.preheader, newsletter=newsletter,
                                  image_dir=staging / IMAGE_PREFIX.rstrip("/"))
        page = preview_page(settings, front.subject, front.preheader, versions, findings, date=front.date)
        (staging / "preview.html").write_text(page, encoding="utf-8")
        _swap_in(staging, build_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return findings


@contextmanager
def compose_lock(folder: Path) -> Iterator[None]:
    """Hold the newsletter's compose lock; a second compose waits here until the first has finished.

    On Linux and macOS the newsletter folder itself is locked, so nothing is left on disk. The lock goes
    with the process, so a killed compose never blocks the next one."""
    if sys.platform == "win32":  # pragma: no cover - Windows cannot lock a folder: a small file in it instead
        import filelock

        with filelock.FileLock(folder / LOCK_FILE, thread_local=False):
            yield
    else:
        import fcntl

        descriptor = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock


def remove_leftovers(folder: Path) -> None:
    """Remove the staging folders of composes that were killed part-way (call with the lock held)."""
    for leftover in folder.glob(f"{STAGING_PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def _swap_in(staging: Path, build_dir: Path) -> None:
    """Replace ``build_dir`` with ``staging`` so readers see the old build or the new one, never half."""
    old = build_dir.with_name(f".build-old-{staging.name}")
    if build_dir.exists():
        build_dir.rename(old)
    staging.rename(build_dir)
    shutil.rmtree(old, ignore_errors=True)
