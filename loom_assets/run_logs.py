"""The console logger of Loom's runs: Dagster's JSON lines (run id, step and partition tags in
`dagster_meta`, for log shippers), every record redacted first, so that an error a library
formats (an HTTP client quoting the URL it fetched) does not ship a token."""

import json
import logging
from typing import Any

from dagster import InitLoggerContext, json_console_logger, logger, serialize_value

from loom_assets.redaction import redact

# Selects the Definitions' console logger for a job's runs, at INFO (Dagster applies a code
# location's loggers only to jobs whose config names them).
RUN_LOG_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, exception text and Dagster metadata through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if isinstance(getattr(record, "dagster_meta", None), dict):
            # A copy: the same dict went to the run's event log already, and stays as it was.
            record.dagster_meta = _redacted(record.dagster_meta)
        return True


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return [_redacted(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # A Dagster event (a named tuple of Dagster's own classes): as the JSON it would be written as.
    try:
        return _redacted(json.loads(serialize_value(value)))
    except Exception:  # noqa: BLE001 - not a Dagster value: its text is all the log line holds
        return redact(str(value))


@logger(json_console_logger.config_schema,
        description="Dagster's JSON console logger, with URL credentials, queries and calendar keys redacted.")
def console_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = json_console_logger.logger_fn(init_context)
    log.addFilter(RedactingFilter())
    return log
