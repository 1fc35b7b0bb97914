"""Fetchers: scheduled pulls from the outside world (IMAP, calendars, Hacker News) that publish
to Kafka raw topics, so fetched data gets the same windows, lineage and reprocessing as device
data. Each module is a plain `fetch(account, cursor, now)` function plus its accounts."""
