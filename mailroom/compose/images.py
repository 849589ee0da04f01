"""Pictures made to fit an email: the size they are shown at, the right way up, and nothing else in them.

A phone photo is 4000 x 3000 pixels and several megabytes, carries the place it was taken (GPS) and the
phone's details, and is often stored on its side with a tag saying which way to turn it. Every family
would download all of it, and the location of a photo of children would go with it. So each picture is:

- turned the right way up (the EXIF orientation applied to the pixels, since many mail programs ignore the tag);
- made at most twice as wide as it is shown (sharp on high-density screens, no wider), never larger;
- saved again with no metadata at all (EXIF, GPS, XMP, comments); only the colour profile is kept, which says
  how the colours should look and nothing about who or where;
- saved as JPEG (quality 82, progressive) when it is a photo; a PNG stays PNG when it has transparency or
  when JPEG would not make it much smaller (text and flat colours look wrong as JPEG).

An iPhone photo (HEIC, the camera's own format, which mail programs cannot show) is read with pillow-heif
and goes out as JPEG like any photo. The originals are never changed. Results are kept in a cache named by
the source's content, so composing again (the live preview does it on every save) reuses them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mailroom.errors import InputError

PIXELS_PER_SHOWN_PX = 2  # for sharp pictures on high-density (retina) screens
JPEG_QUALITY = 82
JPEG_IF_SMALLER_THAN = 0.5  # a PNG becomes a JPEG only when that at least halves it (it is then a photo)
CACHE_VERSION = "1"  # change when the processing changes, so old results are not reused
CACHE_KEEP_DAYS = 60  # results unused for this long are removed

CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".gif": "image/gif"}
HEIF_SUFFIXES = (".heic", ".heif")  # read, and sent as JPEG
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError,
               MemoryError, Image.DecompressionBombError)


@dataclass(frozen=True)
class PreparedImage:
    """A picture ready for the email: a file in the cache, its pixel size, and its size before and after."""

    source: Path
    file: Path
    width: int
    height: int
    source_bytes: int
    bytes: int

    @property
    def suffix(self) -> str:
        return self.file.suffix

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.file.suffix]

    def shown_size(self, widest: int) -> tuple[int, int]:
        """Width and height in CSS pixels when shown at most ``widest`` wide (never wider than its pixels)."""
        width = min(widest, self.width)
        return width, max(1, round(self.height * width / self.width))


@functools.cache
def allow_heif() -> None:
    """Let Pillow open HEIC and HEIF pictures, once one is met: loading the decoder takes longer than a whole
    compose without it. pillow-heif turns the picture upright as it reads it (HEIF keeps the turn in the
    file's own header) and clears the EXIF orientation tag, so nothing turns it twice."""
    from pillow_heif import register_heif_opener

    register_heif_opener()


def is_heif(path: Path) -> bool:
    return path.suffix.lower() in HEIF_SUFFIXES


def prepare_image(source: Path, shown_width: int, cache_dir: Path) -> PreparedImage:
    """The email-ready copy of ``source`` for a picture shown at most ``shown_width`` CSS pixels wide.

    An ``InputError`` naming the file when it is not a picture or is damaged (a half-copied file, say).
    """
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InputError(f"this picture could not be opened ({exc.strerror or exc})", _shown(source)) from None
    max_width = shown_width * PIXELS_PER_SHOWN_PX
    key = hashlib.sha256(data + f"\0{max_width}\0{CACHE_VERSION}".encode()).hexdigest()[:32]
    for suffix in CONTENT_TYPES:
        cached = cache_dir / f"{key}{suffix}"
        if cached.is_file():
            try:
                with Image.open(cached) as picture:
                    width, height = picture.size
            except _UNREADABLE:
                break  # a damaged cache entry is simply made again
            os.utime(cached)  # recently used: kept by the clean-up
            return PreparedImage(source, cached, width, height, len(data), cached.stat().st_size)
    if is_heif(source):
        allow_heif()
    encoded, suffix, (width, height) = _process(source, data, max_width)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{key}{suffix}"
    handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=".part-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(encoded)
        os.replace(temporary, target)  # two composes at once each write whole files; the last one wins
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return PreparedImage(source, target, width, height, len(data), len(encoded))


def _process(source: Path, data: bytes, max_width: int) -> tuple[bytes, str, tuple[int, int]]:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if getattr(opened, "is_animated", False):
                return _animated_gif(source, opened, data, max_width)
            opened.load()
            picture = ImageOps.exif_transpose(opened)
            was_jpeg = opened.format in ("JPEG", "HEIF")  # a camera's photo: it goes (back) as JPEG
            # The colour profile describes the file's own colours: kept for RGB and grey pictures, dropped when
            # a print-ready CMYK file is turned into RGB (its CMYK profile would then be wrong).
            icc = opened.info.get("icc_profile") if opened.mode in ("RGB", "RGBA", "L", "LA", "P") else None
    except UnidentifiedImageError:
        raise InputError("this file is not a picture mailroom can read; save it as PNG, JPEG or GIF",
                         _shown(source)) from None
    except RuntimeError:  # pillow-heif's word for a HEIC file it cannot decode (cut short, or not HEIC at all)
        if not is_heif(source):
            raise
        raise InputError("this picture is damaged or incomplete, so it cannot be put in the email; open it in a "
                         "photo editor and save it again, or choose another picture", _shown(source)) from None
    except _UNREADABLE:
        raise InputError("this picture is damaged or incomplete, so it cannot be put in the email; open it in a "
                         "photo editor and save it again, or choose another picture", _shown(source)) from None
    few_colours = picture.getcolors(256) is not None  # a graphic, which can go back to a palette after scaling
    if picture.width > max_width:
        height = max(1, round(picture.height * max_width / picture.width))
        picture = picture.resize((max_width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    size = picture.size
    if was_jpeg:
        return _jpeg(picture, icc), ".jpg", size
    png = _png(picture, icc)
    if few_colours and picture.mode != "P":
        png = min(png, _png(_palette(picture), icc), key=len)
    if _has_transparency(picture):
        return png, ".png", size
    jpeg = _jpeg(picture, icc)
    if len(jpeg) < len(png) * JPEG_IF_SMALLER_THAN:
        return jpeg, ".jpg", size
    return png, ".png", size


def _jpeg(picture: Image.Image, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    rgb = picture if picture.mode in ("RGB", "L") else picture.convert("RGB")
    options = {"icc_profile": icc} if icc else {}
    rgb.save(out, "JPEG", quality=JPEG_QUALITY, progressive=True, optimize=True, **options)
    return out.getvalue()


def _png(picture: Image.Image, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    if picture.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        picture = picture.convert("RGBA" if _has_transparency(picture) else "RGB")
    options = {"icc_profile": icc} if icc else {}
    picture.save(out, "PNG", optimize=True, **options)  # saving without exif= / pnginfo= writes no metadata
    return out.getvalue()


def _palette(picture: Image.Image) -> Image.Image:
    """At most 256 colours: a scaled logo or diagram gains in-between shades, which a palette holds well."""
    if picture.mode in ("RGBA", "LA"):
        return picture.convert("RGBA").quantize(256, method=Image.Quantize.FASTOCTREE)
    return picture.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)


def _has_transparency(picture: Image.Image) -> bool:
    if picture.mode == "P":
        return "transparency" in picture.info
    if picture.mode in ("RGBA", "LA", "PA"):
        lowest, _ = picture.getchannel("A").getextrema()
        return bool(lowest < 255)  # type: ignore[operator]
    return False


def _animated_gif(source: Path, opened: Image.Image, data: bytes, max_width: int
                  ) -> tuple[bytes, str, tuple[int, int]]:
    """An animation stays an animation: each frame scaled when too wide, and saved again without comments."""
    try:
        frames = []
        durations = []
        for index in range(getattr(opened, "n_frames", 1)):
            opened.seek(index)
            frame = opened.convert("RGBA")
            if frame.width > max_width:
                frame = frame.resize((max_width, max(1, round(frame.height * max_width / frame.width))),
                                     Image.Resampling.LANCZOS)
            frames.append(frame)
            durations.append(opened.info.get("duration", 100))
    except _UNREADABLE:
        raise InputError("this picture is damaged or incomplete, so it cannot be put in the email; open it in a "
                         "photo editor and save it again, or choose another picture", _shown(source)) from None
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=durations,
                   loop=opened.info.get("loop", 0), disposal=2, optimize=True)
    return out.getvalue(), ".gif", frames[0].size


def size_text(size: int) -> str:
    """A file size as people read it: '840 KB', '11.4 MB'."""
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


def _shown(path: Path) -> Path:
    """The path as office staff would type it: from the folder they are in, when it is under it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def remove_stale(cache_dir: Path, keep_days: int = CACHE_KEEP_DAYS) -> None:
    """Delete cached pictures no compose has used for ``keep_days`` (and half-written ones over a day old)."""
    if not cache_dir.is_dir():
        return
    now = time.time()
    for entry in cache_dir.iterdir():
        try:
            age_days = (now - entry.stat().st_mtime) / 86400
            if age_days > keep_days or (entry.name.startswith(".part-") and age_days > 1):
                entry.unlink()
        except OSError:
            continue  # another compose removed or replaced it
