"""Benchmark of the text-embedding stage against a bare sentence-transformers loop, and of
`loom search` latency on a large embeddings table.

Run from the repository root:

    .venv/bin/python bench/embed.py [--sentences 2000] [--rows 100000] [--queries 20]

What it does, in one process against an embedded PostgreSQL (with pgvector) it starts in a
temporary folder and removes at the end (no broker: nothing here reads Kafka):

1. Applies the `sql/` migrations and makes a table `bench_embeddings` with
   `loom_create_embedding_table` (HNSW cosine index, GIN full-text index), as a flow's would be.
2. Generates N short texts from templates (emails, events, HN titles, transcripts, screen text).
3. **Loom embedding stage**: `embedding_rows` with the real embedder (the bundled
   all-MiniLM-L6-v2 through `Models().embedder()`, batch 32), plus the IO manager's write of
   the result (DELETE of the window + `copy_frame`, binary COPY into the indexed table, in one
   transaction), one window of N items.
   Sentences/s = N / wall time of both; the embedding and the write are also printed apart.
4. **Bare baseline** on the same texts: `SentenceTransformer.encode` over slices of 32 in a
   Python loop (the same model object, `normalize_embeddings=True`), nothing written.
5. Runs 3 and 4 interleaved `--repeats` times (other processes share the CPU) and prints the
   best rate of each side and the ratio loom/bare (printed, never asserted).
6. **Search latency**: fills `bench_embeddings` to R rows, then runs Q queries through
   `loom_assets.search.ranked_hits` (the SQL of `loom search`: HNSW nearest neighbours plus
   full text, merged by reciprocal rank fusion) and prints p50/p95, with the query's own
   embedding time apart. The R rows reuse the N texts with a random suffix and their real
   vectors plus Gaussian noise (renormalised): embedding 100k distinct texts would take about
   half an hour on 2 cores, while vectors clustered around real ones keep the HNSW graph's
   shape realistic (uniform random vectors are a harder, unrealistic case). The rows are
   loaded with the HNSW index dropped and the index built afterwards (both times printed), and
   the plans are checked to use the HNSW and GIN indexes.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.landing import peak_rss_mib  # noqa: E402 - needs the repository root on sys.path

TABLE = "bench_embeddings"
MODEL_VERSION_LOGIC = "1"
DEVICE = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"

PEOPLE = ["Maria", "Tom", "Ana", "the landlord", "Dr. Almeida", "the platform team", "Priya", "our accountant"]
TOPICS = ["the flight to Lisbon", "the quarterly review", "the dentist appointment", "the billing migration",
          "the grocery list", "the Rust rewrite", "the database upgrade", "the marathon training plan",
          "the boiler repair", "the birthday dinner", "the hiring plan", "the search feature",
          "the electricity bill", "the conference talk", "the apartment lease", "the kids' school trip"]
ACTIONS = ["moved", "confirmed", "cancelled", "asked about", "sent notes on", "needs a decision on",
           "shared a draft of", "is waiting for", "reviewed", "wants to discuss"]
WHEN = ["on Monday", "tomorrow morning", "next week", "at 3 pm", "before Friday", "this evening",
        "after lunch", "by the end of the month"]
HN = ["Show HN: a tiny {x} written in Rust", "Why {x} is harder than it looks", "PostgreSQL {x} explained",
      "How we scaled {x} to a million users", "The history of {x}", "Ask HN: best resources on {x}?"]
HN_X = ["vector search", "query planning", "garbage collection", "WebAssembly", "consensus protocols",
        "embedded databases", "type inference", "CRDTs", "SIMD parsing", "time-series compression"]
QUERIES = ["when is my flight", "dentist", "notes from the quarterly review", "Rust", "database upgrade plan",
           "what to buy for dinner", "bills to pay", "marathon", "who needs a decision from me", "vector search",
           "school trip", "apartment", "hiring", "boiler", "conference talk slides", "billing migration status",
           "birthday", "garbage collection", "lease renewal", "team notes"]


def texts(count: int, seed: int = 7) -> list[str]:
    """Short texts shaped like Loom's sources: mails, events, HN titles, transcripts, screens."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(f"Subject: {rng.choice(TOPICS).capitalize()}\n\n{rng.choice(PEOPLE)} {rng.choice(ACTIONS)} "
                       f"{rng.choice(TOPICS)} {rng.choice(WHEN)}. Let me know what you think.")
        elif kind == 1:
            out.append(rng.choice(HN).format(x=rng.choice(HN_X)) + f" ({rng.randint(10, 900)} points)")
        elif kind == 2:
            out.append(f"okay so {rng.choice(PEOPLE)} {rng.choice(ACTIONS)} {rng.choice(TOPICS)}, "
                       f"we should sort it out {rng.choice(WHEN)}")
        else:
            out.append(f"{rng.choice(TOPICS).title()} | {rng.choice(WHEN)} | {rng.choice(PEOPLE)}")
    return out


