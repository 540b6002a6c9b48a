"""The score: the model's probability that an item violates the policy, read from the verdict.

The verdict is one token (``0`` or ``1``; in a JSON answer, the ``violation`` value), and the
engine returns the top-k log-probabilities of each token it generates, so the probability of
the other answer at that very place costs no extra generation:
``score = P("1") / (P("0") + P("1"))`` at the verdict token. A digit missing from the top k is
given the k-th log-probability, an upper bound, so a very sure verdict scores close to, not
exactly, 0 or 1. The score is conditional on the one reasoning the model sampled before it:
another sample of the reasoning can end elsewhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache

from batch.engine.base import FLOOR, Completion

_CHANNEL, _MESSAGE = 200005, 200008
_FIRST_SPECIAL = 199998
_FINAL = 17196  # "final" as one o200k token
_JSON_VERDICT = re.compile(r'"violation"\s*:\s*"?$')


@lru_cache(maxsize=1)
def verdict_pairs() -> dict[int, tuple[int, int]]:
    """Each verdict token -> (its "no" token, its "yes" token): digits and JSON booleans."""
    from batch.vocab import load_encoding

    encoding = load_encoding()
    pairs: dict[int, tuple[int, int]] = {}
    for no, yes in (("0", "1"), ("false", "true"), (" false", " true")):
        ids = (
            encoding.encode(no, disallowed_special=()),
            encoding.encode(yes, disallowed_special=()),
        )
        if len(ids[0]) == len(ids[1]) == 1:
            pair = (ids[0][0], ids[1][0])
            pairs[pair[0]] = pairs[pair[1]] = pair
    return pairs


def score_tokens() -> tuple[int, ...]:
    """The tokens whose log-probabilities a scored request asks for."""
    return tuple(sorted(verdict_pairs()))


def _final_start(tokens: Sequence[int]) -> int | None:
    """Where the last final-channel message's text begins."""
    from batch.vocab import load_encoding

    for index in range(len(tokens) - 1, -1, -1):
        if tokens[index] != _CHANNEL:
            continue
        try:
            end = tokens.index(_MESSAGE, index + 1)
        except ValueError:
            continue
        if end == index + 2 and tokens[index + 1] == _FINAL:  # the usual spelling
            return end + 1
        header = [t for t in tokens[index + 1 : end] if t < _FIRST_SPECIAL]
        if load_encoding().decode(header).strip().startswith("final"):
            return end + 1
    return None


def verdict_position(tokens: Sequence[int], output_format: str) -> int | None:
    """The index of the verdict token in a completion, or None."""
    from batch.vocab import load_encoding

    start = _final_start(tokens)
    if start is None:
        return None
    pairs = verdict_pairs()
    for position in range(start, len(tokens)):
        token = tokens[position]
        if token >= _FIRST_SPECIAL:
            return None
        if token not in pairs:
            continue
        if output_format != "json":
            return position
        if _JSON_VERDICT.search(load_encoding().decode(list(tokens[start:position]))):
            return position
    return None


def verdict_score(completion: Completion | None, output_format: str) -> float | None:
    """P(violation) at the verdict token, or None when there is no scored verdict token."""
    if completion is None or not completion.score_logprobs:
        return None  # no score asked for, or no verdict digit sampled
    tokens = completion.token_ids
    position = verdict_position(tokens, output_format)
    if position is None or position not in completion.score_logprobs:
        return None
    logprobs = completion.score_logprobs[position]
    no, yes = verdict_pairs()[tokens[position]]
    floor = logprobs.get(FLOOR, -math.inf)
    p_no, p_yes = (math.exp(logprobs.get(token, floor)) for token in (no, yes))
    if not (p_no + p_yes > 0):
        return None
    return p_yes / (p_no + p_yes)
