"""Pictures made to fit email: a 12-megapixel phone photo with its GPS position goes out small, upright and
without metadata; damaged pictures are an error naming the file; the originals are never touched."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest
from PIL import Image

from mailroom.compose import images as images_module
from mailroom.compose.images import PIXELS_PER_SHOWN_PX, prepare_image
from mailroom.errors import InputError
from mailroom.workflows.compose import ComposeResult
from tests.pictures import GPS_IFD, HEIC_PHOTO, gif_bytes, phone_photo, truncated, write_png
from tests.projects import REPO, compose_copy, make_project
from tests.send_project import environ, send_py, write_audiences

PHOTO_LINE = "![Year 6 at the science fair, holding their volcano model](images/science-fair.jpg)"
DAMAGED = ("this picture is damaged or incomplete, so it cannot be put in the email; open it in a photo editor "
           "and save it again, or choose another picture")


def with_picture(folder: Path, name: str, data: bytes, alt: str = "The science fair") -> Path:
    """The sample newsletter with one more picture, after its first heading."""
    (folder / "images" / name).write_bytes(data)
    source = folder / "newsletter.md"
    text = source.read_text(encoding="utf-8")
    heading_end = text.index("\n", text.index("\n# ") + 1)
    source.write_text(text[:heading_end] + f"\n\n![{alt}](images/{name})\n" + text[heading_end:], encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def photo_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    folder = make_project(tmp_path_factory.mktemp("photo") / "school")
    data = phone_photo()
    with_picture(folder, "science-fair.jpg", data, "Year 6 at the science fair, holding their volcano model")
    return folder, data


@pytest.fixture(scope="module")
def photo_composed(photo_project: tuple[Path, bytes]) -> tuple[Path, bytes, ComposeResult]:
    """The photo's project composed once for this module's tests, which read the build and never change it."""
    folder, data = photo_project
    return folder, data, compose_copy(folder)


def test_the_phone_photo_is_sent_small_upright_and_without_metadata(
        photo_composed: tuple[Path, bytes, ComposeResult]) -> None:
    folder, original, result = photo_composed
    sent = folder / "build" / "images" / "science-fair.jpg"
    with Image.open(sent) as picture:
        # Stored 4000 x 3000 on its side with "turn 90° clockwise": shown upright it is 3000 x 4000, so
        # at 1104 px wide (twice the 552 px it is shown at) it is 1472 px tall.
        assert picture.size == (552 * PIXELS_PER_SHOWN_PX, 1472)
        assert picture.format == "JPEG"
        assert picture.info.get("progressive") == 1
        assert not picture.getexif()  # no orientation tag, camera make or GPS
        assert not picture.getexif().get_ifd(GPS_IFD)
        assert "exif" not in picture.info and "xmp" not in picture.info and "comment" not in picture.info
        # The red corner, stored top-left, is top-right once turned: the pixels were turned, not tagged.
        red, green, blue = picture.convert("RGB").getpixel((picture.width - 20, 20))
        assert red > 180 and green < 80 and blue < 80
        assert picture.convert("RGB").getpixel((20, 20))[0] < 250 or picture.convert("RGB").getpixel((20, 20))[1] > 80
    assert sent.stat().st_size < 600 * 1024
    assert (folder / "images" / "science-fair.jpg").read_bytes() == original  # the original is untouched
    photo = next(image for image in result.images if image.source.name == "science-fair.jpg")
    assert (photo.source_bytes, photo.bytes) == (len(original), sent.stat().st_size)
    assert photo.bytes < photo.source_bytes / 4


def test_every_img_has_pixel_width_and_height(photo_composed: tuple[Path, bytes, ComposeResult]) -> None:
    folder, _, _ = photo_composed
    html = (folder / "build" / "web.html").read_text(encoding="utf-8")
    for img in lxml.html.document_fromstring(html).iter("img"):
        assert img.get("width", "").isdigit() and img.get("height", "").isdigit(), img.attrib
    photo = next(img for img in lxml.html.document_fromstring(html).iter("img") if "science-fair" in img.get("src"))
    assert (photo.get("width"), photo.get("height")) == ("552", "736")


def test_the_whole_email_with_the_photo_is_under_1_5_mb(photo_composed: tuple[Path, bytes, ComposeResult]) -> None:
    folder, _, _ = photo_composed
    root = folder.parent.parent
    write_audiences(root / "audiences.csv", [("sam.parent@example.org", "Sam", "Example", "parents")])
    done = send_py(root, "newsletters/2024-11-08-online-safety", "--to", "parents", "--yes", "--untested",
                   env=environ(root))
    assert done.returncode == 0, done.stderr
    [eml] = list((root / "outbox").rglob("*.eml"))
    assert eml.stat().st_size < 1.5 * 1024 * 1024
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    pictures = [part for part in message.walk() if part.get_content_maintype() == "image"]
    photo = next(part for part in pictures if part.get_filename() == "science-fair.jpg")
    with Image.open(io.BytesIO(photo.get_content())) as picture:
        assert picture.width <= 1200
        assert not picture.getexif()


def test_an_iphone_heic_photo_goes_as_a_small_jpeg_without_metadata(tmp_path: Path) -> None:
    """The iPhone's own format, which mail programs cannot show: read with pillow-heif, sent as JPEG."""
    original = HEIC_PHOTO.read_bytes()
    images_module.allow_heif()
    with Image.open(HEIC_PHOTO) as source:  # the fixture is what the test says: HEIC, with a GPS position
        assert source.format == "HEIF" and source.getexif().get_ifd(GPS_IFD)
    folder = with_picture(make_project(tmp_path / "school"), "IMG_0412.HEIC", original, "Sports day")
    result = compose_copy(folder)
    sent = folder / "build" / "images" / "IMG_0412.jpg"
    with Image.open(sent) as picture:
        assert (picture.format, picture.size) == ("JPEG", (552 * PIXELS_PER_SHOWN_PX, 828))
        assert not picture.getexif() and "exif" not in picture.info and "xmp" not in picture.info
        red, green, blue = picture.convert("RGB").getpixel((picture.width - 20, 20))  # the red block, top right
        assert red > 180 and green < 80 and blue < 80
    html = result.build.versions["parents"].html()
    assert 'src="images/IMG_0412.jpg"' in html and "HEIC" not in html
    assert (folder / "images" / "IMG_0412.HEIC").read_bytes() == original