@contextmanager
def database(prefix: str):
    """An embedded PostgreSQL in a temporary folder with a migrated database; removed afterwards."""
    from loom_assets.embedded.postgres import create_database, start_postgres
    from loom_assets.resources.warehouse import apply_migrations

    work = Path(tempfile.mkdtemp(prefix=prefix))
    server = None
    try:
        t0 = time.monotonic()
        server = start_postgres(work / "postgres")
        url = create_database(server.uri, "loom_bench")
        apply_migrations(url)
        print(f"PostgreSQL up and migrated in {time.monotonic() - t0:.1f}s", flush=True)
        yield url
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def items_frame(count: int, start: datetime):
    import pandas as pd

    return pd.DataFrame({
        "window_start": pd.Series([start] * count, dtype="datetime64[us, UTC]"),
        "device_id": DEVICE,
        "recorded_at": pd.Series([start + timedelta(seconds=i) for i in range(count)], dtype="datetime64[us, UTC]"),
        "item_id": np.arange(count),
    })


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000, help="texts embedded by both sides")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the table searched")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side (best kept)")
    args = parser.parse_args()
    began = time.monotonic()

    with database("loom-bench-embed-") as url:
        import pandas as pd
        import psycopg

        from loom_assets.models.embeddings import BATCH_SIZE
        from loom_assets.resources.models import Models
        from loom_assets.resources.warehouse import copy_frame
        from loom_assets.search import Table, ranked_hits, sql_params
        from loom_assets.stages.embeddings import embedding_rows

        t0 = time.monotonic()
        embedder = Models().embedder()
        print(f"model loaded in {time.monotonic() - t0:.1f}s ({embedder.version}, {embedder.dimensions} dims, "
              f"device {embedder.model.device})", flush=True)
        model_version = f"{MODEL_VERSION_LOGIC}+{embedder.version}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT loom_create_embedding_table(%s)", (TABLE,))

        corpus = texts(args.sentences)
        embedder.embed(corpus[:64])  # warm-up (first batches pay for lazy initialisation)

        # -- Loom (the stage function and the IO manager's DELETE + COPY of the window) against a bare
        # encode loop, interleaved and repeated: the best of each side is kept, since other
        # processes share the CPU.
        now = datetime.now(UTC).replace(microsecond=0)
        items = items_frame(len(corpus), now - timedelta(hours=1))
        model = embedder.model
        loom_runs, bare_runs, whole_runs = [], [], []
        for _ in range(args.repeats):
            t0 = time.monotonic()
            rows = embedding_rows(items, source_id=items["item_id"], title=None, text=pd.Series(corpus),
                                  embedder=embedder)
            embedded = time.monotonic() - t0
            with psycopg.connect(url) as conn, conn.transaction():
                conn.execute(f'DELETE FROM "{TABLE}" WHERE window_start = %s', (items["window_start"].iloc[0],))
                copy_frame(conn, TABLE, rows.assign(model_version=model_version))
            loom_runs.append((time.monotonic() - t0, embedded))

            t0 = time.monotonic()
            bare = [model.encode(corpus[i:i + BATCH_SIZE], batch_size=BATCH_SIZE, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
                    for i in range(0, len(corpus), BATCH_SIZE)]
            bare_runs.append(time.monotonic() - t0)

            # sentence-transformers' own batching: one call, texts sorted by length (less padding).
            t0 = time.monotonic()
            model.encode(corpus, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
            whole_runs.append(time.monotonic() - t0)
        loom_s, embedded = min(loom_runs)
        bare_s, whole_s = min(bare_runs), min(whole_runs)
        loom_rate, bare_rate, whole_rate = len(corpus) / loom_s, len(corpus) / bare_s, len(corpus) / whole_s
        same = np.allclose(np.vstack(bare), np.stack(rows["embedding"]), atol=1e-4)

        # -- search latency on R rows --------------------------------------------------------------
        rng = np.random.default_rng(11)
        base = np.stack(rows["embedding"])
        with psycopg.connect(url, autocommit=True) as conn:
            hnsw = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
                                (TABLE, "%hnsw%")).fetchone()[0]
            hnsw_def = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (hnsw,)).fetchone()[0]
            conn.execute(f'DROP INDEX "{hnsw}"')
        extra = max(0, args.rows - len(corpus))
        t0 = time.monotonic()
        words = np.array(["alpha", "budget", "ticket", "garden", "invoice", "sprint", "kernel", "recipe"])
        with psycopg.connect(url) as conn:
            for start in range(0, extra, 20_000):
                n = min(20_000, extra - start)
                pick = rng.integers(0, len(corpus), n)
                vectors = base[pick] + rng.normal(0, 0.03, (n, base.shape[1])).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                # A month of rows: the table's daily partitions (or chunks) each have their own index.
                chunk = items_frame(n, now - timedelta(days=30))
                chunk["recorded_at"] = now - pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s")
                copy_frame(conn, TABLE, pd.DataFrame({
                    "window_start": chunk["recorded_at"].dt.floor("h"), "device_id": DEVICE,
                    "recorded_at": chunk["recorded_at"], "source_id": [f"r{start + i}" for i in range(n)],
                    "title": None,
                    "body": [f"{corpus[p]} {w}" for p, w in zip(pick, rng.choice(words, n), strict=True)],
                    "embedding": list(vectors), "model_version": model_version,
                }))
                conn.commit()
        load_s = time.monotonic() - t0
        t0 = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute(hnsw_def.replace(" ON ONLY ", " ON "))  # a partitioned table's index covers its partitions
            conn.execute(f'ANALYZE "{TABLE}"')
            total = conn.execute(f'SELECT count(*) FROM "{TABLE}"').fetchone()[0]
            partitions = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass",
                                      (TABLE,)).fetchone()[0]
        index_s = time.monotonic() - t0

        table = Table("bench", TABLE, embedder.dimensions)
        queries = (QUERIES * (args.queries // len(QUERIES) + 1))[:args.queries]
        embed_ms, search_ms, hits_found, text_matches = [], [], [], []
        with psycopg.connect(url) as conn:
            ranked_hits(conn, queries[0], embedder.embed([queries[0]])[0], embedder.version, [table])  # warm-up
            for query in queries:
                t0 = time.perf_counter()
                vector = embedder.embed([query])[0]
                t1 = time.perf_counter()
                hits = ranked_hits(conn, query, vector, embedder.version, [table], limit=10)
                t2 = time.perf_counter()
                embed_ms.append((t1 - t0) * 1000)
                search_ms.append((t2 - t1) * 1000)
                hits_found.append(len(hits))
            # Each method alone, per table (the SQL ranked_hits runs), for the same queries.
            method_ms: dict[str, list[float]] = {name: [] for name in plan_statements(table)}
            for query in queries:
                params = sql_params(query, embedder.embed([query])[0], embedder.version, None, 10)
                for name, statement in plan_statements(table).items():
                    t0 = time.perf_counter()
                    matched = conn.execute(statement, params).fetchall()
                    method_ms[name].append((time.perf_counter() - t0) * 1000)
                    if name == "full text":
                        text_matches.append(len(matched))
            conn.rollback()
            plans = {}
            for name, statement in plan_statements(table).items():
                params = sql_params("invoice", embedder.embed(["invoice"])[0], embedder.version, None, 10)
                plan = conn.execute(f"EXPLAIN {statement.as_string(conn)}", params).fetchall()
                plans[name] = " ".join(line[0] for line in plan)

        rates = lambda seconds: [round(len(corpus) / t, 1) for t in seconds]  # noqa: E731
        print()
        print(f"embedding stage, {len(corpus)} texts (mean {np.mean([len(t) for t in corpus]):.0f} chars), "
              f"batch {BATCH_SIZE}, {embedder.model.device}:")
        print(f"    best of {args.repeats} interleaved runs each; all runs loom {rates(r[0] for r in loom_runs)}, "
              f"bare loop {rates(bare_runs)}, one call {rates(whole_runs)} sentences/s")
        print(f"    loom (embedding_rows + COPY) : {loom_rate:8.1f} sentences/s  ({embedded:.1f}s embedding, "
              f"{loom_s - embedded:.2f}s writing)")
        print(f"    bare encode loop             : {bare_rate:8.1f} sentences/s  (same vectors: {same})")
        print(f"    bare, one encode call        : {whole_rate:8.1f} sentences/s  (all N texts, batch_size 32)")
        print(f"    ratio loom/bare loop         : {loom_rate / bare_rate:8.2f}")
        print(f"    ratio loom/one encode call   : {loom_rate / whole_rate:8.2f}")
        print(f"search, {total:,} rows in {TABLE} ({partitions} partitions): loaded in {load_s:.1f}s, "
              f"HNSW index built in {index_s:.1f}s")
        print(f"    {len(queries)} queries, limit 10: search SQL p50 {percentile(search_ms, 50):.1f} ms, "
              f"p95 {percentile(search_ms, 95):.1f} ms, max {max(search_ms):.1f} ms; query embedding p50 "
              f"{percentile(embed_ms, 50):.1f} ms; hits per query {min(hits_found)}–{max(hits_found)}")
        for name, times in method_ms.items():
            print(f"    {name} alone: p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms")
        for name, plan in plans.items():
            # Index names as PostgreSQL makes them for sql/0010's unnamed indexes.
            hnsw_used, gin_used = "_embedding_idx" in plan, "_to_tsvector_idx" in plan
            print(f"    {name} plan uses the HNSW index: {hnsw_used}, the GIN index: {gin_used}")
        print(f"peak RSS {peak_rss_mib():,.0f} MiB; total bench time {time.monotonic() - began:.0f}s")


def plan_statements(table):
    from loom_assets.search import matching_sql, nearest_sql

    return {"semantic": nearest_sql(table, None), "full text": matching_sql(table, None)}


if __name__ == "__main__":
    main()
