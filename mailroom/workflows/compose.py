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
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
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
    digest_build,
    file_sha256,
    load_build,
    source_digest,
)
from mailroom.compose.content import IMAGE_TYPES, Newsletter, image_size, load_newsletter
from mailroom.compose.images import PreparedImage, prepare_image, remove_stale
from mailroom.compose.render import CONTENT_WIDTH, LOGO_WIDTH, TEMPLATE_DIR, WEB_AUDIENCE, RenderedVersion, Renderer
from mailroom.errors import InputError
from mailroom.preview.page import preview_page
from mailroom.preview.review import REVIEW_PAGE, review_page
from mailroom.send.personalize import personalize, recipient_values
from mailroom.settings import Settings
from mailroom.translate.step import LanguageOutcome, languages_to_make, make_languages, readers_languages
from mailroom.translate.translator import Translator
from mailroom.versions import ALL_COMBINATIONS_UP_TO, VersionKey, combinations_needed

LOGO_NAME = "school-logo"
IMAGE_CACHE = ".cache/images"  # under the project root: pictures made to fit email, named by their source's content
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
    languages: tuple[LanguageOutcome, ...] = ()  # each reader language: how it was made, or why not
    images: tuple[PreparedImage, ...] = ()  # each picture as sent, with its size before and after


@dataclass(frozen=True)
class _Languages:
    """What the build needs to know about each version's language, and each language's outcome."""

    outcomes: tuple[LanguageOutcome, ...]
    language: dict[str, str]  # version name -> its language
    source: dict[str, Newsletter]  # version name -> the newsletter it was rendered from (English or translated)


def prepare_images(settings: Settings, newsletter: Newsletter) -> dict[Path, PreparedImage]:
    """Every picture the email shows (the logo too), made to fit email; reused from the cache when unchanged.

    Each is made for the widest the templates show it (render's CONTENT_WIDTH and LOGO_WIDTH)."""
    cache = settings.root / IMAGE_CACHE
    remove_stale(cache)
    prepared = {image.path: prepare_image(image.path, CONTENT_WIDTH, cache) for image in newsletter.images()}
    logo = settings.brand.logo
    if logo is not None and logo.suffix.lower() in IMAGE_TYPES:
        prepared[logo] = prepare_image(logo, LOGO_WIDTH, cache)
    return prepared


def _image_names(paths: list[Path], suffixes: dict[Path, str] | None = None) -> dict[Path, str]:
    """A unique file name in build/images/ for each image (two folders may hold a 'banner.png').

    ``suffixes`` gives the type each picture is sent as, when that differs from its file (a PNG photo
    sent as JPEG is 'images/photo.jpg' in the email)."""
    names: dict[Path, str] = {}
    taken: set[str] = {LOGO_NAME}
    for path in paths:
        if path in names:
            continue
        suffix = (suffixes or {}).get(path, path.suffix)
        name, counter = f"{path.stem}{suffix}", 2
        while name.rsplit(".", 1)[0] in taken or name in taken:
            name = f"{path.stem}-{counter}{suffix}"
            counter += 1
        taken.add(name)
        names[path] = name
    return names


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path.resolve())


def without_tokens(web: RenderedVersion, settings: Settings) -> RenderedVersion:
    """The web copy with no token left: it is one public page, so a token typed into newsletter.md
    (``Hello %%first_name%%``) becomes what an unknown reader would get, never a literal ``%%...%%``."""
    values = recipient_values(first_name="", last_name="", unsubscribe_url="", recipient_id="",
                              default_greeting=settings.lists[settings.archive_audience].greeting)
    return replace(web, html=personalize(web.html, values, is_html=True),
                   text=personalize(web.text, values, is_html=False), tokens=())


def renderer_for(settings: Settings, newsletter: Newsletter,
                 prepared: dict[Path, PreparedImage] | None = None) -> Renderer:
    """The renderer for this newsletter, with its images' names in the build and the logo's.

    ``prepared`` (from ``prepare_images``) names each picture by the type it is sent as."""
    suffixes = {path: image.suffix for path, image in (prepared or {}).items()}
    image_names = _image_names([image.path for image in newsletter.images()], suffixes)
    logo = settings.brand.logo
    logo_name = f"{LOGO_NAME}{suffixes.get(logo, logo.suffix.lower())}" if logo else None
    if logo is not None and logo.suffix.lower() not in IMAGE_TYPES:
        raise InputError("the logo should be a PNG, JPEG or GIF file", settings.source_file)
    logo_size = image_size(logo) if logo is not None and logo.is_file() else None
    return Renderer(settings, image_names, logo_name, logo_size)


