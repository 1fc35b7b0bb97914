"""Stage logic: plain functions over DataFrames, no Dagster, models and clients passed in."""
