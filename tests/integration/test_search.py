"""`loom search` on a small realistic corpus in real `*_embeddings` tables (the embedded
PostgreSQL with pgvector, migrations applied): the relevant items rank first, by meaning and by
exact words; filters, links and messages; and the embedding stages of the audio and screenshot
flows feed it."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner

from loom_assets.cli import main
from loom_assets.embedded.postgres import create_database
from loom_assets.models.embeddings import DEFAULT_MODEL
from loom_assets.resources.warehouse import apply_migrations, copy_frame
from loom_assets.search import SearchError, reciprocal_rank_fusion, since_time
from loom_assets.stages.embeddings import embedding_rows
from loom_assets.windows import PARTITION_FMT, window_size

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
DEVICE = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
MODEL_VERSION = f"1+{DEFAULT_MODEL}"  # what the embedding stages' rows carry (logic 1 + model)
UI = "http://loom-ui.internal:3000"

# (flow, source_id, days ago, title, text)
CORPUS = [
    ("email", "e-flight", 3, "Booking confirmation XK7Q2P",
     "Your flight TP1351 from London Heathrow to Lisbon departs on Friday 14 June at 07:40. Seat 12A, "
     "one checked bag included. Booking reference XK7Q2P."),
    ("email", "e-dentist", 2, "Appointment reminder",
     "This is a reminder of your dental check-up with Dr. Almeida on Tuesday at 15:00. Please arrive ten "
     "minutes early."),
    ("email", "e-standup-old", 10, "Standup notes",
     "Yesterday: finished the billing migration. Today: reviewing the search pull request. Blockers: none."),
    ("email", "e-standup-new", 1, "Standup notes, Thursday",
     "Yesterday: paired on the onboarding flow. Today: fixing flaky integration tests. Blocker: waiting on "
     "staging credentials."),
    ("email", "e-bill", 5, "Your electricity bill for May",
     "The amount of 84.20 EUR will be debited from your account on 5 June."),
    ("email", "e-running", 4, "Weekly running club",
     "Saturday's long run starts at the park gate at 8 am; 15 km easy pace, coffee afterwards."),
    ("email", "e-boiler", 6, "Boiler repair",
     "The plumber will come on Monday morning to repair the boiler in the flat; please leave the key with "
     "the concierge."),
    ("email", "e-party", 8, "Party on Saturday",
     "We're celebrating Ana's 30th birthday with a dinner at Casa Pedro, 8 pm. Let me know if you can make it!"),
    ("calendar", "c-dentist", 2, "Dental check-up", "Dr. Almeida, Rua Augusta 12. Routine cleaning and x-ray."),
    ("calendar", "c-standup", 1, "Team standup", "Daily sync of the platform team on a video call, 15 minutes."),
    ("calendar", "c-1on1", 2, "1:1 with Maria", "Career growth, feedback on the quarterly planning document."),
    ("calendar", "c-flight", 3, "Flight TP1351 LHR to LIS", "Terminal 2; check-in closes 45 minutes before departure."),
    ("calendar", "c-yoga", 3, "Yoga class", "Vinyasa flow at the studio on 3rd street."),
    ("calendar", "c-review", 7, "Quarterly business review",
     "Present revenue numbers and the hiring plan to leadership."),
    ("hackernews", "h-rust", 4, "Rust's ownership model explained",
     "The borrow checker enforces that references never outlive the data they point to, which eliminates "
     "use-after-free bugs and data races without a garbage collector."),
    ("hackernews", "h-postgres", 5, "How PostgreSQL's query planner chooses indexes",
     "A walk through cost estimates, statistics, and why a sequential scan sometimes beats an index scan on "
     "small tables."),
    ("hackernews", "h-sqlite", 9, "SQLite as an application file format",
     "Using an embedded database for desktop apps: transactions, durability and easy backups."),
    ("hackernews", "h-llm", 2, "Running language models on a laptop",
     "Quantisation to 4 bits lets a 7B parameter model run on a CPU with acceptable latency."),
    ("hackernews", "h-webb", 12, "The James Webb telescope's latest images",
     "Infrared observations reveal galaxies formed just 300 million years after the Big Bang."),
    ("hackernews", "h-go", 6, "Go generics one year later",
     "Type parameters have simplified collection libraries, but most codebases use them sparingly."),
    ("audio", "a-groceries", 1, None,
     "we need milk eggs some bread and maybe bananas, oh and coffee filters, can you grab them on the way home"),
    ("audio", "a-deploy", 3, None,
     "okay let's start, the deployment is scheduled for Wednesday and Tom will handle the schema changes"),
    ("audio", "a-mum", 5, None, "hi mum, yes I'll visit on Sunday for lunch, should I bring dessert"),
    ("audio", "a-podcast", 7, None,
     "in today's episode we talk about training for your first marathon and how to avoid injuries"),
    ("screenshot_ocr", "s-boarding", 3, "Boarding pass",
     "Boarding pass TAP Air Portugal TP1351 LHR to LIS Gate B32 Boarding 07:05 Seat 12A"),
    ("screenshot_ocr", "s-recipe", 2, "Banana bread",
     "Ingredients: 3 ripe bananas, 250 g flour, 2 eggs, 100 g butter. Bake 60 minutes at 175 C."),
    ("screenshot_ocr", "s-compiler", 1, "Build failed",
     "error[E0502]: cannot borrow `items` as mutable because it is also borrowed as immutable"),
    ("screenshot_ocr", "s-weather", 3, "Weather", "Lisbon: sunny, 27 C, wind 12 km/h"),
    ("screenshot_ocr", "s-bank", 4, "Transfer complete",
     "You sent 120.00 EUR to Maria Silva. Reference: dinner split."),
]
FLIGHT = {"e-flight", "c-flight", "s-boarding"}
TRAVEL = "air travel reservation abroad"  # no word in common with the corpus


def recorded_at(source_id: str) -> datetime:
    days = next(days for _, sid, days, _, _ in CORPUS if sid == source_id)
    return NOW - timedelta(days=days, hours=1)


def window_of(flow: str, at: datetime) -> datetime:
    size = window_size(flow)
    return datetime.fromtimestamp(at.timestamp() // size.total_seconds() * size.total_seconds(), UTC)


def ensure_embedding_table(conn: psycopg.Connection, table: str) -> None:
    """The email, calendar and hackernews tables come from their flows' migrations; made here
    the same way where this tree has not got them."""
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        conn.execute("SELECT loom_create_embedding_table(%s)", (table,))


@pytest.fixture(scope="module")
def corpus_url(postgres):
    """A migrated database holding CORPUS, written as the embedding stages write (embedding_rows,
    then the IO manager's model_version and copy_frame), plus one row of another model."""
    from loom_assets.resources.models import Models

    url = create_database(postgres.uri, f"loom_search_{uuid.uuid4().hex[:10]}")
    apply_migrations(url)
    embedder = Models().embedder()
    items = pd.DataFrame(CORPUS, columns=["flow", "source_id", "days", "title", "text"])
    items["recorded_at"] = [recorded_at(s) for s in items["source_id"]]
    items["window_start"] = [window_of(f, t) for f, t in zip(items["flow"], items["recorded_at"], strict=True)]
    items["device_id"] = DEVICE
    # What the flows embed: the title (subject, event or article title, heading) and the text.
    items["text"] = [f"{title}\n\n{text}" if title else text for title, text in zip(items["title"], items["text"],
                                                                                     strict=True)]
    with psycopg.connect(url) as conn:
        for flow, group in items.groupby("flow"):
            ensure_embedding_table(conn, f"{flow}_embeddings")
            rows = embedding_rows(group, source_id=group["source_id"], title=group["title"], text=group["text"],
                                  embedder=embedder)
            copy_frame(conn, f"{flow}_embeddings", rows.assign(model_version=MODEL_VERSION))
        # A row of another embedding model whose vector is the query's own: comparing it with
        # the query would put it first.
        stale = embedding_rows(items.iloc[:1], source_id=pd.Series(["e-stale-model"]), title=None,
                               text=pd.Series(["zebra migration documentary"]), embedder=embedder)
        stale["embedding"] = list(embedder.embed([TRAVEL]))
        copy_frame(conn, "email_embeddings", stale.assign(model_version="1+paraphrase-multilingual-MiniLM-L12-v2"))
    return url


@pytest.fixture
def database(corpus_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", corpus_url)
    monkeypatch.setenv("LOOM_DAGSTER_URL", UI)
    return corpus_url


def search(*args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["search", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def ids(hits: list[dict]) -> list[str]:
    return [h["source_id"] for h in hits]


@pytest.mark.parametrize(("query", "expected"), [
    ("dentist", {"e-dentist", "c-dentist"}),  # the items say "dental"
    (TRAVEL, {"e-flight", "c-flight", "s-boarding"}),
])
def test_a_paraphrase_with_no_shared_words_finds_items_by_meaning(database, query, expected):
    hits = search(query, "--limit", "5")
    assert set(ids(hits)[:2]) <= expected, ids(hits)
    assert all(h["text_rank"] is None for h in hits)  # no word in common: the vectors found them
    assert hits[0]["similarity"] > 0.2


def test_vectors_of_another_model_are_never_compared(database):
    # The other model's row holds this very query's vector: compared, it would come first.
    assert "e-stale-model" not in ids(search(TRAVEL, "--limit", "50"))


def test_an_exact_rare_token_finds_its_email_by_full_text(database):
    hits = search("XK7Q2P")
    assert ids(hits)[0] == "e-flight"
    assert hits[0]["text_rank"] > 0
    assert "«XK7Q2P»" in hits[0]["snippet"]  # ts_headline marks the matched word
    assert hits[0]["title"] == "Booking confirmation XK7Q2P"


@pytest.mark.parametrize(("query", "expected"), [
    ("what do we need to buy at the supermarket", {"a-groceries"}),
    ("memory safety in systems programming languages", {"h-rust"}),
    ("standup notes", {"e-standup-new", "e-standup-old"}),
    ("payments I made", {"s-bank"}),
    ("PostgreSQL planner", {"h-postgres"}),
    ("Lisbon weather", {"s-weather"}),
])
def test_relevant_items_rank_first(database, query, expected):
    assert set(ids(search(query))[:len(expected)]) == expected


def test_flow_restricts_to_one_table(database):
    assert {"email", "calendar"} <= {h["flow"] for h in search("standup")}
    hits = search("standup", "--flow", "calendar")
    assert ids(hits)[0] == "c-standup" and {h["flow"] for h in hits} == {"calendar"}


def test_since_takes_a_duration_or_a_date(database):
    assert set(ids(search("standup notes"))[:2]) == {"e-standup-new", "e-standup-old"}
    recent = ids(search("standup notes", "--since", "3d"))
    assert "e-standup-new" in recent and "e-standup-old" not in recent
    day = (NOW - timedelta(days=5)).astimezone().date().isoformat()
    assert all(datetime.fromisoformat(h["recorded_at"]) >= datetime.fromisoformat(day).astimezone()
               for h in search("notes", "--since", day, "--limit", "50"))


def test_every_hit_links_back_to_its_row_and_its_partition(database):
    hit = search("XK7Q2P")[0]
    window = window_of("email", recorded_at("e-flight"))
    assert hit["link"] == "email_messages message_id=e-flight"
    assert hit["url"] == f"{UI}/assets/email/embeddings?partition={window.strftime(PARTITION_FMT)}"
    assert datetime.fromisoformat(hit["recorded_at"]) == recorded_at("e-flight")
    text = CliRunner().invoke(main, ["search", "XK7Q2P", "--limit", "1"], catch_exceptions=False).output
    local = recorded_at("e-flight").astimezone().isoformat(sep=" ", timespec="minutes")
    assert local in text and "[email]" in text and "email_messages message_id=e-flight" in text


def test_nothing_relevant_says_so(database):
    result = CliRunner().invoke(main, ["search", "qwxz vbnmk plokijuh"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output.strip() == "No matches for 'qwxz vbnmk plokijuh'."


def test_an_unknown_flow_or_a_bad_since_is_a_clear_error(database):
    result = CliRunner().invoke(main, ["search", "dentist", "--flow", "fax"])
    assert result.exit_code == 1
    assert "flow 'fax' has no embeddings table; searchable flows:" in result.output
    assert all(flow in result.output for flow in ("audio", "calendar", "email", "hackernews", "screenshot_ocr"))
    result = CliRunner().invoke(main, ["search", "dentist", "--since", "last tuesday"])
    assert result.exit_code == 1 and "--since 'last tuesday'" in result.output


def test_reciprocal_rank_fusion_rewards_agreement():
    scores = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert sorted(scores, key=scores.get, reverse=True) == ["a", "c", "b"]


def test_since_parses_durations_dates_and_refuses_the_rest():
    assert since_time("7d", NOW) == NOW - timedelta(days=7)
    assert since_time("90m", NOW) == NOW - timedelta(minutes=90)
    assert since_time("2w", NOW) == NOW - timedelta(weeks=2)
    assert since_time("2025-06-01T09:00+02:00", NOW) == datetime(2025, 6, 1, 7, tzinfo=UTC)
    assert since_time("2025-06-01", NOW) == datetime(2025, 6, 1).astimezone()  # local midnight
    with pytest.raises(SearchError):
        since_time("yesterday", NOW)


def test_the_audio_and_screenshot_embedding_stages_make_their_texts_searchable(postgres, monkeypatch):
    """The stage assets themselves (Dagster, the IO manager) from rows of their source tables."""
    from dagster import materialize

    from loom_assets import definitions
    from loom_assets.flows import audio, screenshot_ocr

    url = create_database(postgres.uri, f"loom_search_{uuid.uuid4().hex[:10]}")
    apply_migrations(url)
    monkeypatch.setenv("DATABASE_URL", url)
    at = NOW - timedelta(hours=2)
    audio_window, ocr_window = window_of("audio", at), window_of("screenshot_ocr", at)
    transcripts_version = audio.transcripts.code_versions_by_key[audio.transcripts.key]
    text_version = screenshot_ocr.text.code_versions_by_key[screenshot_ocr.text.key]
    head = {"device_id": DEVICE, "recorded_at": at}
    with psycopg.connect(url) as conn:
        copy_frame(conn, "audio_transcripts", pd.DataFrame([
            {**head, "window_start": audio_window, "model_version": transcripts_version, "segment_id": sid,
             "text": text, "word_count": len(text.split()), "transcriber": "whisper-tiny.en"}
            for sid, text in [("seg-1", "remind me to water the tomato plants tonight"), ("seg-2", "")]]))
        copy_frame(conn, "screenshot_ocr_text", pd.DataFrame([
            {**head, "window_start": ocr_window, "model_version": text_version,
             "source_topic": "device.image.screenshot.raw", "source_partition": 0, "source_offset": offset, "message_id": mid, "duplicate_of": duplicate,
             "word_count": 6, "text": "Invoice 2291\n\nPayment due in 14 days",
             "blocks": [{"kind": "heading", "text": "Invoice 2291"},
                        {"kind": "paragraph", "text": "Payment due in 14 days"}]}
            for offset, mid, duplicate in [(1, "shot-1", None), (2, "shot-2", "shot-1")]]))

    for flow, window in [(audio, audio_window), (screenshot_ocr, ocr_window)]:
        result = materialize(flow.FLOW.assets, selection=[flow.embeddings.key],
                             partition_key=window.strftime(PARTITION_FMT), resources=definitions.resources())
        assert result.success

    with psycopg.connect(url) as conn:
        written = conn.execute(
            "SELECT source_id, title, model_version FROM audio_embeddings UNION ALL"
            " SELECT source_id, title, model_version FROM screenshot_ocr_embeddings ORDER BY 1").fetchall()
    # The silent segment and the near-duplicate screenshot are not embedded.
    assert written == [("seg-1", None, MODEL_VERSION), ("shot-1", "Invoice 2291", MODEL_VERSION)]
    assert ids(search("garden watering", "--flow", "audio")) == ["seg-1"]
    hit = search("invoice payment")[0]
    assert (hit["source_id"], hit["link"]) == ("shot-1", "screenshot_ocr_text message_id=shot-1")
