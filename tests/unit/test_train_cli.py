"""`loom train activity` reproduces the shipped classifier: same data, seed and code, same weights."""

import json

from click.testing import CliRunner

from loom_assets.cli import main
from loom_assets.models import activity


def test_training_from_the_cli_reproduces_the_shipped_artifact(tmp_path):
    out = tmp_path / "activity.pt"
    result = CliRunner().invoke(main, ["train", "activity", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    trained = json.loads(out.with_suffix(".json").read_text())
    shipped = json.loads(activity.DEFAULT_ARTIFACT.with_suffix(".json").read_text())
    # The version is a digest of the weights: equal versions mean equal weights.
    assert activity.artifact_version(out) == activity.artifact_version() == shipped["version"]
    assert trained["labels"] == shipped["labels"] == ["still", "walking", "stairs"]
    assert f"version {shipped['version']}" in result.output
    model = activity.load(out)
    assert model.version == shipped["version"]
