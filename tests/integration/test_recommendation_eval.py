"""The offline evaluation, small: a generated dataset's training split through a real worker;
the model's hit-rate@10 and recall@10 on the held-out split beat the popularity baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.devstack import Broker
from scripts.evaluate_recommendations import (
    evaluate,
    make_dataset,
    popularity_ranking,
    run_evaluation,
    top_unseen,
)

pytestmark = pytest.mark.integration


def test_the_dataset_has_structure_and_the_metrics_count_right() -> None:
    data = make_dataset(40, seed=3)
    assert data.heldout and set(data.heldout) <= set(data.train)
    for user, later in data.heldout.items():
        assert not later & data.trained_items(user)
    ranking = popularity_ranking(data.train)
    assert top_unseen(ranking, set(ranking[:3]), 2) == ranking[3:5]
    assert evaluate({"a": ["x", "y"], "b": ["z"]}, {"a": {"y", "w"}, "b": {"q"}}) == (0.5, 0.25)


async def test_the_model_beats_popularity_on_held_out_behaviour(
    broker: Broker, rabbit_url: str, tmp_path: Path,
) -> None:
    data = make_dataset(60, seed=2)
    report = await run_evaluation(data, broker, rabbit_url, tmp_path, within=120.0)
    print(f"model {report.model}, popularity {report.popularity}, p99 {report.p99_ms:.1f} ms")
    assert report.model[0] > report.popularity[0], report
    assert report.model[1] > report.popularity[1], report
