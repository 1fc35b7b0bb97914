"""Properties of `redact`: no credential, query or fragment of a URL survives it, whatever the
text around the URL; text without URLs and URLs without secrets pass unchanged; a second pass
changes nothing."""

import string
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from loom_assets.redaction import redact

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])

# Characters a URL may hold unencoded in a query or fragment (RFC 3986), and in a path segment.
QUERY_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%"
SEGMENT_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%"

schemes = st.sampled_from(["http", "https", "webcal", "postgresql", "imaps", "s3"])
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z]{2,6}){0,2}|127\.0\.0\.1|\[::1\]", fullmatch=True)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
paths = st.lists(st.text(SEGMENT_CHARS, min_size=1, max_size=12), max_size=4).map(
    lambda segments: "".join("/" + s for s in segments))
# Secrets are arbitrary text with something in them that is not punctuation.
secrets = st.text(min_size=8).filter(lambda s: any(c.isalnum() for c in s))
# Text around a URL that holds no URL of its own.
plain_text = st.text(st.characters(blacklist_characters="/", blacklist_categories=["Cs"]), max_size=30)


def origin(scheme: str, host: str, port: str, path: str) -> str:
    return f"{scheme}://{host}{port}{path}"


@EXAMPLES
@given(schemes, hosts, ports, paths, secrets, secrets, st.text(), st.text())
def test_user_info_never_survives(scheme, host, port, path, user, password, before, after):
    kept = origin(scheme, host, port, path)
    encoded = quote(password, safe="")
    assume(encoded not in before + kept + after)
    text = f"{before} {scheme}://{quote(user, safe='')}:{encoded}@{host}{port}{path} {after}"
    assert encoded not in redact(text)


@EXAMPLES
@given(schemes, hosts, ports, paths, st.text(min_size=1, max_size=10), secrets, st.text(), st.text())
def test_a_query_never_survives(scheme, host, port, path, key, secret, before, after):
    kept = origin(scheme, host, port, path)
    query = urlencode({key: secret})
    assume(query not in before + kept + after)
    assert query not in redact(f"{before} {kept}?{query} {after}")


@EXAMPLES
@given(schemes, hosts, ports, paths, st.text(QUERY_CHARS, min_size=8).filter(lambda s: any(c.isalnum() for c in s)),
       st.sampled_from("?#"), st.text(), st.text())
def test_an_unencoded_query_or_fragment_never_survives(scheme, host, port, path, secret, mark, before, after):
    kept = origin(scheme, host, port, path)
    assume(secret not in before + kept + after)
    assert secret not in redact(f"{before} {kept}{mark}{secret} {after}")


@EXAMPLES
@given(schemes, hosts, ports, paths, st.text(min_size=1), secrets, plain_text, plain_text)
def test_scheme_host_port_and_path_stay(scheme, host, port, path, user, secret, before, after):
    query = urlencode({"token": secret})
    text = f"{before} {scheme}://{quote(user, safe='')}@{host}{port}{path}?{query} {after}"
    ending = query[len(query.rstrip(".")):]  # a full stop after a URL is read as the sentence's
    assert redact(text) == f"{before} {origin(scheme, host, port, path)}?…{ending} {after}"


@EXAMPLES
@given(schemes, hosts, ports, paths, plain_text, plain_text)
def test_a_url_without_secrets_is_unchanged(scheme, host, port, path, before, after):
    text = f"{before} {origin(scheme, host, port, path)} {after}"
    assert redact(text) == text


@EXAMPLES
@given(plain_text)
def test_text_without_urls_is_unchanged(text):
    assert redact(text) == text


urls = st.builds(lambda s, u, h, p, path, q: f"{s}://{u}{h}{p}{path}{q}", schemes,
                 st.one_of(st.just(""), st.text(QUERY_CHARS, max_size=8).map(lambda u: u + "@")),
                 hosts, ports, paths, st.one_of(st.just(""), st.text(QUERY_CHARS, max_size=12).map(lambda q: "?" + q)))


@EXAMPLES
@given(st.lists(st.one_of(st.text(max_size=12), urls, st.sampled_from(["/", "?", "#", "@", "://", " "])), max_size=8))
def test_redacting_twice_changes_nothing(parts):
    once = redact("".join(parts))
    assert redact(once) == once


@pytest.mark.parametrize(("text", "expected"), [
    # What requests says of a private ICS address that answered 404.
    ("404 Client Error: Not Found for url: https://calendar.example.com/ical/x/private-0123abcd/basic.ics?token=S",
     "404 Client Error: Not Found for url: https://calendar.example.com/ical/x/private-…/basic.ics?…"),
    # What urllib3 says when the server does not answer: the path alone.
    ("Max retries exceeded with url: /ical/basic.ics?token=S (Caused by NewConnectionError(...))",
     "Max retries exceeded with url: /ical/basic.ics?… (Caused by NewConnectionError(...))"),
    ("failed: {'work': 'HTTPError: https://u:p@host:8443/cal.ics#key'}",
     "failed: {'work': 'HTTPError: https://host:8443/cal.ics#…'}"),
    ("DATABASE_URL=postgresql://loom:hunter2@db:5432/loom?sslmode=require.",
     "DATABASE_URL=postgresql://db:5432/loom?…."),
    ("webcal://p52-caldav.icloud.com/published/2/MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3",
     "webcal://p52-caldav.icloud.com/published/2/…"),
    ("https://outlook.office365.com/owa/calendar/0a1b2c@example.com/3d4e5f6a7b/calendar.ics",
     "https://outlook.office365.com/owa/calendar/0a1b2c@example.com/…/calendar.ics"),
    ("https://web.archive.org/web/2020/https://u:p@example.com/a",
     "https://web.archive.org/web/2020/https://example.com/a"),
    ("https://news.ycombinator.com/item?id=1 and/or? the end?",
     "https://news.ycombinator.com/item?… and/or? the end?"),
])
def test_known_shapes(text, expected):
    assert redact(text) == expected
