"""Start next week's newsletter from the latest one: the way office staff already work, without the slips.

Copying last week's folder by hand keeps last week's date, subject, campaign (so two weeks' clicks are
counted together) and build (which send would refuse, but which confuses). This makes the copy right:

- a new folder under newsletters/, named by date and topic (``2024-11-15-christmas-fair``);
- ``newsletter.md`` with the new date, the topic as its subject, a campaign of its own (the folder's
  name) and no preheader (it then follows the new first paragraph); the text stays, to be written over;
- the pictures in ``images/``, since a banner or logo usually carries on; no build.

The date is a week after the latest newsletter's, moved on by whole weeks if that is already past.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from mailroom.compose.content import SOURCE_FILE
from mailroom.errors import InputError

IMAGES_DIR = "images"
SLUG_MAX = 50
_FIELD = re.compile(r"^(?P<key>[A-Za-z_]+)\s*:(?P<value>.*)$")
PREHEADER_HINT = ("# preheader: the grey line inboxes show after the subject (optional: without it, the start of "
                  "the first paragraph is used)")


@dataclass(frozen=True)
class NewNewsletter:
    """What was made, for the message that says where to start writing."""

    folder: Path
    copied_from: Path
    date: dt.date
    subject: str
    campaign: str
    pictures: tuple[str, ...]

    @property
    def source(self) -> Path:
        return self.folder / SOURCE_FILE


def topic_slug(topic: str) -> str:
    """'Christmas Fair & Nativity!' -> 'christmas-fair-nativity'; accents dropped so the folder name types easily."""
    plain = unicodedata.normalize("NFKD", topic).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    return slug[:SLUG_MAX].rstrip("-")


def start_next_newsletter(newsletters_dir: Path, topic: str, *, today: dt.date,
                          date: dt.date | None = None) -> NewNewsletter:
    """Make next week's newsletter folder from the latest one in ``newsletters_dir``."""
    topic = " ".join(topic.split())
    slug = topic_slug(topic)
    if not slug:
        raise InputError("the topic needs some letters or digits, like: Christmas fair")
    latest, latest_date = latest_newsletter(newsletters_dir)
    if date is None:
        date = latest_date + dt.timedelta(days=7)
        while date < today:
            date += dt.timedelta(days=7)
    folder = newsletters_dir / f"{date.isoformat()}-{slug}"
    if folder.exists():
        raise InputError("there is already a newsletter folder with this name; choose another topic or date, or "
                         "carry on writing in that one", folder)
    source = (latest / SOURCE_FILE).read_text(encoding="utf-8-sig")
    text = _new_front_matter(source, subject=topic, date=date, campaign=folder.name)
    pictures: list[str] = []
    staging = newsletters_dir / f".new-{folder.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        if (latest / IMAGES_DIR).is_dir():
            shutil.copytree(latest / IMAGES_DIR, staging / IMAGES_DIR,
                            ignore=shutil.ignore_patterns(".*", "Thumbs.db", "desktop.ini"))
            pictures = sorted(p.name for p in (staging / IMAGES_DIR).iterdir() if p.is_file())
        else:
            (staging / IMAGES_DIR).mkdir()
        (staging / SOURCE_FILE).write_text(text, encoding="utf-8")
        staging.rename(folder)  # the folder appears whole, or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return NewNewsletter(folder=folder, copied_from=latest, date=date, subject=topic, campaign=folder.name,
                         pictures=tuple(pictures))


def latest_newsletter(newsletters_dir: Path) -> tuple[Path, dt.date]:
    """The newsletter with the latest date in its front matter (its folder's name breaks a tie)."""
    if not newsletters_dir.is_dir():
        raise InputError("there is no newsletters folder here; run this from the project folder (the one with "
                         "school.toml)", newsletters_dir)
    found: list[tuple[dt.date, str, Path]] = []
    for folder in newsletters_dir.iterdir():
        source = folder / SOURCE_FILE
        if folder.name.startswith(".") or not source.is_file():
            continue
        when = _front_matter_date(source)
        if when is not None:
            found.append((when, folder.name, folder))
    if not found:
        raise InputError("there is no newsletter to start from: make the first one by hand (a folder with a "
                         "newsletter.md, as the README shows)", newsletters_dir)
    when, _, folder = max(found)
    return folder, when


def _front_matter_date(source: Path) -> dt.date | None:
    try:
        lines = source.read_text(encoding="utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        match = _FIELD.match(line.strip())
        if match and match.group("key").lower() == "date":
            try:
                return dt.date.fromisoformat(match.group("value").strip().strip("\"'"))
            except ValueError:
                return None
    return None


def _new_front_matter(source: str, *, subject: str, date: dt.date, campaign: str) -> str:
    """Last week's newsletter.md with this week's subject, date and campaign, and its preheader taken out."""
    lines = source.replace("\r\n", "\n").split("\n")
    end = next((n for n, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if not lines or lines[0].strip() != "---" or end is None:
        raise InputError("the latest newsletter's front matter (between two '---' lines) could not be read, so "
                         "it cannot be copied; fix it first")
    front: list[str] = []
    written: set[str] = set()
    values = {"subject": _quoted(subject), "date": date.isoformat(), "campaign": campaign}
    for line in lines[1:end]:
        match = _FIELD.match(line.strip())
        key = match.group("key").lower() if match else ""
        if key in values:
            front.append(f"{key}: {values[key]}")
            written.add(key)
        elif key == "preheader":
            front.append(PREHEADER_HINT)
            written.add(key)
        else:
            front.append(line)
    for key in ("subject", "date", "campaign"):
        if key not in written:
            front.append(f"{key}: {values[key]}")
    if "preheader" not in written:
        front.append(PREHEADER_HINT)
    return "\n".join(["---", *front, *lines[end:]])


def _quoted(value: str) -> str:
    """The subject as a front-matter value (quoted when it starts or ends with a quote mark or a space)."""
    return f'"{value}"' if value[:1] in "\"'" or value[-1:] in "\"'" else value
