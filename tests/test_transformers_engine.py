"""The Transformers engine's parts that need no model: its settings and its continuous path's
score (the engine itself runs for real in tests/integration/test_other_engines_real.py)."""

from __future__ import annotations

import math

import pytest

from batch.engine.base import Completion
from batch.engine.transformers_continuous import sampled_against_the_rest
from batch.engine.transformers_engine import TransformersConfig
from batch.flow.score import verdict_pairs, verdict_score


def test_a_batching_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match="batching must be one of"):
        TransformersConfig("model", batching="dynamic")


@pytest.mark.parametrize("p_sampled", [0.97, 0.6, 0.2])
def test_the_continuous_score_weighs_the_sampled_verdict_against_the_rest(p_sampled):
    """Only the sampled token's log-probability comes back: the other digit gets the rest."""
    no, yes = next(iter(set(verdict_pairs().values())))
    final = [200005, 17196, 200008]  # <|channel|>final<|message|>, then the digit
    for digit, p_yes in ((yes, p_sampled), (no, 1 - p_sampled)):
        tokens = [*final, digit, 200002]
        logprobs = {3: sampled_against_the_rest(digit, math.log(p_sampled))}
        score = verdict_score(Completion(tokens, "stop", 0, logprobs), "binary")
        assert score == pytest.approx(p_yes)


def test_a_certain_verdict_scores_certain():
    no, yes = next(iter(set(verdict_pairs().values())))
    tokens = [200005, 17196, 200008, yes, 200002]
    completion = Completion(tokens, "stop", 0, {3: sampled_against_the_rest(yes, 0.0)})
    assert verdict_score(completion, "binary") == 1.0
