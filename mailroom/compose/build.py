"""What compose writes and send reads: the build folder and its manifest.

``compose`` renders each audience's version once (stage 1) and leaves the per-recipient fields as
tokens. ``send`` loads the build through ``load_build`` and never reaches back into the sources,
except to check, through the hashes in the manifest, that they have not changed since.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mailroom.errors import InputError

BUILD_DIR = "build"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1

# The closed set of per-recipient fields (docs/architecture.md, "Two-stage rendering").
# ``greeting`` is "Dear Sam" or, when the first name is empty, the list's default greeting.
RECIPIENT_FIELDS = ("greeting", "first_name", "last_name", "unsubscribe_url", "recipient_id")


def token(name: str) -> str:
    """The placeholder compose leaves in a version for a per-recipient field."""
    return f"%%{name}%%"


# The prefix of an image's src in a built version; transports swap it for ``cid:`` when embedding.
IMAGE_PREFIX = "images/"


@dataclass(frozen=True)
class BuiltImage:
    """A local image the version shows; sent as an inline (cid) attachment."""

    filename: str  # under build/images/, also the Content-ID
    content_type: str
    size: int


@dataclass(frozen=True)
class BuiltVersion:
    """One audience's rendered email, with its per-recipient tokens still in place."""

    audience: str
    html_path: Path
    text_path: Path
    html_bytes: int
    text_bytes: int
    links: tuple[str, ...]
    tokens: tuple[str, ...]
    images: tuple[BuiltImage, ...]
    language: str = ""  # BCP 47 tag ("pl"); "" in a build from before translations
    subject: str = ""  # in the version's language; "" means the build's subject
    preheader: str = ""

    def html(self) -> str:
        return self.html_path.read_text(encoding="utf-8")

    def text(self) -> str:
        return self.text_path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Build:
    """A composed newsletter, as recorded in build/manifest.json."""

    slug: str
    newsletter_dir: Path
    build_dir: Path
    subject: str
    preheader: str
    date: str
    campaign: str
    versions: dict[str, BuiltVersion]
    sources: dict[str, str]  # path relative to the project root -> sha256
    build_hash: str
    root: Path

    def image_path(self, image: BuiltImage) -> Path:
        return self.build_dir / IMAGE_PREFIX / image.filename

    def changed_sources(self) -> list[str]:
        """Sources whose content differs from what was composed (or that are gone)."""
        changed = []
        for name, digest in self.sources.items():
            rel, _, part = name.partition("#")
            path = self.root / rel
            if not path.is_file() or source_digest(path, part) != digest:
                changed.append(name)
        return changed


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The parts of school.toml that change what an email looks like. Sending settings ([smtp], [sendgrid],
# [audiences_csv]) are left out, so changing the sending pace doesn't force a new compose.
RENDERING_TABLES = ("school", "sender", "lists", "brand", "tracking", "unsubscribe", "web", "translation")
RENDERING_PART = "rendering"


def rendering_settings_sha256(path: Path) -> str:
    """A digest of school.toml's rendering tables, independent of comments and layout."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "unreadable"
    used = {name: data.get(name) for name in RENDERING_TABLES}
    return hashlib.sha256(json.dumps(used, sort_keys=True, default=str).encode()).hexdigest()


def source_digest(path: Path, part: str = "") -> str:
    """The digest recorded for a source: the whole file, or only the rendering part of school.toml."""
    return rendering_settings_sha256(path) if part == RENDERING_PART else file_sha256(path)


def load_build(newsletter_dir: Path | str, root: Path | None = None) -> Build:
    """Read ``<newsletter>/build/manifest.json``; a clear error if it is missing or damaged."""
    newsletter_dir = Path(newsletter_dir).resolve()
    build_dir = newsletter_dir / BUILD_DIR
    manifest_path = build_dir / MANIFEST
    if not manifest_path.is_file():
        raise InputError(
            "this newsletter has not been composed yet: run  python compose.py "
            f"{_display(newsletter_dir)}  first", manifest_path)
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        if data.get("manifest_version") != MANIFEST_VERSION:
            raise ValueError("unknown manifest version")
        versions = {
            name: BuiltVersion(
                audience=name,
                html_path=build_dir / v["html"],
                text_path=build_dir / v["text"],
                html_bytes=int(v["html_bytes"]),
                text_bytes=int(v["text_bytes"]),
                links=tuple(v["links"]),
                tokens=tuple(v["tokens"]),
                images=tuple(BuiltImage(i["filename"], i["content_type"], int(i["size"]))
                             for i in v["images"]),
                language=str(v.get("language", "")),
                subject=str(v.get("subject", "")),
                preheader=str(v.get("preheader", "")),
            )
            for name, v in data["versions"].items()
        }
        build = Build(
            slug=data["slug"], newsletter_dir=newsletter_dir, build_dir=build_dir,
            subject=data["subject"], preheader=data["preheader"], date=data["date"],
            campaign=data["campaign"], versions=versions, sources=dict(data["sources"]),
            build_hash=data["build_hash"], root=Path(root) if root else newsletter_dir.parent.parent,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"the build's manifest is damaged ({exc}); compose the newsletter again",
                         manifest_path) from None
    for version in versions.values():
        for path in (version.html_path, version.text_path):
            if not path.is_file():
                raise InputError("a file of the build is missing; compose the newsletter again", path)
    return build


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
