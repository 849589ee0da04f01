"""Stage 1 of rendering: one audience's version of a newsletter, from Markdown to email-ready HTML and text.

Jinja2 (autoescape, StrictUndefined) -> MJML -> mjml-python -> HTML -> premailer (CSS inlined, media
queries kept) -> tracking parameters on every http(s) link. The plain-text part comes from the same
blocks. Per-recipient fields stay as tokens; ``personalize`` fills them in at send time.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from markupsafe import escape as escape_markup

from mailroom.compose.build import IMAGE_PREFIX
from mailroom.compose.content import Block, Newsletter, markdown_parser
from mailroom.compose.links import TrackingParameters, tag_links_in_html, tag_url
from mailroom.compose.plaintext import block_text
from mailroom.errors import InputError
from mailroom.settings import MailingList, Settings
from mailroom.tokens import fields_used, token
from mailroom.translate.languages import Localisation
from mailroom.versions import VersionKey

TEMPLATE_DIR = "templates"
LAYOUT = "base.mjml.j2"
TEXT_LAYOUT = "text.txt.j2"
WEB_AUDIENCE = "web"
CONTENT_WIDTH = 552  # the email is 600 px wide with 24 px padding each side
LOGO_WIDTH = 72
# The email has its own dark palette (templates/base.mjml.j2, prefers-color-scheme), so it tells clients
# that support both schemes not to invert it themselves.
_COLOR_SCHEME_META = ('<meta name="color-scheme" content="light dark">'
                      '<meta name="supported-color-schemes" content="light dark">')
_DOCTYPE = re.compile(r"^\s*<!doctype html>", re.IGNORECASE)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
# A phone number in running text: 7 or more digits in groups ("0800 1111", "+44 20 7946 0000", "01632-960123").
_PHONE = re.compile(r"(?<![\w/.%-])(?:\+\d{1,3}[ \u00a0]?)?(?:\(0\)[ \u00a0]?)?\d[\d \u00a0-]{5,}\d(?![\w/%-])")
_TAG_OR_TEXT = re.compile(r"(<[^>]*>)")


@dataclass(frozen=True)
class RenderedVersion:
    """One audience's email, ready to write into the build."""

    audience: str
    html: str
    text: str
    links: tuple[str, ...]
    tokens: tuple[str, ...]


@functools.lru_cache(maxsize=8)
def _environments(template_dir: str) -> tuple[jinja2.Environment, jinja2.Environment]:
    """The HTML and text template environments for a templates folder, kept between composes: the live
    preview composes on every save, and parsing the templates again each time was a third of a warm
    compose. Jinja checks each template file's modification time when it is used, so an edited template
    is read again."""
    loader = jinja2.FileSystemLoader(template_dir)
    html_env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    text_env = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined,
                                  keep_trailing_newline=True)
    return html_env, text_env


