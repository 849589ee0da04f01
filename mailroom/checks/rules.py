"""Preflight checks on a rendered email: errors stop a send, warnings inform.

The checks read the HTML and text that compose wrote, not the Markdown, because a template (or a
future change to the renderer) can bring in a problem the Markdown never had. Where a problem can
be traced back to newsletter.md (a link, an image, a heading, a paragraph) the finding names its line.

Contrast follows WCAG 2.1 AA: 4.5:1 for body text, 3:1 for large text (24 px, or 18.5 px bold).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailroom.checks.sourcemap import Place, SourceMap, build_source_map, normalise
from mailroom.checks.style import RGB, Scan, contrast_ratio, declarations, scan_html, visible_text
from mailroom.compose.build import IMAGE_PREFIX, SOURCE_FILE, Build
from mailroom.compose.links import DANGEROUS_SCHEMES, strip_tracking
from mailroom.errors import MailroomError
from mailroom.tokens import ANY_TOKEN, RECIPIENT_FIELDS, token

if TYPE_CHECKING:
    from mailroom.compose.content import Newsletter


ERROR = "error"
WARNING = "warning"

KB = 1024
GMAIL_CLIP_BYTES = 102 * KB
HTML_WARN_BYTES = 90 * KB
# What the README advises. Phones show about 35-45 characters of a subject and desktop inboxes 60-70, so past
# about 60 the end is cut off almost everywhere. (78 is RFC 5322's line length, which says nothing about inboxes.)
SUBJECT_MAX = 60
MIN_FONT_PX = 14.0
MIN_CONTRAST = 4.5
MIN_CONTRAST_LARGE = 3.0
IMAGE_MAX_BYTES = 1024 * KB
WORDS_PER_IMAGE = 50  # fewer words than this per picture reads as an image-only email to spam filters
MIN_IMAGES_FOR_RATIO = 3
SAME_WORDS_MIN = 0.8  # share of words the text and HTML parts must have in common

VAGUE_LINK_TEXTS = {"click here", "here", "read more", "more", "click", "this", "link", "this link",
                    "find out more", "learn more", "click this link", "go"}
_PLACEHOLDER = re.compile(r"\b(TODO|TBC|TBA|FIXME|XXX+)\b|\blorem ipsum\b|\[insert[^\]]*\]", re.IGNORECASE)
_JINJA_LEFTOVER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|\{\{|\{%")
_URL = re.compile(r"(?:https?|mailto|tel):[^\s<>()\"']+", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# A full address, or one with a path; a plain "www.school.example.org" reads well enough.
_BARE_URL = re.compile(r"^(https?://\S+|www\.\S+/\S+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One problem in one version of the newsletter (``audience`` None: the newsletter as a whole)."""

    severity: str  # ERROR or WARNING
    code: str
    message: str
    audience: str | None = None
    source_line: int | None = None
    block: str = ""  # what is on that line: "the button 'Read more'", "the heading 'Help'"

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def where(self) -> str:
        """'newsletter.md, line 12' when the finding can be traced to the source, else ''."""
        return f"{SOURCE_FILE}, line {self.source_line}" if self.source_line else ""

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


@dataclass(frozen=True)
class MergedFinding:
    """The same finding in several versions, shown once with every audience it concerns."""

    finding: Finding
    audiences: tuple[str, ...]


def merge_audiences(findings: Iterable[Finding]) -> list[MergedFinding]:
    """Findings shown once per problem, errors first, then in the order of newsletter.md."""
    merged: dict[tuple[str, str, str, int | None], list[str]] = {}
    first: dict[tuple[str, str, str, int | None], Finding] = {}
    for finding in findings:
        key = (finding.severity, finding.code, finding.message, finding.source_line)
        first.setdefault(key, finding)
        audiences = merged.setdefault(key, [])
        if finding.audience and finding.audience not in audiences:
            audiences.append(finding.audience)
    ordered = sorted(first.items(), key=lambda kv: (kv[0][0] != ERROR, kv[0][3] or 10**9))
    return [MergedFinding(finding, tuple(merged[key])) for key, finding in ordered]


