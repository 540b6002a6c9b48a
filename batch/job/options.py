"""The options of the commands that run a job, typed, named exactly as on the command line.

Click (or a job spec, through the same click parser) fills them in; the library never sees
an untyped dict of options. Defaults live in one place: the option declarations of
``batch.cli.options``.
"""

from __future__ import annotations

from dataclasses import dataclass

from batch.engine.base import SamplingSettings

MAX_VACUUM_HOURS = 24 * 366 * 100  # a century: more is a typo, and overflows delta-rs


@dataclass(frozen=True, kw_only=True)
class InputOptions:
    """Which inputs, policies and output a job works on (``label``, ``verify``)."""

    inputs: tuple[str, ...]
    policies: tuple[str, ...]
    output: str
    source_root: str | None
    id_column: str
    text_column: str
    on_bad_file: str  # "fail" or "skip"
    rehash: bool = False  # hash every input instead of trusting size and modification time
    cache_dir: str | None = None  # for a table on a store: where its local index lives


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """The model, its generation settings and the engine (``label``, ``policy test``)."""

    model: str | None
    reasoning_effort: str
    temperature: float
    top_p: float
    max_tokens: int
    tensor_parallel_size: int
    gpu_memory_utilization: float
    max_model_len: int | None
    engine_args: tuple[str, ...]
    vocab_dir: str | None
    verbose: bool
    engine: str = "vllm"  # vllm, openai, transformers
    base_url: str | None = None  # --engine openai
    served_model: str | None = None
    api_key_env: str | None = None
    model_fingerprint: str | None = None
    retry_seconds: float = 120.0

    @property
    def sampling(self) -> SamplingSettings:
        return SamplingSettings(self.temperature, self.top_p, self.max_tokens)


@dataclass(frozen=True, kw_only=True)
class LabelOptions(InputOptions, EngineOptions):
    """Everything ``label`` (and ``relabel``, ``run``) is given."""

    chunk_size: int
    batch_size: int
    max_in_flight: int | None
    scores: bool
    max_num_seqs: int | None
    seed: int
    force: bool
    retry_failed: bool
    max_attempts: int
    multi_policy: str
    reuse: bool
    sample: int | None
    sample_seed: int
    prefilters: tuple[str, ...]
    audit_rate: float
    num_workers: int
    worker_index: int
    runner: str
    replicas: int
    gpus_per_replica: float | None
    ray_address: str | None
    prefilter_allow_mismatch: bool
    compact: bool
    quiet: bool
