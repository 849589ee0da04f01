"""Versions per combination of lists (mailroom/versions.py): names, which combinations a build holds, and
what the combined version shows: every section meant for any of its lists, one greeting, one footer."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from mailroom.compose.build import load_build
from mailroom.preview.page import sample_document
from mailroom.versions import (
    ALL_COMBINATIONS_UP_TO,
    VersionKey,
    all_combinations,
    combinations_needed,
    describe,
    version_for,
)
from mailroom.workflows.compose import ComposeResult
from tests.browser import artifact, horizontal_overflow, open_page
from tests.projects import compose_copy, make_project, project_settings
from tests.send_project import SAMPLE, environ, run_send, send_project, write_audiences

PARENTS_ONLY = "For parents and carers"
STAFF_ONLY = "For education and safeguarding professionals"


def test_slugs_follow_the_newsletters_order_and_add_a_language() -> None:
    order = ("parents", "staff", "governors")
    assert version_for(["staff", "parents"], order).slug == "parents+staff"
    assert version_for(["governors"], order, "pl").slug == "governors.pl"
    assert version_for(["staff", "governors", "parents"], order, "ar").slug == "parents+staff+governors.ar"
    assert version_for(["staff", "website-only"], order).lists == ("staff",)  # lists not in the newsletter drop
    with pytest.raises(ValueError):
        version_for(["website-only"], order)
    assert VersionKey.from_slug("parents+staff.pt-PT") == VersionKey(("parents", "staff"), "pt-PT")
    assert describe("parents+staff") == "Parents + staff" and describe("staff.pl") == "Staff (pl)"


def test_every_combination_up_to_four_lists_then_only_those_readers_are_on() -> None:
    assert all_combinations(("a", "b")) == [("a",), ("b",), ("a", "b")]
    assert len(combinations_needed(("a", "b", "c", "d"))) == 2 ** ALL_COMBINATIONS_UP_TO - 1
    five = ("a", "b", "c", "d", "e")
    assert combinations_needed(five, [["e", "a"], ["b"], ["c", "a"], ["a", "e"], ["zz"]]) == [
        ("a",), ("b",), ("c",), ("d",), ("e",), ("a", "c"), ("a", "e")]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = send_project(tmp_path / "school")
    write_audiences(folder / "audiences.csv", [
        ("amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
        ("julia.morgan@example.org", "", "Morgan", "parents;staff"),
        ("grace.okafor@example.org", "Grace", "Okafor", "staff"),
    ])
    return folder


def test_the_build_holds_the_combined_version_with_both_sections_and_both_descriptions(project: Path) -> None:
    build = load_build(project / "newsletters" / SAMPLE, project)
    assert list(build.versions) == ["parents", "staff", "parents+staff"]
    both = build.versions["parents+staff"]
    html, text = both.html(), both.text()
    assert both.lists == ("parents", "staff")
    for part in (html, text):
        assert PARENTS_ONLY in part and STAFF_ONLY in part
        assert part.index(PARENTS_ONLY) < part.index(STAFF_ONLY)  # in the order written
        assert ("because you are a parent or carer of a pupil at Oakfield Primary School and a member of staff "
                "at Oakfield Primary School") in " ".join(part.split())
    assert STAFF_ONLY not in build.versions["parents"].html()
    assert PARENTS_ONLY not in build.versions["staff"].html()


@pytest.mark.parametrize(("to", "greeting"), [("parents,staff", "Dear Parent/Carer"),
                                               ("staff,parents", "Dear Colleague")])
def test_someone_on_both_lists_gets_one_email_with_both_sections(project: Path, to: str, greeting: str) -> None:
    result = run_send(project, f"newsletters/{SAMPLE}", "--to", to, "--yes", "--untested", env=environ(project))
    assert result.returncode == 0, result.stderr
    sent = {}
    for path in (project / "outbox" / SAMPLE).glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        sent[message["To"].addresses[0].addr_spec] = message
    assert sorted(sent) == ["amelia.hughes@example.org", "grace.okafor@example.org", "julia.morgan@example.org"]
    julia = sent["julia.morgan@example.org"].get_body(("plain",)).get_content()
    assert PARENTS_ONLY in julia and STAFF_ONLY in julia
    assert julia.count("Unsubscribe: ") == 1
    assert f"{greeting}," in julia  # no first name on file: the first list in --to greets her
    amelia = sent["amelia.hughes@example.org"].get_body(("plain",)).get_content()
    assert PARENTS_ONLY in amelia and STAFF_ONLY not in amelia
    assert "To send now, per version: parents 1, staff 1, parents+staff 1" in result.stdout


def test_the_combined_version_on_a_phone_shows_both_sections(browser: Browser, composed_sample: ComposeResult) -> None:
    """At 375 px: both lists' sections, one after the other, nothing wider than the screen; the footer names
    both lists and has one unsubscribe link."""
    version = composed_sample.build.versions["parents+staff"]
    settings = project_settings(composed_sample.build.root)
    path = composed_sample.build.build_dir / "sample-parents+staff.html"  # beside images/, so they load
    path.write_text(sample_document(settings, "parents+staff", version.html()), encoding="utf-8")
    with open_page(browser, 375) as (page, log):
        page.goto(path.as_uri())
        parents = page.get_by_role("heading", name=PARENTS_ONLY)
        staff = page.get_by_role("heading", name=STAFF_ONLY)
        assert parents.is_visible() and staff.is_visible()
        first, second = parents.bounding_box(), staff.bounding_box()
        assert first is not None and second is not None and first["y"] < second["y"]
        assert first["x"] + first["width"] <= 375 and second["x"] + second["width"] <= 375
        assert horizontal_overflow(page) <= 0 and log.console_errors == []
        assert page.get_by_role("link", name="Unsubscribe from these emails").count() == 1
        assert "Dear Parent/Carer" in page.inner_text("body")  # the first list's greeting
        page.screenshot(path=artifact("email-parents+staff-375.png"), full_page=True)


FIVE_LISTS = {'[lists.staff]': '''[lists.governors]
description = "a governor of Oakfield Primary School"
greeting = "Dear Governor"

[lists.pta]
description = "a member of the PTA"
greeting = "Dear PTA member"

[lists.year6]
description = "a parent or carer of a Year 6 pupil"
greeting = "Dear Year 6 Parent/Carer"

[lists.staff]'''}


def test_a_newsletter_for_five_lists_makes_the_combinations_readers_are_on(tmp_path: Path) -> None:
    """2**5 - 1 = 31 versions would be too many: compose makes the five, plus the combinations in the lists
    file; a combination met later stops the send before anything goes out, until compose runs again."""
    folder = make_project(tmp_path / "school", school_toml=FIVE_LISTS)
    project = folder.parents[1]
    source = folder / "newsletter.md"
    source.write_text(source.read_text(encoding="utf-8").replace(
        "audiences: parents, staff", "audiences: parents, staff, governors, pta, year6"), encoding="utf-8")
    write_audiences(project / "audiences.csv", [("a@example.org", "A", "A", "governors;parents"),
                                                ("b@example.org", "B", "B", "staff")])
    compose_copy(folder)
    build = load_build(folder, project)
    assert list(build.versions) == ["parents", "staff", "governors", "pta", "year6", "parents+governors"]

    write_audiences(project / "audiences.csv", [("a@example.org", "A", "A", "governors;parents"),
                                                ("c@example.org", "C", "C", "pta;staff")])
    refused = run_send(project, f"newsletters/{folder.name}", "--to", "parents,staff,governors,pta", "--yes",
                      "--untested", env=environ(project))
    assert refused.returncode == 2 and not (project / "outbox").exists()
    assert refused.stderr.strip() == (
        f"Error: {folder / 'newsletter.md'}: this build has no version for people on staff and pta ('staff+pta'); "
        "compose the newsletter again so it makes one")
    compose_copy(folder)
    sent = run_send(project, f"newsletters/{folder.name}", "--to", "parents,staff,governors,pta", "--yes",
                   "--untested", env=environ(project))
    assert sent.returncode == 0, sent.stderr
    assert "To send now, per version: parents 0, staff 0, governors 0, pta 0, parents+governors 1, staff+pta 1" \
        in sent.stdout
