"""The text-embedding stage every text-bearing flow ends with (docs/architecture.md#text-embeddings):
declared by what it embeds, so `loom search` finds it."""

import inspect
from collections.abc import Callable
from typing import NamedTuple

import pandas as pd
from dagster import AssetsDefinition, RetryPolicy

from loom_assets.flows.base import Flow
from loom_assets.models.embeddings import embedder_version
from loom_assets.resources.models import Models
from loom_assets.settings import settings
from loom_assets.stages.embeddings import embedding_rows

# Every flow's text_embedding stage: 2 retries, 10 s apart (docs/architecture.md#text-embeddings).
EMBEDDING_RETRY = RetryPolicy(max_retries=2, delay=10)


class Embedded(NamedTuple):
    """What a flow embeds of its stage's rows: the items (with window_start, device_id,
    recorded_at), each one's id in that stage's table, its title (or None) and its text."""

    items: pd.DataFrame
    source_id: pd.Series
    title: pd.Series | None
    text: pd.Series


def embeddings_stage(flow: Flow, of: str, embedded: Callable[[pd.DataFrame], Embedded], description: str,
                     logic_version: str = "1") -> AssetsDefinition:
    """The stage `[flow, embeddings]`: the vectors (LOOM_EMBEDDING_MODEL, all-MiniLM-L6-v2 by
    default) of what `embedded` picks from the rows of the stage `of`."""

    def embeddings(models: Models, **rows: pd.DataFrame) -> pd.DataFrame:
        chosen = embedded(rows[of])
        return embedding_rows(chosen.items, source_id=chosen.source_id, title=chosen.title, text=chosen.text,
                              embedder=models.embedder())

    # The stage reads the rows of `of`: its signature says so, as a hand-written stage's would.
    embeddings.__signature__ = inspect.Signature([
        inspect.Parameter(of, inspect.Parameter.KEYWORD_ONLY, annotation=pd.DataFrame),
        inspect.Parameter("models", inspect.Parameter.KEYWORD_ONLY, annotation=Models),
    ])
    embeddings.__doc__ = description
    return flow.stage(logic_version=logic_version, rules_version=embedder_version(settings().embedding_model),
                      retry=EMBEDDING_RETRY)(embeddings)
