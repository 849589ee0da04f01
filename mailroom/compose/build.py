"""What compose writes and send reads: the build folder and its manifest.

``compose`` renders each audience's version once (stage 1) and leaves the per-recipient fields as
tokens. ``send`` loads the build through ``load_build`` and never reaches back into the sources,
except to check, through the hashes in the manifest, that they have not changed since.

The manifest records a sha256 of every file of the build (``files``), and ``build_hash`` is made from
those digests and the sources' digests (``digest_build``). ``freeze_build`` reads the versions and their
images into memory once, checks every byte against those digests and the digests against ``build_hash``:
a send carries these bytes from then on and never reads ``build/`` again, so a compose (the live
preview recomposes on every save) or a hand edit while it runs cannot change what goes out.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mailroom.errors import BuildChanged, InputError
from mailroom.versions import VersionKey

BUILD_DIR = "build"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1

# The prefix of an image's src in a built version; transports swap it for ``cid:`` when embedding.
IMAGE_PREFIX = "images/"

SOURCE_FILE = "newsletter.md"  # the one source file a newsletter folder is written in


@dataclass(frozen=True)
class BuiltImage:
    """A local image the version shows; sent as an inline (cid) attachment."""

    filename: str  # under build/images/, also the Content-ID
    content_type: str
    size: int


@dataclass(frozen=True)
class ManifestVersion:
    """What the manifest records about one audience's version (file names are relative to build/)."""

    html: str
    text: str
    html_bytes: int
    text_bytes: int
    links: tuple[str, ...]
    tokens: tuple[str, ...]
    images: tuple[BuiltImage, ...]
    lists: tuple[str, ...] = ()  # the lists whose readers get it; () in a build from before versions had them
    language: str = ""  # BCP 47 tag ("pl"); "" in a build from before translations
    subject: str = ""  # in the version's language; "" means the manifest's subject
    preheader: str = ""


@dataclass(frozen=True)
class Manifest:
    """build/manifest.json: compose writes it with ``write`` and send reads it with ``read``, nothing else."""

    slug: str
    subject: str
    preheader: str
    date: str  # ISO, as in the front matter
    campaign: str
    audiences: tuple[str, ...]
    composed_at: str  # ISO UTC timestamp, for people reading the file
    build_hash: str  # digest_build(files, sources)
    sources: dict[str, str]  # path relative to the project root (maybe "#part") -> sha256
    versions: dict[str, ManifestVersion]
    # path relative to build/ (e.g. "versions/parents.tokens.html", "images/logo.png") -> sha256 of its bytes;
    # every file of the build but the manifest and the preview page. Empty in a manifest from an older mailroom.
    files: dict[str, str] = field(default_factory=dict)
    # Each reader language: how it was made (the school's translation, an engine) or why not, and the
    # characters sent to the engine. For people reading the file and the preview; send does not use it.
    translations: dict[str, dict[str, object]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        return {"manifest_version": MANIFEST_VERSION, **data, "audiences": list(self.audiences)}

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """The manifest in ``data``; ValueError, KeyError or TypeError when it is not one this code wrote."""
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        if data.get("manifest_version") != MANIFEST_VERSION:
            raise ValueError("unknown manifest version")
        versions = {
            str(name): ManifestVersion(
                html=_text(v["html"]), text=_text(v["text"]),
                html_bytes=int(v["html_bytes"]), text_bytes=int(v["text_bytes"]),
                links=tuple(map(_text, v["links"])), tokens=tuple(map(_text, v["tokens"])),
                images=tuple(BuiltImage(_text(i["filename"]), _text(i["content_type"]), int(i["size"]))
                             for i in v["images"]),
                lists=tuple(map(_text, v.get("lists", []))), language=_text(v.get("language", "")),
                subject=_text(v.get("subject", "")), preheader=_text(v.get("preheader", "")),
            )
            for name, v in data["versions"].items()
        }
        return cls(
            slug=_text(data["slug"]), subject=_text(data["subject"]), preheader=_text(data["preheader"]),
            date=_text(data["date"]), campaign=_text(data["campaign"]),
            # Older builds (and hand-made test builds) may leave these two out.
            audiences=tuple(map(_text, data.get("audiences", list(versions)))),
            composed_at=_text(data.get("composed_at", "")),
            build_hash=_text(data["build_hash"]),
            sources={_text(k): _text(v) for k, v in data["sources"].items()},
            versions=versions,
            files={_text(k): _text(v) for k, v in data.get("files", {}).items()},
            translations=dict(data.get("translations", {})),
        )

    def write(self, build_dir: Path) -> Path:
        path = build_dir / MANIFEST
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, build_dir: Path) -> Manifest:
        """The manifest in ``build_dir``; an InputError naming the file when it is missing or damaged."""
        path = build_dir / MANIFEST
        if not path.is_file():
            newsletter_dir = build_dir.parent
            raise InputError(
                "this newsletter has not been composed yet: run  python compose.py "
                f"{_display(newsletter_dir)}  first", path)
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"the build's manifest is damaged ({exc}); compose the newsletter again",
                             path) from None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {value!r}")
    return value


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
    lists: tuple[str, ...] = ()  # the lists whose sections it holds, in the newsletter's order
    language: str = ""  # BCP 47 tag ("pl"); "" in a build from before translations
    subject: str = ""  # in the version's language; "" means the build's subject
    preheader: str = ""

    def html(self) -> str:
        return self.html_path.read_text(encoding="utf-8")

    def text(self) -> str:
        return self.text_path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Build:
    """A composed newsletter: its manifest, with the versions' files located on disk."""

    manifest: Manifest
    newsletter_dir: Path
    build_dir: Path
    versions: dict[str, BuiltVersion]
    root: Path

    @property
    def slug(self) -> str:
        return self.manifest.slug

    @property
    def subject(self) -> str:
        return self.manifest.subject

    @property
    def preheader(self) -> str:
        return self.manifest.preheader

    @property
    def date(self) -> str:
        return self.manifest.date

    @property
    def campaign(self) -> str:
        return self.manifest.campaign

    @property
    def sources(self) -> dict[str, str]:
        return self.manifest.sources

    @property
    def build_hash(self) -> str:
        return self.manifest.build_hash

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
_LIST_SOURCE_KEYS = ("file", "columns")  # [lists.X] keys that say where the people are, not how the email looks


