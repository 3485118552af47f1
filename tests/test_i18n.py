"""The app speaks the visitor's language, and the operator's log stays English.

Pages are requested through Django's test client with ``Accept-Language: de`` (the demo project
has ``LocaleMiddleware``); the shipped catalogue is checked as a file: complete, nothing fuzzy,
placeholders kept, the compiled ``.mo`` saying what the ``.po`` says, and no string in the
sources that the catalogue lacks.
"""

from __future__ import annotations

import ast
import gettext
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import Client
from django.utils import translation

from accounts.admission import check_restrictions
from accounts.errors import SignInRefused, UnknownProvider
from accounts.models import Provider
from tests.conftest import assert_error_page, sign_in

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "accounts" / "locale"
GERMAN_PO = LOCALE / "de" / "LC_MESSAGES" / "django.po"
GERMAN_MO = LOCALE / "de" / "LC_MESSAGES" / "django.mo"
COMMAND_TIMEOUT = 120


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    """``LocaleMiddleware`` leaves the language it chose active in this thread: later tests must not read German."""
    yield
    translation.deactivate()


@pytest.fixture
def german() -> Client:
    """A browser whose owner reads German."""
    return Client(HTTP_ACCEPT_LANGUAGE="de")


# --- pages in German -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_in_german(german, provider):
    response = german.get("/accounts/login/", {"next": "/somewhere/"})
    page = response.content.decode()
    assert response["Content-Language"] == "de" and '<html lang="de">' in page
    assert "<title>Anmelden</title>" in page
    assert "Weiter mit Test OP" in page
    assert "Melden Sie sich an, um dort weiterzumachen, wo Sie aufgehört haben." in page
    assert "Diese Website sieht Ihr Passwort nie." in page
    for english in ("Continue with", "Sign in to continue", "never sees your password", "Skip to content"):
        assert english not in page


@pytest.mark.django_db
def test_login_page_stays_english_by_default(client, provider):
    page = client.get("/accounts/login/").content.decode()
    assert "Continue with Test OP" in page and "Weiter mit" not in page


@pytest.mark.django_db
def test_error_page_in_german(german):
    response = german.get("/accounts/no-such-op/login/")
    assert_error_page(response, 404, code="unknown_provider", reason="no enabled provider 'no-such-op'")
    page = response.content.decode()
    assert '<h1 id="error-title">Unbekannter Anmeldeanbieter</h1>' in page
    assert "Diese Anmeldemöglichkeit gibt es nicht oder sie wurde abgeschaltet." in page
    assert "Zurück zur Anmeldung" in page
    with translation.override("en"):
        english = [str(UnknownProvider.title), str(UnknownProvider.message)]
    assert english[0] == "Unknown sign-in provider"
    for text in [*english, "Back to sign-in"]:
        assert text not in page


@pytest.mark.django_db
def test_german_error_page_leaves_the_log_and_the_reference_english(german, caplog):
    """What the operator greps for is the same whatever language the visitor reads."""
    with caplog.at_level(logging.WARNING, logger="accounts.views"):
        response = german.get("/accounts/no-such-op/login/")
    page = response.content.decode()
    assert "<code>unknown_provider</code> (HTTP 404)" in page  # the reference on the page: the log's code
    (line,) = [r.getMessage() for r in caplog.records if r.name == "accounts.views"]
    assert line == "sign-in failed: provider=- code=unknown_provider reason=no enabled provider 'no-such-op'"


@pytest.mark.django_db
def test_profile_page_in_german(german, op, provider, second):
    assert sign_in(german, op, provider).status_code == 302
    page = german.get("/accounts/profile/").content.decode()
    assert "Mit Test OP angemeldet." in page  # the notification, translated when it was queued
    assert "Verbundene Anmeldemethoden" in page and "Benutzername" in page
    assert "Weiteren Anbieter verbinden" in page and "Second OP verbinden" in page
    assert "Das ist Ihre einzige Möglichkeit, sich anzumelden" in page
    for english in ("Connected sign-in methods", "Signed in with", "Connect Second OP", "Sign out"):
        assert english not in page


@pytest.mark.django_db
def test_admin_labels_in_german(admin_client):
    admin_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "de"
    page = admin_client.get("/admin/oidc_signin/provider/add/").content.decode()
    assert "Client-Registrierung" in page and "Wer sich anmelden darf" in page
    assert "Anzeigereihenfolge" in page and "Client registration" not in page
    assert "Anmeldeereignisse" in admin_client.get("/admin/").content.decode()