def _word_list(text: str) -> list[str]:
    text = ANY_TOKEN.sub(" ", _URL.sub(" ", text))
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def _words(text: str) -> set[str]:
    return set(_word_list(text))


def _examples(words: Iterable[str], left_out: set[str], count: int = 6) -> str:
    """A few telling words (in reading order, longer than three letters) that only one part has."""
    shown: list[str] = []
    for word in words:
        if word not in left_out and len(word) > 3 and word not in shown:
            shown.append(word)
            if len(shown) == count:
                break
    return ", ".join(shown)


def _snippet(text: str, limit: int = 40) -> str:
    return f"{text[:limit].rstrip()}…" if len(text) > limit else text


# --- the checks -----------------------------------------------------------------------------------

class _Checker:
    """Collects the findings for one version; ``place`` is how each finding finds its line."""

    def __init__(self, audience: str | None, smap: SourceMap | None) -> None:
        self.audience = audience
        self.smap = smap
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str, int | None]] = set()

    def add(self, severity: str, code: str, message: str, place: Place | None = None) -> None:
        line = place.line if place else None
        key = (code, message, line)
        if key in self._seen:
            return
        self._seen.add(key)
        self.findings.append(Finding(severity, code, message, self.audience, line, place.what if place else ""))

    def where(self, lookup: str, *args: str, **kwargs: bool) -> Place | None:
        if self.smap is None:
            return None
        return getattr(self.smap, lookup)(*args, **kwargs)


def check_envelope(subject: str, preheader: str, newsletter: Newsletter | None = None) -> list[Finding]:
    """The subject and preheader, which every version shares."""
    checker = _Checker(None, None)

    def front_line(name: str) -> Place | None:
        if newsletter is None:
            return None
        try:
            lines = newsletter.path.read_text(encoding="utf-8-sig").split("\n")
        except OSError:
            return None
        for number, line in enumerate(lines, start=1):
            if line.strip().lower().startswith(f"{name}:"):
                return Place(number, f"the {name}")
        return None

    if not subject.strip():
        checker.add(ERROR, "no-subject", "the newsletter has no subject; inboxes would show it as '(no subject)'",
                    front_line("subject"))
    elif len(subject) > SUBJECT_MAX:
        checker.add(WARNING, "subject-long",
                    f"the subject is {len(subject)} characters long; most inboxes show only about the first "
                    f"{SUBJECT_MAX} (phones fewer), so put what matters first", front_line("subject"))
    if not preheader.strip():
        checker.add(WARNING, "no-preheader",
                    "there is no preheader (the line inboxes show after the subject); without one they show "
                    "the first words of the email", front_line("preheader"))
    return checker.findings


def check_version(html: str, text: str, *, audience: str | None, preheader: str = "",
                  newsletter: Newsletter | None = None, image_dir: Path | None = None) -> list[Finding]:
    """Everything wrong with one audience's rendered version (``html`` and ``text`` with tokens in place).

    ``newsletter`` lets findings name their line in newsletter.md; ``image_dir`` is the build's
    images folder, where every local image must be.
    """
    smap = build_source_map(newsletter, audience) if newsletter is not None and audience else None
    check = _Checker(audience, smap)
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        check.add(ERROR, "html-too-big",
                  f"the email is {size / KB:.0f} KB; Gmail cuts off emails over 102 KB, hiding the end of the "
                  "newsletter and its unsubscribe link. Shorten it or move some of it to the school website")
    elif size > HTML_WARN_BYTES:
        check.add(WARNING, "html-large",
                  f"the email is {size / KB:.0f} KB; Gmail cuts off emails over 102 KB, so there is little room left")

    _, scan = scan_html(html)
    _check_leftovers(check, text, scan)
    _check_links(check, scan)
    _check_images(check, scan, image_dir)
    _check_text_style(check, scan)
    _check_headings(check, scan)
    _check_placeholders(check, scan, text)
    _check_unsubscribe(check, scan, text)
    _check_preheader(check, scan, preheader)
    _check_parts_agree(check, scan, text)
    return check.findings


