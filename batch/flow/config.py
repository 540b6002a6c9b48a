"""What a labelling run does: the validated configuration every stage and runner reads."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batch.engine.base import SamplingSettings
from batch.errors import UsageError
from batch.flow.read import InputFile
from batch.policy.files import Policy

if TYPE_CHECKING:  # pragma: no cover
    from batch.prefilter.model import Prefilter

SEPARATE, COMBINED = "separate", "combined"  # --multi-policy modes
RUNNERS = ("local", "ray")


@dataclass
class JobConfig:
    """What a labelling run does; everything here lands in the manifest.

    Field names are the command line's option names (``batch_size`` is ``--batch-size``).
    """

    inputs: list[InputFile]
    policies: list[Policy]
    output: str
    model: str
    model_fingerprint: str
    reasoning_effort: str = "low"
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    id_column: str = "id"
    text_column: str = "text"
    chunk_size: int = 1000
    batch_size: int = 4096  # requests planned and committed together (one commit)
    scores: bool = True  # ask for verdict-token log-probabilities: the score column
    max_in_flight: int | None = None  # requests the engine holds at once; None: 4 x its slots
    max_model_len: int | None = None
    force: bool = False  # redo work even where an earlier run's output exists
    retry_failed: bool = False  # only retry failed rows of existing output
    max_attempts: int = 3  # tries per row for parse_error, truncated and engine_error
    on_bad_file: str = "fail"  # "skip": record unreadable files and go on
    skipped_files: list[dict[str, str]] = field(default_factory=list)  # found before the run
    multi_policy: str = SEPARATE  # "combined": one request per item for all policies
    reuse: bool = True  # carry over identical earlier labels from the output's label store
    sample: int | None = None  # label only this many rows, drawn at random (reproducibly)
    sample_seed: int = 0
    job_spec: dict[str, Any] | None = None  # the resolved job spec, for ``run``
    prefilters: dict[str, Prefilter] = field(default_factory=dict)  # by policy id
    audit_rate: float = 0.0  # share of prefiltered items sent to the model anyway
    prefilter_mismatch_allowed: list[str] = field(default_factory=list)  # policy ids
    worker: dict[str, int] = field(default_factory=lambda: {"index": 0, "count": 1})
    runner: str = "local"
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def __post_init__(self) -> None:
        """Refuse combinations no run can honour (the one place they are checked)."""
        if self.multi_policy not in (SEPARATE, COMBINED):
            raise UsageError(f"multi_policy must be {SEPARATE!r} or {COMBINED!r}")
        if self.runner not in RUNNERS:
            raise UsageError(f"runner must be one of {', '.join(RUNNERS)}")
        if self.on_bad_file not in ("fail", "skip"):
            raise UsageError("on_bad_file must be 'fail' or 'skip'")
        if self.sample is None:
            return
        if self.force:
            raise UsageError("--sample and --force cannot be combined: --force redoes whole chunks")
        if self.worker.get("count", 1) > 1:
            raise UsageError("--sample draws from all inputs: run it on one worker")
        if self.runner != "local":
            raise UsageError("--sample draws from all inputs: run it with --runner local")

    @property
    def combined(self) -> bool:
        return self.multi_policy == COMBINED
