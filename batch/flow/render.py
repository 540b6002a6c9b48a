"""The render stage: harmony prompts as token ids, the policy prefix rendered once per policy.

A prompt is ``system + developer(policy) + user(content) + <|start|>assistant``. The first two
messages are identical for every item judged under a policy, so we render them once and
append each item's user message, which is what lets vLLM's prefix cache reuse the policy's
KV blocks. ``tests/test_render.py`` proves the result equals harmony's own
``render_conversation_for_completion`` token for token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from batch.vocab import encoding_pieces, load_encoding, plain_encoder

if TYPE_CHECKING:  # pragma: no cover
    from batch.policy.files import Policy

REASONING_EFFORTS = ("low", "medium", "high")


def _system_and_developer(policy_text: str, reasoning_effort: str) -> list:
    from openai_harmony import DeveloperContent, Message, ReasoningEffort, Role, SystemContent

    effort = {
        "low": ReasoningEffort.LOW,
        "medium": ReasoningEffort.MEDIUM,
        "high": ReasoningEffort.HIGH,
    }[reasoning_effort]
    return [
        Message.from_role_and_content(
            Role.SYSTEM, SystemContent.new().with_reasoning_effort(effort)
        ),
        Message.from_role_and_content(
            Role.DEVELOPER, DeveloperContent.new().with_instructions(policy_text)
        ),
    ]


def render_full(policy_text: str, content: str, reasoning_effort: str = "low") -> list[int]:
    """Reference rendering with harmony's conversation API (slow; used to check the fast path)."""
    from openai_harmony import Conversation, Message, Role

    encoding = load_encoding()
    messages = _system_and_developer(policy_text, reasoning_effort)
    messages.append(Message.from_role_and_content(Role.USER, content))
    return list(
        encoding.render_conversation_for_completion(
            Conversation.from_messages(messages), Role.ASSISTANT
        )
    )


@lru_cache(maxsize=16384)
def content_tokens(content: str) -> tuple[int, ...]:
    """A content's tokens, encoded once for all the policies it is judged under.

    The job plans policy-major over a batch of at most ``--batch-size`` requests, so a cache
    of this size serves every policy of a batch from one encoding; special-token text stays
    plain text (``disallowed_special=()``). Long contents are encoded in pieces
    (``batch.vocab.encoding_pieces``), so a row's cost grows linearly with its length.
    """
    encode = plain_encoder()
    pieces, _ = encoding_pieces(content)
    if len(pieces) == 1:
        return tuple(encode(content))
    tokens: list[int] = []
    for piece in pieces:
        tokens += encode(piece)
    return tuple(tokens)


@dataclass(frozen=True)
class PromptPrefix:
    """The rendered system + developer part of every prompt for one policy."""

    token_ids: tuple[int, ...]
    sha256: str
    user_open: tuple[int, ...]
    user_close: tuple[int, ...]
    assistant_open: tuple[int, ...]

    def prompt_for(self, content: str) -> list[int]:
        """Token ids of the whole prompt for one item: prefix, user message, assistant header."""
        return self.join(content_tokens(content))

    def __post_init__(self) -> None:
        # What comes before and after a content's tokens, joined once.
        object.__setattr__(self, "_head", self.token_ids + self.user_open)
        object.__setattr__(self, "_tail", self.user_close + self.assistant_open)

    def join(self, body: tuple[int, ...]) -> list[int]:
        """The whole prompt around a content's tokens."""
        return [*self._head, *body, *self._tail]

    @property
    def length(self) -> int:
        """Tokens of a prompt besides its content's."""
        return len(self._head) + len(self._tail)


def render_prefix(policy: Policy, reasoning_effort: str = "low") -> PromptPrefix:
    """Render a policy's shared prompt prefix once.

    ``sha256`` hashes the prefix token ids and the framing tokens, so it changes whenever the
    reasoning effort, the policy body or harmony's rendering changes.
    """
    if reasoning_effort not in REASONING_EFFORTS:
        raise ValueError(f"reasoning effort must be one of {REASONING_EFFORTS}")
    from openai_harmony import Conversation, Message, Role

    encoding = load_encoding()
    prefix = tuple(
        encoding.render_conversation(
            Conversation.from_messages(_system_and_developer(policy.text, reasoning_effort))
        )
    )
    # The framing of a user message is what harmony renders around empty content.
    empty_user = encoding.render(Message.from_role_and_content(Role.USER, ""))
    user_open, user_close = tuple(empty_user[:-1]), tuple(empty_user[-1:])
    assistant_open = tuple(
        encoding.render_conversation_for_completion(Conversation.from_messages([]), Role.ASSISTANT)
    )
    digest = hashlib.sha256()
    for part in (prefix, user_open, user_close, assistant_open):
        digest.update(",".join(map(str, part)).encode())
        digest.update(b"|")
    return PromptPrefix(prefix, digest.hexdigest(), user_open, user_close, assistant_open)