def compose_newsletter(settings: Settings, folder: Path | str, *, languages: Sequence[str] = (),
                       translator: Translator | None = None, audiences_file: Path | None = None) -> ComposeResult:
    """Render every audience's version of the newsletter in ``folder`` and write its build.

    Each language the readers have (the audiences file's language column), or that ``languages`` adds,
    or that the school has translated (newsletter.<lang>.md) gets its own versions, named like
    ``parents.pl``; one that cannot be made is reported in the findings, and its readers get English.
    """
    folder = Path(folder)
    newsletter = load_newsletter(folder, settings.list_names())
    images = newsletter.images()
    prepared = prepare_images(settings, newsletter)
    renderer = renderer_for(settings, newsletter, prepared)
    image_names, logo_name, logo = renderer.image_names, renderer.logo_name, settings.brand.logo
    # One version per combination of the newsletter's lists a reader can be on (mailroom/versions.py).
    versions: dict[str, RenderedVersion] = {}
    audiences = newsletter.front.audiences
    occurring = None
    if len(audiences) > ALL_COMBINATIONS_UP_TO:  # too many lists for every combination: those people are on
        from mailroom.audience.lists import lists_people_are_on

        occurring = lists_people_are_on(settings)
    for lists in combinations_needed(audiences, occurring):
        slug = VersionKey(lists).slug
        versions[slug] = renderer.render(newsletter, slug)
    web = without_tokens(renderer.render(newsletter, WEB_AUDIENCE), settings)
    wanted = [*languages, *readers_languages(settings, newsletter, audiences_file)]
    outcomes = make_languages(settings, newsletter, renderer, languages_to_make(settings, newsletter, wanted),
                              translator)
    made = _Languages(tuple(outcomes), {a: settings.school.language for a in versions},
                      {a: newsletter for a in versions})
    combinations = [VersionKey.from_slug(slug).lists for slug in list(versions)]
    for outcome in outcomes:
        if outcome.newsletter is None:
            continue
        for lists in combinations:  # each combination of lists, in each language made
            slug = VersionKey(lists, outcome.language).slug
            versions[slug] = renderer.render(outcome.newsletter, VersionKey(lists).slug, outcome.localisation)
            made.language[slug] = outcome.language
            made.source[slug] = outcome.newsletter

    # Every file that went into this build, so send can refuse a build whose sources changed.
    sources = [newsletter.path, *(image.path for image in images)]
    sources += [o.newsletter.path for o in outcomes if o.newsletter is not None and o.source == "school"]
    sources += sorted(p for p in (settings.root / TEMPLATE_DIR).rglob("*") if p.is_file())
    if logo is not None:
        sources.append(logo)
    source_hashes = {_relative(p, settings.root): file_sha256(p) for p in sources}
    settings_name = f"{_relative(settings.source_file, settings.root)}#{RENDERING_PART}"
    source_hashes[settings_name] = source_digest(settings.source_file, RENDERING_PART)

    # (the file to copy into build/images/, its name there): the pictures as made to fit email.
    image_files: list[tuple[Path, str]] = [(prepared[path].file, name) for path, name in image_names.items()]
    if logo is not None and logo_name:
        image_files.append((prepared[logo].file, logo_name))

    build_dir = folder.resolve() / BUILD_DIR
    with compose_lock(folder.resolve()):
        remove_leftovers(folder.resolve())
        findings = _write_build(settings, newsletter, versions, web, image_files, source_hashes, build_dir, made)
        build = load_build(folder, settings.root)
    return ComposeResult(build=build, web_path=build_dir / "web.html", preview_path=build_dir / "preview.html",
                         findings=tuple(findings), languages=tuple(outcomes),
                         images=tuple(prepared.values()))


def _write_build(settings: Settings, newsletter: Newsletter, versions: dict[str, RenderedVersion],
                 web: RenderedVersion, image_files: list[tuple[Path, str]], source_hashes: dict[str, str],
                 build_dir: Path, made: _Languages) -> list[Finding]:
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
                lists=VersionKey.from_slug(version.audience).lists, language=made.language[audience],
                subject=made.source[audience].front.subject, preheader=made.source[audience].front.preheader,
            )
        (staging / "web.html").write_text(web.html, encoding="utf-8")
        (staging / "web.txt").write_text(web.text, encoding="utf-8")
        # A digest of every file written so far (versions, web copy, images): send checks each one.
        files = {path.relative_to(staging).as_posix(): file_sha256(path)
                 for path in sorted(staging.rglob("*")) if path.is_file()}
        front = newsletter.front
        Manifest(
            slug=newsletter.slug,
            subject=front.subject,
            preheader=front.preheader,
            date=front.date.isoformat(),
            campaign=front.campaign or newsletter.slug,
            audiences=tuple(front.audiences),
            composed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            build_hash=digest_build(files, source_hashes),
            sources=source_hashes,
            versions=manifest_versions,
            files=files,
            translations={o.language: o.summary() for o in made.outcomes},
        ).write(staging)
        # Each language's versions are checked against their own subject, preheader and text.
        findings: list[Finding] = []
        for source in dict.fromkeys(made.source.values()):
            group = {a: (v.html, v.text) for a, v in versions.items() if made.source[a] is source}
            findings += check_versions(group, subject=source.front.subject, preheader=source.front.preheader,
                                       newsletter=source, image_dir=staging / IMAGE_PREFIX.rstrip("/"))
        findings += [f for outcome in made.outcomes for f in outcome.findings]  # each names its language
        review = ""
        if made.outcomes:
            review = REVIEW_PAGE
            (staging / review).write_text(review_page(newsletter, made.outcomes, settings.school.language),
                                          encoding="utf-8")
        page = preview_page(settings, front.subject, front.preheader, versions, findings, date=front.date,
                            review_page=review)
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