def rendering_settings_sha256(path: Path) -> str:
    """A digest of school.toml's rendering tables, independent of comments and layout."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "unreadable"
    used = {name: data.get(name) for name in RENDERING_TABLES}
    lists = used.get("lists")
    if isinstance(lists, dict):  # where a list's people come from does not change how its email looks
        used["lists"] = {name: {k: v for k, v in table.items() if k not in _LIST_SOURCE_KEYS}
                         if isinstance(table, dict) else table for name, table in lists.items()}
    return hashlib.sha256(json.dumps(used, sort_keys=True, default=str).encode()).hexdigest()


def source_digest(path: Path, part: str = "") -> str:
    """The digest recorded for a source: the whole file, or only the rendering part of school.toml."""
    return rendering_settings_sha256(path) if part == RENDERING_PART else file_sha256(path)


def load_build(newsletter_dir: Path | str, root: Path | None = None) -> Build:
    """Read ``<newsletter>/build/``; a clear error if its manifest is missing or damaged, or a file is gone."""
    newsletter_dir = Path(newsletter_dir).resolve()
    build_dir = newsletter_dir / BUILD_DIR
    manifest = Manifest.read(build_dir)
    versions = {
        name: BuiltVersion(audience=name, html_path=build_dir / v.html, text_path=build_dir / v.text,
                           html_bytes=v.html_bytes, text_bytes=v.text_bytes, links=v.links, tokens=v.tokens,
                           images=v.images, lists=v.lists or VersionKey.from_slug(name).lists,
                           language=v.language, subject=v.subject, preheader=v.preheader)
        for name, v in manifest.versions.items()
    }
    for version in versions.values():
        for path in (version.html_path, version.text_path):
            if not path.is_file():
                raise InputError("a file of the build is missing; compose the newsletter again", path)
    return Build(manifest=manifest, newsletter_dir=newsletter_dir, build_dir=build_dir, versions=versions,
                 root=Path(root) if root else newsletter_dir.parent.parent)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- the build as a send carries it ------------------------------------------------------------------

def digest_build(files: Mapping[str, str], sources: Mapping[str, str]) -> str:
    """``build_hash``: one sha256 over every output file's digest and every source's digest.

    Compose makes it from what it wrote; a send makes it again from the digests of the bytes it read,
    so the hash a test send records and the live send compares is a hash of exactly those bytes.
    """
    digest = hashlib.sha256()
    for name, value in sorted(files.items()):
        digest.update(f"file {name}={value}\n".encode())
    for name, value in sorted(sources.items()):
        digest.update(f"source {name}={value}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class FrozenVersion:
    """One version's HTML, text and images, read once and checked against the manifest."""

    audience: str  # the version's slug ("parents", "parents.pl")
    html: str
    text: str
    images: tuple[tuple[BuiltImage, bytes], ...]
    language: str = ""  # as in the manifest: "" in a build from before translations
    subject: str = ""  # in the version's language; "" means the build's subject
    preheader: str = ""


