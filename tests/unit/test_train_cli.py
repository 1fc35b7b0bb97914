"""`loom train activity` retrains a classifier as good as the shipped one: same data, seed and
code give the same behaviour on the held-out people (not the same bytes: PyTorch's kernels, and
so the floats, differ between CPUs)."""

import json

from click.testing import CliRunner

from loom_assets.cli import main
from loom_assets.models import activity


def test_training_from_the_cli_gives_a_model_that_behaves_as_the_shipped_one(tmp_path):
    out = tmp_path / "activity.pt"
    result = CliRunner().invoke(main, ["train", "activity", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    trained = json.loads(out.with_suffix(".json").read_text())
    shipped = json.loads(activity.DEFAULT_ARTIFACT.with_suffix(".json").read_text())
    assert trained["labels"] == shipped["labels"] == ["still", "walking", "stairs"]
    assert trained["test_users"] == shipped["test_users"]
    # The version is a digest of the weights, so it names this artifact and the CLI prints it.
    assert f"version {activity.artifact_version(out)}" in result.output

    retrained, original = activity.load(out), activity.load()
    x, y = activity.heldout_windows(tuple(shipped["test_users"]))
    assert len(y) == shipped["heldout_windows"]
    retrained_labels = retrained.predict_proba(x).argmax(axis=1)
    shipped_labels = original.predict_proba(x).argmax(axis=1)
    shipped_accuracy = (shipped_labels == y).mean()
    assert abs(shipped_accuracy - shipped["heldout_accuracy"]) < 0.001  # the data is the shipped one's
    assert abs((retrained_labels == y).mean() - shipped_accuracy) <= 0.01
    assert (retrained_labels == shipped_labels).mean() >= 0.98
