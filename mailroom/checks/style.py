"""How the email looks to a reader: the HTML walked once, with each text run's colour, size and background.

The checks use this to judge contrast and font size the way a mail client would show the inlined styles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from mailroom.checks.sourcemap import normalise

RGB = tuple[int, int, int]


@dataclass
class Style:
    color: RGB = (0, 0, 0)
    background: RGB = (255, 255, 255)
    font_px: float = 16.0
    bold: bool = False
    hidden: bool = False


@dataclass
class TextRun:
    """Text that sits directly in one element, with the style it is shown in."""

    element: etree._Element
    text: str
    style: Style


@dataclass
class Scan:
    runs: list[TextRun] = field(default_factory=list)
    hidden_text: list[str] = field(default_factory=list)
    images: list[etree._Element] = field(default_factory=list)
    links: list[etree._Element] = field(default_factory=list)
    headings: list[etree._Element] = field(default_factory=list)
    title: str = ""


_HEADING_EM = {"h1": 2.0, "h2": 1.5, "h3": 1.17, "h4": 1.0, "h5": 0.83, "h6": 0.67}
_NAMED = {"white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0), "green": (0, 128, 0),
          "blue": (0, 0, 255), "gray": (128, 128, 128), "grey": (128, 128, 128), "silver": (192, 192, 192),
          "yellow": (255, 255, 0), "orange": (255, 165, 0), "navy": (0, 0, 128), "maroon": (128, 0, 0)}
_DEFAULT_LINK = (0, 0, 238)  # what browsers show a link in when the email does not say
_SKIP_TAGS = {"head", "style", "script", "title", "noscript", "template"}


def parse_color(value: str) -> RGB | None:
    """#rgb, #rrggbb, rgb()/rgba() (alpha 0 means none) and a few names; None when unknown or transparent."""
    value = value.strip().lower()
    value = value.replace("!important", "").strip()
    if match := re.fullmatch(r"#([0-9a-f]{3})", value):
        return tuple(int(ch * 2, 16) for ch in match.group(1))  # type: ignore[return-value]
    if match := re.fullmatch(r"#([0-9a-f]{6})", value):
        digits = match.group(1)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    if match := re.fullmatch(r"rgba?\(([^)]*)\)", value):
        parts = [p.strip() for p in re.split(r"[,\s/]+", match.group(1).strip()) if p.strip()]
        if len(parts) not in (3, 4):
            return None
        if len(parts) == 4:
            alpha = float(parts[3][:-1]) / 100 if parts[3].endswith("%") else float(parts[3])
            if alpha == 0:
                return None
        channels = []
        for part in parts[:3]:
            number = float(part[:-1]) * 2.55 if part.endswith("%") else float(part)
            channels.append(max(0, min(255, round(number))))
        return (channels[0], channels[1], channels[2])
    return _NAMED.get(value)


def _background_color(value: str) -> RGB | None:
    """The colour in a ``background`` shorthand ("#fff url(x.png) no-repeat")."""
    for part in re.findall(r"rgba?\([^)]*\)|#[0-9a-fA-F]{3,6}\b|[a-zA-Z]+", value):
        color = parse_color(part)
        if color is not None:
            return color
    return None


