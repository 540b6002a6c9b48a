"""A job's prompts: each policy's rendered prefix, and the hashes that key the work under it."""

from __future__ import annotations

from dataclasses import dataclass

from batch.errors import UsageError
from batch.flow.combined import combined_policy
from batch.flow.config import JobConfig
from batch.flow.plan import settings_sha256
from batch.flow.render import PromptPrefix, render_prefix
from batch.output.store import WorkKey
from batch.policy.files import Policy


@dataclass(frozen=True)
class JobPrompts:
    """Rendered once per job; read by every stage, the manifest and every Ray actor."""

    prefixes: dict[str, PromptPrefix]  # by policy id
    seed_policy: Policy | None  # combined mode: the pseudo-policy whose hash seeds requests
    settings: str  # settings_sha256 of the job's generation settings
    routes: dict[str, str]  # by policy id: the prefilter (and audit rate) in front of the model
    model_fingerprint: str

    @classmethod
    def for_job(cls, config: JobConfig) -> JobPrompts:
        if config.combined:
            seed_policy = combined_policy(config.policies)
            shared = render_prefix(seed_policy, config.reasoning_effort)
            prefixes = {p.id: shared for p in config.policies}
        else:
            seed_policy = None
            prefixes = {p.id: render_prefix(p, config.reasoning_effort) for p in config.policies}
        routes = {
            pid: f"prefilter={pf.fingerprint};audit={config.audit_rate!r}"
            for pid, pf in config.prefilters.items()
        }
        settings = settings_sha256(config.reasoning_effort, config.sampling)
        return cls(prefixes, seed_policy, settings, routes, config.model_fingerprint)

    def work_key(self, policy: Policy) -> WorkKey:
        """Everything besides the content that a label under this policy depends on."""
        return WorkKey(
            policy.id,
            policy.sha256,
            self.prefixes[policy.id].sha256,
            self.model_fingerprint,
            self.settings,
        )

    def check_fits(self, max_model_len: int | None, max_tokens: int) -> None:
        """Refuse a run in which no row could fit: a policy's prefix, the message framing, one
        token of content and ``max_tokens`` must fit in the context."""
        if max_model_len is None:
            return
        for policy_id, prefix in self.prefixes.items():
            framing = len(prefix.user_open) + len(prefix.user_close) + len(prefix.assistant_open)
            needed = len(prefix.token_ids) + framing + 1 + max_tokens
            if needed > max_model_len:
                raise UsageError(
                    f"policy {policy_id}: its prompt prefix is {len(prefix.token_ids)} tokens; "
                    f"with the message framing ({framing}), one token of content and "
                    f"--max-tokens {max_tokens} a prompt needs {needed} tokens, more than "
                    f"--max-model-len {max_model_len}: every row would be too_long"
                )

    def seed_sha256(self, policy: Policy) -> str:
        """The policy hash that seeds requests: the combined prompt's in combined mode."""
        return (self.seed_policy or policy).sha256