def _check_leftovers(check: _Checker, text: str, scan: Scan) -> None:
    visible = " ".join([*(run.text for run in scan.runs), *scan.hidden_text, scan.title])
    attributes = " ".join(html_lib.unescape(str(v)) for el in scan.links + scan.images for v in el.attrib.values())
    for part in (visible, attributes, text):
        for match in _JINJA_LEFTOVER.finditer(part):
            found = match.group(0)
            if check.smap is not None and check.smap.written_escaped(found):
                continue  # written as \{{ in newsletter.md: braces meant to be shown
            check.add(ERROR, "leftover",
                      f"'{_snippet(found)}' is left in the email: template code that was never filled in",
                      check.where("raw", found))
        for match in ANY_TOKEN.finditer(part):
            if match.group(1) not in RECIPIENT_FIELDS:
                found = match.group(0)
                fields = ", ".join(token(name) for name in RECIPIENT_FIELDS)
                check.add(ERROR, "leftover",
                          f"'{found}' is not a field mailroom fills in (the fields are {fields})",
                          check.where("raw", found))


def _check_links(check: _Checker, scan: Scan) -> None:
    for link in scan.links:
        href = html_lib.unescape(link.get("href", ""))
        # Browsers ignore control characters and spaces inside a scheme ("java\tscript:"), so do the same.
        compact = re.sub(r"[\x00-\x20]", "", href).lower()
        scheme = compact.split(":", 1)[0] if ":" in compact else ""
        place = check.where("link", href)
        text = visible_text(link)
        label = link.get("aria-label", "").strip() or link.get("title", "").strip()
        if scheme in DANGEROUS_SCHEMES:
            check.add(ERROR, "dangerous-link",
                      f"a {scheme}: link is not allowed in an email (it could run code or hide content): "
                      f"'{_snippet(href, 60)}'", place)
            continue
        if not text and not label:
            check.add(ERROR, "link-no-text",
                      f"the link to {_snippet(strip_tracking(href), 70)} has no text, so nobody can tell where it "
                      "goes", place)
            continue
        if scheme == "http":
            check.add(WARNING, "insecure-link",
                      f"the link to {_snippet(strip_tracking(href), 70)} starts with http://; use https:// "
                      "so the address is not flagged as unsafe", place)
        shown = (text or label).strip()
        if shown.lower().strip(" .!:…") in VAGUE_LINK_TEXTS:
            check.add(WARNING, "vague-link-text",
                      f"the link text '{shown}' does not say where it goes; screen-reader users hear links "
                      "on their own, so write what the reader will find, like 'Read the online-safety guide'",
                      place or check.where("link_text", shown))
        elif _BARE_URL.match(shown):
            check.add(WARNING, "vague-link-text",
                      f"the link text is a bare web address ({_snippet(shown, 50)}); write what the reader "
                      "will find there instead", place or check.where("link_text", shown))