def contrast_ratio(a: RGB, b: RGB) -> float:
    """WCAG 2.1 contrast ratio between two sRGB colours."""

    def luminance(rgb: RGB) -> float:
        def channel(c: int) -> float:
            s = c / 255
            return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

        r, g, bl = (channel(c) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * bl

    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def declarations(style: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for declaration in style.split(";"):
        name, sep, value = declaration.partition(":")
        if sep:
            result[name.strip().lower()] = value.strip()
    return result


def _font_px(value: str, parent_px: float) -> float | None:
    value = value.replace("!important", "").strip().lower()
    if match := re.fullmatch(r"([\d.]+)(px|pt|em|rem|%)?", value):
        number = float(match.group(1))
        unit = match.group(2) or "px"
        return {"px": number, "pt": number * 4 / 3, "em": number * parent_px, "rem": number * 16,
                "%": number * parent_px / 100}[unit]
    return {"small": 13.0, "x-small": 10.0, "xx-small": 9.0, "medium": 16.0, "large": 18.0}.get(value)


def _child_style(element: etree._Element, parent: Style) -> Style:
    style = Style(parent.color, parent.background, parent.font_px, parent.bold, parent.hidden)
    tag = element.tag if isinstance(element.tag, str) else ""
    decl = declarations(element.get("style", ""))
    display = decl.get("display", "").replace("!important", "").strip()
    if (display == "none" or decl.get("visibility", "").startswith("hidden")
            or decl.get("opacity", "").strip() in ("0", "0.0")
            or (decl.get("max-height", "").strip() in ("0", "0px") and decl.get("overflow", "") == "hidden")
            or element.get("hidden") is not None or element.get("aria-hidden") == "true"):
        style.hidden = True
    if tag in _HEADING_EM:
        style.font_px, style.bold = parent.font_px * _HEADING_EM[tag], True
    if tag in ("b", "strong", "th"):
        style.bold = True
    if tag in ("small", "sub", "sup"):
        style.font_px = parent.font_px * 0.83
    if "font-size" in decl:
        size = _font_px(decl["font-size"], parent.font_px)
        if size is not None:
            style.font_px = size
    weight = decl.get("font-weight", "").replace("!important", "").strip()
    if weight:
        style.bold = weight in ("bold", "bolder") or (weight.isdigit() and int(weight) >= 700)
    color = parse_color(decl["color"]) if "color" in decl else None
    if color is None and tag == "font" and element.get("color"):
        color = parse_color(element.get("color", ""))
    if color is None and tag == "a" and element.get("href") is not None:
        color = _DEFAULT_LINK
    if color is not None:
        style.color = color
    background = None
    if "background-color" in decl:
        background = parse_color(decl["background-color"])
    if background is None and "background" in decl:
        background = _background_color(decl["background"])
    if background is None and element.get("bgcolor"):
        background = parse_color(element.get("bgcolor", ""))
    if background is not None:
        style.background = background
    return style


def scan_html(document: str) -> tuple[etree._Element, Scan]:
    """Parse the email and collect its visible text (with styles), images, links and headings.

    lxml's HTML parser as ``lxml.html.document_fromstring`` runs it, without lxml.html's element classes:
    the walk needs none of their methods, and importing lxml.html and making its elements cost every send.
    """
    root = etree.HTML(document)
    if root is None:
        raise etree.ParserError("Document is empty")
    scan = Scan()

    def walk(element: etree._Element, parent: Style) -> None:
        if not isinstance(element.tag, str) or element.tag in _SKIP_TAGS:
            return
        style = _child_style(element, parent)
        own = (element.text or "") + "".join(child.tail or "" for child in element)
        if own.strip():
            if style.hidden or style.font_px <= 0:
                scan.hidden_text.append(normalise(own))
            else:
                scan.runs.append(TextRun(element, normalise(own), style))
        if not style.hidden:
            if element.tag == "img":
                scan.images.append(element)
            elif element.tag in ("a", "area") and element.get("href") is not None:
                scan.links.append(element)
            elif element.tag in _HEADING_EM:
                scan.headings.append(element)
        for child in element:
            walk(child, style)

    body = root.find("body")
    walk(body if body is not None else root, Style())
    title = root.find(".//title")
    scan.title = normalise("".join(str(part) for part in title.itertext())) if title is not None else ""
    return root, scan


def visible_text(element: etree._Element) -> str:
    """An element's text as a reader (or a screen reader) meets it, images counting by their alt."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        if not isinstance(node.tag, str):
            if node.tail:
                parts.append(node.tail)
            return
        decl = declarations(node.get("style", ""))
        if decl.get("display", "").strip() != "none":
            if node.text:
                parts.append(node.text)
            if node.tag == "img" and node.get("alt", "").strip():
                parts.append(" " + node.get("alt", "") + " ")
            for child in node:
                walk(child)
        if node is not element and node.tail:
            parts.append(node.tail)

    walk(element)
    return normalise("".join(parts))
