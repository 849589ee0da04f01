"""Pictures made by Pillow for the tests, so no binary fixtures need committing."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112
MAKE = 0x010F


def write_png(path: Path, width: int = 2, height: int = 1, colour: tuple[int, ...] = (30, 80, 160)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), colour).save(path, "PNG")
    return path


def phone_photo(width: int = 4000, height: int = 3000, *, orientation: int = 6) -> bytes:
    """A JPEG as a phone saves it: 12 megapixels of detail, a GPS position, the camera make, a rotation tag.

    The picture is stored on its side (wider than tall) with orientation 6, "turn 90° clockwise to show",
    so shown right it is taller than wide. A red block marks the stored top-left corner, which after the
    turn is the top-right corner.
    """
    picture = Image.effect_noise((width, height), 60).convert("RGB")  # noise: a photo's fine detail
    picture.paste((220, 20, 20), (0, 0, width // 8, height // 8))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "ExamplePhone"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 40.2)})
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first part of a picture file, as an interrupted download or copy leaves it."""
    return data[: max(16, int(len(data) * keep))]


def gif_bytes(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((width, height), 80).convert("P").save(out, "GIF")
    return out.getvalue()


def write_heavy_photo_png(path: Path, width: int = 1104, height: int = 1700) -> Path:
    """A PNG photo so full of detail (seeded noise, the same every run) that even made to fit email it is over
    1 MB: what the image-too-big check is for. It goes out as JPEG, being a photo."""
    import random

    pixels = random.Random(7).randbytes(width * height * 3)
    Image.frombytes("RGB", (width, height), pixels).save(path, "PNG", compress_level=1)
    return path


HEIC_PHOTO = Path(__file__).parent / "fixtures" / "pictures" / "phone-photo.heic"


def write_heic_photo(path: Path = HEIC_PHOTO) -> Path:
    """The HEIC fixture, as an iPhone saves a photo (made with pillow-heif's libheif; run this to make it again):
    1600 x 1200, a red block in the top-right corner, the camera make and a GPS position in its EXIF."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    picture = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    picture.paste((220, 20, 20), (1400, 0, 1600, 150))
    exif = Image.Exif()
    exif[MAKE] = "ExamplePhone"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 40.2)})
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, "HEIF", quality=60, exif=exif)
    return path