@pytest.mark.parametrize(("name", "data"), [
    ("trip.gif", truncated(gif_bytes(400, 300), 0.4)),
    ("trip.jpg", truncated(phone_photo(800, 600), 0.3)),
    ("trip.heic", truncated(HEIC_PHOTO.read_bytes(), 0.5)),
    ("trip.png", truncated(Path(__file__).parent.parent.joinpath(
        "newsletters/2024-11-08-online-safety/images/home-learning-hub.png").read_bytes(), 0.6)),
])
def test_a_damaged_picture_is_an_error_naming_the_file(tmp_path: Path, name: str, data: bytes,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = with_picture(make_project(tmp_path / "school"), name, data)
    monkeypatch.chdir(tmp_path / "school")  # where office staff run compose.py
    with pytest.raises(InputError) as caught:
        compose_copy(folder)
    assert str(caught.value) == f"newsletters/2024-11-08-online-safety/images/{name}: {DAMAGED}"
    assert not (folder / "build").exists()


def test_a_file_that_is_no_picture_at_all_names_its_line(tmp_path: Path) -> None:
    folder = with_picture(make_project(tmp_path / "school"), "trip.jpg", b"<html>Not a picture</html>")
    with pytest.raises(InputError) as caught:
        compose_copy(folder)
    assert str(caught.value) == (f"{folder / 'newsletter.md'}, line 11: the image 'images/trip.jpg' is not a "
                                 "picture mailroom can read (a damaged file, or another kind of file renamed); "
                                 "open it in a photo editor and save it as PNG, JPEG or GIF")


def test_compose_py_reports_a_truncated_gif_without_a_traceback(tmp_path: Path) -> None:
    with_picture(make_project(tmp_path / "school"), "trip.gif", truncated(gif_bytes(400, 300), 0.4))
    done = subprocess.run([sys.executable, str(REPO / "compose.py"), "newsletters/2024-11-08-online-safety"],
                          cwd=tmp_path / "school", capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert " ".join(done.stderr.split()) == f"Error: newsletters/2024-11-08-online-safety/images/trip.gif: {DAMAGED}"


def test_a_png_photo_goes_as_jpeg_and_a_transparent_graphic_stays_png(tmp_path: Path) -> None:
    photo = io.BytesIO()
    Image.effect_noise((1600, 1200), 50).convert("RGB").save(photo, "PNG")
    cache = tmp_path / "cache"
    (tmp_path / "photo.png").write_bytes(photo.getvalue())
    as_jpeg = prepare_image(tmp_path / "photo.png", 552, cache)
    assert (as_jpeg.content_type, as_jpeg.width, as_jpeg.height) == ("image/jpeg", 1104, 828)

    badge = Image.new("RGBA", (600, 200), (0, 0, 0, 0))
    badge.paste((30, 80, 160, 255), (50, 50, 550, 150))
    badge.save(tmp_path / "badge.png")
    kept = prepare_image(tmp_path / "badge.png", 552, cache)
    assert (kept.content_type, kept.width) == ("image/png", 600)  # narrower than 1104: never made larger
    with Image.open(kept.file) as picture:
        assert picture.convert("RGBA").getpixel((0, 0))[3] == 0  # still transparent


def test_a_small_picture_is_never_enlarged_and_shown_at_its_own_width(tmp_path: Path) -> None:
    write_png(tmp_path / "icon.png", 300, 100)
    prepared = prepare_image(tmp_path / "icon.png", 552, tmp_path / "cache")
    assert (prepared.width, prepared.height) == (300, 100)
    assert prepared.shown_size(552) == (300, 100)


def test_composing_again_reuses_the_prepared_picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = with_picture(make_project(tmp_path / "school"), "science-fair.jpg", phone_photo(2000, 1500))
    calls: list[Path] = []
    real = images_module._process

    def counting(source: Path, data: bytes, max_width: int):  # type: ignore[no-untyped-def]
        calls.append(source)
        return real(source, data, max_width)

    monkeypatch.setattr(images_module, "_process", counting)
    compose_copy(folder)
    first = len(calls)
    assert first == 3  # the photo, the sample's picture and the logo
    compose_copy(folder)
    assert len(calls) == first  # nothing made again
    (folder / "images" / "science-fair.jpg").write_bytes(phone_photo(2000, 1400))
    compose_copy(folder)
    assert [p.name for p in calls[first:]] == ["science-fair.jpg"]  # only the changed picture
    digest = hashlib.sha256((folder / "build" / "images" / "science-fair.jpg").read_bytes()).hexdigest()
    cached = [p for p in (tmp_path / "school" / ".cache" / "images").iterdir()
              if hashlib.sha256(p.read_bytes()).hexdigest() == digest]
    assert len(cached) == 1


def test_compose_py_prints_each_pictures_size_before_and_after(photo_project: tuple[Path, bytes]) -> None:
    folder, original = photo_project
    done = subprocess.run([sys.executable, str(REPO / "compose.py"), "newsletters/2024-11-08-online-safety"],
                          cwd=folder.parent.parent, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("Pictures, made to fit email (your files are not changed):")
    sent = (folder / "build" / "images" / "science-fair.jpg").stat().st_size
    photo = re.fullmatch(r"  science-fair\.jpg +(\S+ MB) -> +(\d+ KB)  \(1104 x 1472 px\)", lines[start + 1])
    assert photo is not None, lines[start + 1]
    assert photo.groups() == (f"{len(original) / 1024 / 1024:.1f} MB", f"{round(sent / 1024)} KB")
    assert lines[start + 3].startswith("  logo.png ")


def test_a_print_ready_cmyk_jpeg_goes_out_as_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (800, 600), (0, 200, 200, 0)).save(tmp_path / "poster.jpg", "JPEG", icc_profile=b"not sRGB")
    prepared = prepare_image(tmp_path / "poster.jpg", 552, tmp_path / "cache")
    with Image.open(prepared.file) as picture:
        assert (picture.mode, picture.size) == ("RGB", (800, 600))
        assert "icc_profile" not in picture.info
        red, green, blue = picture.getpixel((10, 10))
        assert red > 200 and green < 100 and blue < 100  # CMYK (0, 200, 200, 0) is a red