class Renderer:
    """Holds the template environments for one compose run (templates are parsed once)."""

    def __init__(self, settings: Settings, image_names: dict[Path, str], logo_name: str | None,
                 logo_size: tuple[int, int] | None = None) -> None:
        self.settings = settings
        self.logo_height = (max(1, round(logo_size[1] * LOGO_WIDTH / logo_size[0]))
                            if logo_size and logo_size[0] else 0)
        self.template_dir = settings.root / TEMPLATE_DIR
        self.image_names = image_names
        self.logo_name = logo_name
        self.html_env, self.text_env = _environments(str(self.template_dir))
        self.md = markdown_parser()

    def render(self, newsletter: Newsletter, audience: str, localisation: Localisation | None = None
               ) -> RenderedVersion:
        """Render the version ``audience`` names (a slug of lists: ``parents``, ``parents+staff``);
        ``WEB_AUDIENCE`` gives the public copy with no personal tokens.

        ``localisation`` (a translated newsletter's language, its direction and the templates' words in
        it) is None for the school's own language.
        """
        mjml_source, context, blocks, tag = self._prepare(newsletter, audience, localisation)
        html = self._compile(mjml_source)
        if audience == WEB_AUDIENCE:
            html = web_page_head(html, newsletter.front.preheader)
        html, links = tag_links_in_html(html, tag)
        body_text = "\n\n".join(block_text(block, tag) for block in blocks)
        text = self._template(self.text_env, TEXT_LAYOUT, context | {"body": body_text})
        text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
        tokens = fields_used(html, text)
        return RenderedVersion(audience=audience, html=html, text=text, links=tuple(links), tokens=tokens)

    def mjml(self, newsletter: Newsletter, audience: str) -> str:
        """The MJML source of ``audience``'s version before compiling, so the benchmark can feed the npm tools."""
        return self._prepare(newsletter, audience)[0]

    def template_strings(self, newsletter: Newsletter, audience: str) -> list[str]:
        """The words the templates mark for translation (``{{ _("...") }}``), in the order they appear."""
        seen: list[str] = []
        _, context, _, _ = self._prepare(newsletter, audience, None, record=seen)
        self._template(self.text_env, TEXT_LAYOUT, context | {"body": ""})
        return list(dict.fromkeys(seen))

    def _prepare(self, newsletter: Newsletter, audience: str, localisation: Localisation | None = None,
                 record: list[str] | None = None) -> tuple[str, dict[str, Any], list[Block], Callable[[str], str]]:
        """The MJML source, the template context, the blocks and the link tagger, shared by both outputs."""
        settings = self.settings
        web = audience == WEB_AUDIENCE
        list_names = (settings.archive_audience,) if web else VersionKey.from_slug(audience).lists
        mailing_list = combined_list(settings, list_names)
        tracking = TrackingParameters(
            source=settings.tracking.utm_source, medium=settings.tracking.utm_medium,
            campaign=newsletter.front.campaign or newsletter.slug, content=audience)

        def tag(url: str) -> str:
            return tag_url(url, tracking)

        # Everything meant for any of the version's lists, in the order written.
        blocks = [block for block in newsletter.blocks if any(block.shown_to(name) for name in list_names)]
        date = newsletter.front.date
        local = localisation or Localisation(settings.school.language, settings.school.direction)
        if local.translated:
            mailing_list = dataclasses.replace(mailing_list,
                                               greeting=local.greetings.get(list_names[0], mailing_list.greeting))
        context: dict[str, Any] = {
            "school": settings.school,
            "sender": settings.sender,
            "brand": settings.brand,
            "mailing_list": mailing_list,
            "subject": newsletter.front.subject,
            "preheader": newsletter.front.preheader,
            "date_long": local.date_long or f"{date:%A} {date.day} {date:%B %Y}",
            "greeting": mailing_list.greeting if web or local.translated else token("greeting"),
            "unsubscribe_url": "" if web else token("unsubscribe_url"),
            "logo_src": f"{IMAGE_PREFIX}{self.logo_name}" if self.logo_name else "",
            "logo_width": LOGO_WIDTH,
            "logo_height": self.logo_height,
            "web": web,
            "lang": local.language,
            "dir": local.direction,
            "notice": local.notice,
        }
        html_words, text_words = _word_lookups(local.strings, record)
        mjml_source = self._template(self.html_env, LAYOUT, context | {
            "_": html_words, "blocks": [self._html_view(block) for block in blocks]})
        return mjml_source, context | {"_": text_words}, list(blocks), tag

    def _html_view(self, block: Block) -> dict[str, Any]:
        """What a block partial needs, with Markdown already turned into (trusted) HTML."""
        view: dict[str, Any] = {"kind": block.kind, "title": block.title, "url": block.url, "label": block.label}
        if block.tokens:
            view["html"] = Markup(keep_phone_numbers_whole(self.md.renderer.render(block.tokens, self.md.options, {})))
        if block.image is not None:
            # Pixel width and height go to <mj-image> and stay on the <img> (see keep_pixel_sizes).
            width = min(block.image.width, CONTENT_WIDTH)
            height = max(1, round(block.image.height * width / block.image.width)) if block.image.width else 0
            view.update(src=f"{IMAGE_PREFIX}{self.image_names[block.image.path]}", alt=block.image.alt,
                        width=width, height=height)
        return view

    def _template(self, env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
        try:
            return env.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            raise InputError(f"template '{exc.name}' is missing", self.template_dir / name) from None
        except jinja2.TemplateSyntaxError as exc:
            path = Path(exc.filename) if exc.filename else self.template_dir / name
            raise InputError(f"template error: {exc.message}", path, exc.lineno) from None
        except jinja2.UndefinedError as exc:
            frame_path, line = _template_frame(exc, self.template_dir)
            raise InputError(f"template error: {exc.message}", frame_path or self.template_dir / name, line) from None

    def _compile(self, mjml_source: str) -> str:
        from mjml import mjml2html  # here, not at the top: send and check import this module but never compile

        try:
            html = mjml2html(mjml_source, disable_comments=True)
        except Exception as exc:  # mjml-python raises plain exceptions with the parser's message
            raise InputError(f"the templates do not make valid MJML: {exc}", self.template_dir / LAYOUT) from None
        html = html.replace("</head>", _COLOR_SCHEME_META + "</head>", 1)
        return keep_pixel_sizes(inline_css(html))


def combined_list(settings: Settings, names: tuple[str, ...]) -> MailingList:
    """The lists of a version as one: "a parent ... and a member of staff ...", greeted as the first list."""
    lists = [settings.lists[name] for name in names]
    descriptions = [item.description for item in lists]
    if len(descriptions) > 1:
        description = ", ".join(descriptions[:-1]) + " and " + descriptions[-1]
    else:
        description = descriptions[0]
    return MailingList(name=VersionKey(names).slug, description=description, greeting=lists[0].greeting)


def _word_lookups(strings: Mapping[str, str], record: list[str] | None
                  ) -> tuple[Callable[..., Markup], Callable[..., str]]:
    """The templates' ``_("words", slot=value)``: the words in the version's language, ``{slot}`` filled in.

    The HTML one escapes the words and fills slots with (escaped or already safe) markup; the text one
    returns plain text. With ``record``, every string asked for is noted, so compose can translate them.
    """
    def words(msgid: str, slots: Mapping[str, Any]) -> str:
        if record is not None:
            record.append(msgid)
        return strings.get(msgid, msgid)

    def html_words(msgid: str, **slots: Any) -> Markup:
        out = str(escape_markup(words(msgid, slots)))
        for name, value in slots.items():
            out = out.replace("{" + name + "}", str(escape_markup(value)))
        return Markup(out)

    def text_words(msgid: str, **slots: Any) -> str:
        out = words(msgid, slots)
        for name, value in slots.items():
            out = out.replace("{" + name + "}", str(value))
        return out

    return html_words, text_words


# cssutils (under premailer) logs every CSS property it does not know, which email CSS is full of.
# premailer adds the handler it is given to cssutils' logger on every call: one shared handler, added
# once, keeps the long-running preview server from gathering a handler per compose.
_CSS_LOG_SINK = logging.NullHandler()


def inline_css(html: str) -> str:
    """Inline the CSS for clients that drop <style>, keeping media queries and !important for phones.

    Two settings matter for Outlook for Windows, which lays out with the HTML attributes and knows no
    doctype-less standards mode:
    - ``disable_basic_attributes``: premailer would otherwise copy each CSS ``width``/``height`` over the
      attribute of the same name, so MJML's ``width="72"`` became ``width="100%"`` and Outlook drew the
      image at its file's own size (a 1104 px banner in a 600 px email).
    - the doctype: premailer keeps it only when the document starts with exactly what lxml reports,
      ``<!DOCTYPE html>`` in capitals; MJML writes it in lower case, so it was dropped and every client
      rendered the email (and the web copy) in quirks mode.
    """
    from premailer import Premailer  # here, not at the top: premailer (with cssutils, requests) is 0.1 s to import

    html = _DOCTYPE.sub("<!DOCTYPE html>", html, count=1)
    if not html.lstrip().startswith("<!DOCTYPE html>"):
        html = "<!DOCTYPE html>" + html
    return Premailer(
        html,
        disable_basic_attributes=["width", "height"],
        allow_network=False,
        keep_style_tags=False,
        strip_important=False,
        disable_validation=True,
        remove_classes=False,
        cssutils_logging_handler=_CSS_LOG_SINK,
        cssutils_logging_level=logging.CRITICAL,
        disable_leftover_css=False,
    ).transform(pretty_print=False)


def keep_pixel_sizes(html: str) -> str:
    """Each ``<img>`` keeps its pixel ``width``/``height`` attributes (Outlook for Windows uses them) while
    its CSS height is ``auto``, so phones that shrink it to the screen keep its shape. MJML's
    ``height="auto"`` is not valid HTML and tells Outlook nothing, so it is dropped."""

    def fix(match: re.Match[str]) -> str:
        tag = match.group(0)
        tag = re.sub(r'\sheight="auto"', "", tag)
        if re.search(r'\sheight="\d+"', tag):
            tag = re.sub(r"(style=\"[^\"]*?\bheight:\s*)\d+px", r"\1auto", tag)
        return tag

    return _IMG.sub(fix, html)


def keep_phone_numbers_whole(fragment: str) -> str:
    """Phone numbers in running text (and tel: links) never break across lines: "0800 / 1111" on a phone
    is a number nobody can dial. Only text between tags is touched, never an attribute."""
    parts = _TAG_OR_TEXT.split(fragment)
    for index, part in enumerate(parts):
        if part.startswith("<"):
            continue
        parts[index] = _PHONE.sub(_unbreakable_number, part)
    return "".join(parts)


def _unbreakable_number(match: re.Match[str]) -> str:
    """Non-breaking spaces inside the number (kept even where styles are dropped), and nowrap for hyphens."""
    number = match.group(0)
    if sum(c.isdigit() for c in number) < 7:
        return number
    return '<span style="white-space:nowrap">' + number.replace(" ", "\u00a0") + "</span>"


def web_page_head(html: str, description: str) -> str:
    """web.html is published as a page: search engines and link previews read its meta description."""
    if not description.strip():
        return html
    return html.replace("</head>", f'<meta name="description" content="{escape(description, quote=True)}"></head>', 1)


def _template_frame(exc: BaseException, template_dir: Path) -> tuple[Path | None, int | None]:
    """The template file and line where Jinja raised, from the traceback Jinja rewrites for us."""
    found: tuple[Path | None, int | None] = (None, None)
    tb = exc.__traceback__ or sys.exc_info()[2]
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (Path(filename), tb.tb_lineno)
        tb = tb.tb_next
    return found

