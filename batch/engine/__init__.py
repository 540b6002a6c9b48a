"""The generation engine behind a small protocol, so tests inject fakes instead of patching vLLM."""

from batch.engine.base import Completion, Engine, GenerationRequest, SamplingSettings

__all__ = ["Completion", "Engine", "GenerationRequest", "SamplingSettings"]