def test_refusal_message_is_formatted_after_translation():
    """The sentence is translated with its placeholder, then filled: German words around the domains."""
    provider = Provider(slug="corp", allowed_email_domains="a.example b.example c.example")
    claims = {"email": "eve@elsewhere.example", "email_verified": True}
    with translation.override("de"), pytest.raises(SignInRefused) as refused:
        check_restrictions(provider, claims)
    assert refused.value.message == (
        "Hier können sich nur Personen mit einer bestätigten E-Mail-Adresse bei a.example, b.example oder "
        "c.example anmelden."
    )
    assert refused.value.reason == "corp: verified email domain 'elsewhere.example' not allowed"


# --- the shipped catalogue ---------------------------------------------------------------------------


@dataclass
class Entry:
    """One message of a .po file: its fields (msgid, msgstr, msgstr[0], ...), flags, and whether it is obsolete."""

    fields: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def msgid(self) -> str:
        return self.fields.get("msgid", "")

    @property
    def translations(self) -> list[str]:
        return [value for key, value in self.fields.items() if key.startswith("msgstr")]


def read_po(path: Path) -> list[Entry]:
    """The entries of a .po file, read with the standard library (a new entry starts after a msgstr)."""
    entries: list[Entry] = []
    key = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        starts = line.startswith(("#", "msgctxt ", "msgid "))
        entry = entries[-1] if entries else None
        if entry is None or (starts and (entry.translations or (entry.obsolete and not line.startswith("#~")))):
            entry = Entry()
            entries.append(entry)
        if line.startswith("#~"):
            entry.obsolete = True
        elif line.startswith("#,"):
            entry.flags |= {flag.strip() for flag in line[2:].split(",")}
        elif not line.startswith("#"):
            match = re.fullmatch(r'(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?) (".*")', line)
            if match:
                key = match.group(1)
                entry.fields[key] = ast.literal_eval(match.group(2))
            else:
                assert line.startswith('"') and key, f"unexpected line in {path.name}: {raw!r}"
                entry.fields[key] += ast.literal_eval(line)
    return entries


def placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"%\(\w+\)s|\{\w*\}|</?\w+[^>]*>", text))


def test_german_catalogue_is_complete_and_nothing_is_fuzzy():
    entries = read_po(GERMAN_PO)
    (header,) = [e for e in entries if "msgid" in e.fields and e.msgid == ""]
    assert "fuzzy" not in header.flags
    (meta,) = header.translations
    assert "Language: de\n" in meta
    assert "Plural-Forms: nplurals=2; plural=(n != 1);\n" in meta
    assert "Content-Type: text/plain; charset=UTF-8\n" in meta
    assert not [e for e in entries if e.obsolete], "obsolete entries left in the catalogue"
    messages = [e for e in entries if e.msgid]
    assert len(messages) > 150  # the pages, the errors, the admin: all of it
    assert not [e.msgid for e in messages if not all(t.strip() for t in e.translations)], "untranslated"
    assert not [e.msgid for e in messages if "fuzzy" in e.flags], "fuzzy"
    assert not [e.msgid for e in messages if "msgctxt" in e.fields or "msgid_plural" in e.fields], (
        "read_po: unsupported"
    )
    assert not [e.msgid for e in messages if placeholders(e.msgid) != placeholders(e.translations[0])], "placeholders"


def test_compiled_catalogue_says_what_the_po_says():
    with GERMAN_MO.open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    messages = {e.msgid: e.fields["msgstr"] for e in read_po(GERMAN_PO) if e.msgid}
    assert {msgid: compiled.gettext(msgid) for msgid in messages} == messages
    assert set(compiled._catalog) - {""} == set(messages)  # nothing in the .mo that the .po dropped
    assert compiled.info()["language"] == "de"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext (xgettext) is not installed")
def test_catalogue_has_every_string_the_sources_mark(tmp_path):
    """``makemessages`` over a copy of the app finds nothing the shipped catalogue lacks, or has extra."""
    copy = tmp_path / "accounts"
    shutil.copytree(ROOT / "accounts", copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    done = subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", "de", "--no-location"],
        cwd=copy,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    regenerated = {e.msgid: e for e in read_po(copy / "locale" / "de" / "LC_MESSAGES" / "django.po") if e.msgid}
    shipped = {e.msgid for e in read_po(GERMAN_PO) if e.msgid}
    assert sorted(set(regenerated) - shipped) == [], "marked for translation but not in the shipped catalogue"
    assert sorted(shipped - set(regenerated)) == [], "in the catalogue but no longer in the sources"
    assert not [e for e in read_po(copy / "locale" / "de" / "LC_MESSAGES" / "django.po") if e.obsolete]
    assert not [m for m, e in regenerated.items() if not all(e.translations) or "fuzzy" in e.flags]