@dataclass(frozen=True)
class FrozenBuild:
    """What a send sends: the build's versions in memory, verified; ``build/`` is not read again."""

    build: Build
    versions: dict[str, FrozenVersion]
    build_hash: str  # digest_build over the verified files' digests (equal to the manifest's)

    @property
    def slug(self) -> str:
        return self.build.slug

    @property
    def subject(self) -> str:
        return self.build.subject

    @property
    def composed_at(self) -> str:
        return self.build.manifest.composed_at

    @property
    def newsletter_dir(self) -> Path:
        return self.build.newsletter_dir


def freeze_build(build: Build, audiences: Iterable[str] | None = None) -> FrozenBuild:
    """Read ``audiences``' versions (default: all) and their images, each checked against the manifest.

    A file that differs from its recorded sha256, is missing, or a manifest whose digests do not add
    up to its ``build_hash`` is a ``BuildChanged`` naming the file: compose again.
    """
    manifest, build_dir = build.manifest, build.build_dir
    shown = Path(_display(build_dir))  # files are named as the office would type them
    compose_again = (f"compose the newsletter again (python compose.py {_display(build.newsletter_dir)}), "
                     "check the preview, then send")
    if not manifest.files:
        raise BuildChanged("this build was composed by an older version of mailroom, which did not record what "
                           f"each file should hold, so mailroom cannot check it before sending; {compose_again}",
                           shown / MANIFEST)
    if digest_build(manifest.files, manifest.sources) != manifest.build_hash:
        raise BuildChanged(f"the manifest was changed after the newsletter was composed; {compose_again}",
                           shown / MANIFEST)
    read: dict[str, bytes] = {}

    def verified(name: str) -> bytes:
        if name not in read:
            path = build_dir / name
            expected = manifest.files.get(name)
            try:
                data = path.read_bytes()
            except OSError:
                raise BuildChanged(f"this file of the build is missing or cannot be read; {compose_again}",
                                   shown / name) from None
            if expected is None or hashlib.sha256(data).hexdigest() != expected:
                raise BuildChanged("this file was changed after the newsletter was composed, so it is not what "
                                   f"the checks (and any test send) saw; {compose_again}", shown / name)
            read[name] = data
        return read[name]

    versions: dict[str, FrozenVersion] = {}
    for audience in (build.versions if audiences is None else audiences):
        entry = manifest.versions.get(audience)
        if entry is None:
            continue  # the plan reports a list with no version; nothing to read for it
        try:
            html, text = verified(entry.html).decode("utf-8"), verified(entry.text).decode("utf-8")
        except UnicodeDecodeError:
            raise BuildChanged(f"a version of the build is not UTF-8 text; {compose_again}",
                               shown / entry.html) from None
        images = tuple((image, verified(f"{IMAGE_PREFIX}{image.filename}")) for image in entry.images)
        versions[audience] = FrozenVersion(audience=audience, html=html, text=text, images=images,
                                           language=entry.language, subject=entry.subject, preheader=entry.preheader)
    return FrozenBuild(build=build, versions=versions, build_hash=manifest.build_hash)