def _is_local(src: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", src, re.IGNORECASE) and not src.startswith("//")


def _check_images(check: _Checker, scan: Scan, image_dir: Path | None) -> None:
    for image in scan.images:
        src = html_lib.unescape(image.get("src", ""))
        alt = image.get("alt")
        place = check.where("image", alt or "", src)
        decorative = image.get("role") in ("presentation", "none")
        if (alt is None or not alt.strip()) and not decorative:
            check.add(ERROR, "image-no-alt",
                      f"the image '{Path(src).name or src}' has no alt text; screen readers, and email programs "
                      "that hide pictures, cannot say what it shows", place)
        if not image.get("width") and "width" not in declarations(image.get("style", "")):
            check.add(WARNING, "image-no-width",
                      f"the image '{Path(src).name or src}' has no width, so Outlook shows it at its full size",
                      place)
        if image_dir is None or not _is_local(src):
            continue
        name = src[len(IMAGE_PREFIX):] if src.startswith(IMAGE_PREFIX) else None
        path = image_dir / name if name and "/" not in name else None
        if path is None or not path.is_file():
            check.add(ERROR, "image-missing",
                      f"the image '{src}' is not in the build's images folder, so it would show as a broken picture",
                      place)
        elif path.stat().st_size > IMAGE_MAX_BYTES:
            check.add(WARNING, "image-too-big",
                      f"the image '{name}' is {path.stat().st_size / KB / KB:.1f} MB even made to fit email; pictures "
                      "over 1 MB are slow to load on phones, so crop it or choose a simpler one", place)
    words = sum(len(_WORD.findall(run.text)) for run in scan.runs)
    pictures = len(scan.images)
    if pictures >= MIN_IMAGES_FOR_RATIO and words < WORDS_PER_IMAGE * pictures:
        check.add(WARNING, "mostly-images",
                  f"the email has {pictures} pictures and only {words} words of text; spam filters distrust "
                  f"emails that are mostly pictures (aim for at least {WORDS_PER_IMAGE} words per picture)")


def _check_text_style(check: _Checker, scan: Scan) -> None:
    # Text styled the same way on the same line (or in the same template) is one finding, not one per run.
    contrast: dict[tuple[str, str, float, float, int | None], list[str]] = {}  # colours, ratio, needed, line
    small: dict[tuple[float, int | None], list[str]] = {}  # font size, line
    places: dict[tuple[object, ...], Place | None] = {}
    for run in scan.runs:
        style = run.style
        place = check.where("text", run.text)
        line = place.line if place else None
        large = style.font_px >= 24 or (style.bold and style.font_px >= 18.5)
        needed = MIN_CONTRAST_LARGE if large else MIN_CONTRAST
        ratio = contrast_ratio(style.color, style.background)
        if ratio < needed:
            contrast_key = (_hex(style.color), _hex(style.background), round(ratio, 1), needed, line)
            contrast.setdefault(contrast_key, []).append(run.text)
            places.setdefault(("low-contrast", *contrast_key), place)
        if style.font_px < MIN_FONT_PX:
            small_key = (style.font_px, line)
            small.setdefault(small_key, []).append(run.text)
            places.setdefault(("small-text", *small_key), place)
    for contrast_key, texts in contrast.items():
        fg, bg, ratio, needed, _ = contrast_key
        check.add(WARNING, "low-contrast",
                  f"the text '{_snippet(texts[0])}'{_more(texts)} is hard to read: {fg} on {bg} has a contrast of "
                  f"{ratio:.1f}:1, and at least {needed:g}:1 is needed", places[("low-contrast", *contrast_key)])
    for small_key, texts in small.items():
        check.add(WARNING, "small-text",
                  f"the text '{_snippet(texts[0])}'{_more(texts)} is {small_key[0]:g} px; use at least "
                  f"{MIN_FONT_PX:g} px so it can be read on a phone", places[("small-text", *small_key)])


def _more(texts: list[str]) -> str:
    return f" (and {len(texts) - 1} more like it)" if len(texts) > 1 else ""


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _check_headings(check: _Checker, scan: Scan) -> None:
    previous = 0
    for heading in scan.headings:
        level = int(heading.tag[1])
        text = visible_text(heading)
        if previous and level > previous + 1:
            check.add(WARNING, "heading-skip",
                      f"the heading '{_snippet(text)}' jumps from level {previous} to level {level}; screen-reader "
                      f"users find their way by heading levels, so make it level {previous + 1} "
                      f"({'#' * (previous + 1)} in newsletter.md)", check.where("heading", text))
        previous = level
    if not any(h.tag == "h1" for h in scan.headings):
        check.add(WARNING, "no-h1", "the email has no main heading; start the newsletter with a '# ' heading")


def _check_placeholders(check: _Checker, scan: Scan, text: str) -> None:
    alts = [image.get("alt", "") for image in scan.images]
    for part in [run.text for run in scan.runs] + alts + [text]:
        for match in _PLACEHOLDER.finditer(part):
            found = match.group(0)
            if found.isalpha() and found.upper() in ("TODO", "TBC", "TBA", "FIXME") and not found.isupper():
                continue  # "todo" as a word in a sentence is not a placeholder
            place = check.where("raw", found, ignore_case=True)
            check.add(WARNING, "placeholder",
                      f"placeholder text '{found}' is still in the newsletter", place)


def _check_unsubscribe(check: _Checker, scan: Scan, text: str) -> None:
    marker = token("unsubscribe_url")
    has_link = any(marker in html_lib.unescape(link.get("href", "")) or "unsubscribe" in link.get("href", "").lower()
                   or "unsubscribe" in visible_text(link).lower() for link in scan.links)
    if not has_link:
        check.add(ERROR, "no-unsubscribe",
                  "the email has no unsubscribe link; the law requires one in every newsletter, and mail "
                  "services bin emails without one")
    elif not (marker in text or any("unsubscribe" in url.lower() for url in _URL.findall(text))
              or re.search(r"unsubscribe[^\n]*?(https?://|mailto:)", text, re.IGNORECASE)):
        check.add(ERROR, "no-unsubscribe",
                  "the plain-text part has no unsubscribe link; people whose email shows only text could not stop it")


def _check_preheader(check: _Checker, scan: Scan, preheader: str) -> None:
    wanted = normalise(preheader)[:40]
    if wanted and not any(wanted in hidden for hidden in scan.hidden_text):
        check.add(WARNING, "no-preheader",
                  "the email does not carry the preheader (the line inboxes show after the subject); "
                  "the templates should have the hidden preheader (see templates/base.mjml.j2)")


def _check_parts_agree(check: _Checker, scan: Scan, text: str) -> None:
    html_words = set().union(*(_words(run.text) for run in scan.runs), *(_words(i.get("alt", "")) for i in scan.images))
    text_words = _words(text)
    if not html_words or not text_words:
        if html_words or text_words:
            check.add(WARNING, "parts-differ", "one of the plain-text and HTML parts is empty")
        return
    common = html_words & text_words
    share = len(common) / len(html_words | text_words)
    if share < SAME_WORDS_MIN:
        html_order = [w for run in scan.runs for w in _word_list(run.text)]
        only_html = _examples(html_order, text_words)
        only_text = _examples(_word_list(text), html_words)
        detail = "; ".join(part for part in (f"only in the HTML: {only_html}" if only_html else "",
                                             f"only in the text: {only_text}" if only_text else "") if part)
        detail = f"; {detail}" if detail else ""
        check.add(WARNING, "parts-differ",
                  f"the plain-text and HTML parts say different things (only {share:.0%} of their words are "
                  f"shared{detail}); spam filters notice this", None)


# --- whole builds ---------------------------------------------------------------------------------

def check_versions(versions: Mapping[str, tuple[str, str]], *, subject: str, preheader: str,
                   newsletter: Newsletter | None = None, image_dir: Path | None = None) -> list[Finding]:
    """The findings for every audience's (html, text), plus the subject and preheader once."""
    findings = check_envelope(subject, preheader, newsletter)
    if newsletter is not None:
        findings += [Finding(WARNING, w.code, w.message, None, w.line) for w in newsletter.warnings]
    for audience, (html, text) in versions.items():
        findings += check_version(html, text, audience=audience, preheader=preheader, newsletter=newsletter,
                                  image_dir=image_dir)
    return findings


def check_build(build: Build, newsletter: Newsletter | None) -> list[Finding]:
    """The findings for a composed build, read from its files; ``newsletter`` maps them to lines."""
    versions = {name: (version.html(), version.text()) for name, version in build.versions.items()}
    return check_versions(versions, subject=build.subject, preheader=build.preheader, newsletter=newsletter,
                          image_dir=build.build_dir / IMAGE_PREFIX.rstrip("/"))


def newsletter_for_build(build: Build) -> Newsletter | None:
    """The newsletter behind a build, for line numbers; None if it no longer reads cleanly."""
    from mailroom.compose.content import load_newsletter  # the Markdown parser: only when lines are wanted

    try:
        return load_newsletter(build.newsletter_dir, tuple(build.versions))
    except MailroomError:
        return None


def errors_for_build(build: Build) -> list[Finding]:
    """The findings that stop a send (send.py refuses while this is not empty)."""
    return [f for f in check_build(build, newsletter_for_build(build)) if f.is_error]


def has_errors(findings: Sequence[Finding]) -> bool:
    return any(f.is_error for f in findings)
