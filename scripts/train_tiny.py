"""Train the tiny gpt-oss to answer harmony prompts with a policy verdict (used by make_tiny_model).

The model learns the shape of an answer (short analysis, then a final message in the policy's
output format, then ``<|return|>``) and, from real labelled data, a verdict that depends on
both the developer message (which policy) and the user message (which content). Loss is taken
only on completion tokens, and the 201k-way output head is applied only at those positions:
that is what makes training fit in minutes on two CPU cores.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass

# Short on purpose: every completion token costs a 201k-way softmax in training.
SPAM_ANALYSIS = {1: "Unsolicited offer.", 0: "Ordinary message."}
HARASSMENT_ANALYSIS = {1: "Abusive content.", 0: "No abuse."}
RATIONALES = {
    "harassment": "Demeans a person.",
    "hate": "Attacks a protected group.",
    "hate_threatening": "Threatens a protected group.",
    None: "No abuse or hate.",
}
MAX_CONTENT_TOKENS = 192


@dataclass(frozen=True)
class Example:
    """One (item, policy): the prompt after the shared policy prefix, and the target answer."""

    policy_id: str
    suffix: list[int]
    completion: list[int]
    on_topic: bool = True  # False: an item from a data set this policy does not concern
    verdict_index: int = -1  # position in ``completion`` of the 0/1 verdict token
    decision_index: int = 3  # first analysis token: where the model commits to an answer
    label: int = 0


def harassment_category(labels: dict) -> str | None:
    if labels.get("H2") == 1:
        return "hate_threatening"
    if labels.get("H") == 1:
        return "hate"
    if labels.get("HR") == 1:
        return "harassment"
    return "harassment" if labels.get("harassment") == 1 else None


def completion_text(policy_id: str, label: int, category: str | None) -> str:
    """The assistant turn the model should produce, in harmony, ending with <|return|>."""
    if policy_id == "spam":
        analysis, final = SPAM_ANALYSIS[label], str(label)
    else:
        analysis = HARASSMENT_ANALYSIS[label]
        category = category if label else None
        final = json.dumps(
            {"violation": label, "policy_category": category, "rationale": RATIONALES[category]}
        )
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{final}<|return|>"
    )


def build_examples(
    policies: dict, sms: list, moderation: list, effort: str = "low"
) -> tuple[dict[str, list[int]], list[Example]]:
    """Every training item under every policy; an item a policy does not concern is a 0.

    Returns each policy's prompt prefix (rendered once) and the examples, whose ``suffix`` is
    what follows that prefix in the full harmony prompt.
    """
    from batch.flow.render import render_prefix
    from batch.vocab import load_encoding

    encoding = load_encoding()
    message_token = encoding.encode("<|message|>", allowed_special="all")[0]
    prefixes = {pid: render_prefix(policy, effort) for pid, policy in policies.items()}
    answers: dict[tuple, tuple[list[int], int, int]] = {}

    def answer(pid: str, label: int, category: str | None) -> tuple[list[int], int, int]:
        """Completion tokens and the positions of the decision and verdict tokens (cached:
        there are only a handful of distinct answers, and special-token encoding is slow)."""
        key = (pid, label, category)
        if key not in answers:
            tokens = encoding.encode(completion_text(pid, label, category), allowed_special="all")
            decision = tokens.index(message_token) + 1
            final_start = len(tokens) - 1 - tokens[::-1].index(message_token)
            verdict = tokens.index(
                encoding.encode(str(label), disallowed_special=())[0], final_start
            )
            answers[key] = (tokens, decision, verdict)
        return answers[key]

    examples = []
    for item, source in [(i, "sms") for i in sms] + [(i, "mod") for i in moderation]:
        content = encoding.encode(item.text, disallowed_special=())[:MAX_CONTENT_TOKENS]
        text = encoding.decode(content)
        for pid, prefix in prefixes.items():
            if pid == "spam":
                label = item.labels["spam"] if source == "sms" else 0
                category = None
            elif source == "sms":
                label, category = 0, None
            elif item.labels["harassment"] is None:
                continue
            else:
                label = item.labels["harassment"]
                category = harassment_category(item.labels)
            completion, decision_index, verdict_index = answer(pid, label, category)
            suffix = prefix.prompt_for(text)[len(prefix.token_ids) :]
            on_topic = (pid == "spam") == (source == "sms")
            examples.append(
                Example(pid, suffix, completion, on_topic, verdict_index, decision_index, label)
            )
    return {pid: list(p.token_ids) for pid, p in prefixes.items()}, examples


class ChunkedCrossEntropy:
    """Mean cross-entropy of ``hidden @ weight.T`` without materialising the N x 201k logits.

    Walks the vocabulary in chunks that fit in cache (forward: online log-sum-exp; backward:
    recomputed softmax per chunk). Exact; about twice as fast as the dense loss on 2 cores.
    """

    @staticmethod
    def apply(hidden, weight, targets, row_weights, chunk: int = 2048):
        """Weighted mean of the per-position losses (``row_weights`` sum to anything)."""
        import torch

        class _Fn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, h, w, t, rw):
                n = h.shape[0]
                running_max = torch.full((n,), float("-inf"))
                total = torch.zeros(n)
                for c in range(0, w.shape[0], chunk):
                    logits = h @ w[c : c + chunk].T
                    new_max = torch.maximum(running_max, logits.max(1).values)
                    total = total * torch.exp(running_max - new_max) + torch.exp(
                        logits - new_max[:, None]
                    ).sum(1)
                    running_max = new_max
                lse = running_max + torch.log(total)
                norm = rw / rw.sum()
                ctx.save_for_backward(h, w, t, lse, norm)
                return ((lse - (h * w[t]).sum(1)) * norm).sum()

            @staticmethod
            def backward(ctx, grad):
                h, w, t, lse, norm = ctx.saved_tensors
                scale = (grad * norm)[:, None]
                dh = torch.zeros_like(h)
                dw = torch.zeros_like(w)
                for c in range(0, w.shape[0], chunk):
                    probs = torch.exp(h @ w[c : c + chunk].T - lse[:, None]) * scale
                    dw[c : c + chunk] = probs.T @ h
                    dh += probs @ w[c : c + chunk]
                dh -= scale * w[t]
                dw.index_add_(0, t, -scale * h)
                return dh, dw, None, None

        return _Fn.apply(hidden, weight, targets, row_weights)


def _shared_prefix_hidden(model, prefix: list[int], batch: list[Example]):
    """Hidden states of each example's suffix + completion, computing the policy prefix once.

    The prefix runs at batch size 1 and its keys and values are broadcast to the batch, with
    gradients flowing back through the broadcast: exact, and ~16x cheaper than repeating the
    600-token policy in every row.
    """
    import torch

    size = len(batch)
    out = model.model(input_ids=torch.tensor([prefix]), use_cache=True)
    cache = out.past_key_values
    for layer in cache.layers:
        layer.keys = layer.keys.expand(size, -1, -1, -1)
        layer.values = layer.values.expand(size, -1, -1, -1)
    length = max(len(e.suffix) + len(e.completion) for e in batch)
    ids = torch.zeros((size, length), dtype=torch.long)
    mask = torch.zeros((size, len(prefix) + length), dtype=torch.long)
    mask[:, : len(prefix)] = 1
    for b, example in enumerate(batch):
        seq = example.suffix + example.completion
        ids[b, : len(seq)] = torch.tensor(seq)
        mask[b, len(prefix) : len(prefix) + len(seq)] = 1
    return model.model(input_ids=ids, attention_mask=mask, past_key_values=cache).last_hidden_state


def train(
    model,
    prefixes: dict[str, list[int]],
    examples: list[Example],
    steps: int = 600,
    batch_size: int = 16,
    lr: float = 2e-3,
    warmup: int = 30,
    seed: int = 0,
    log_every: int = 50,
    keep_fraction: float = 0.5,
    decision_weight: float = 3.0,
    positive_share: float = 0.35,
) -> list[float]:
    """AdamW with warm-up and cosine decay; loss on completion tokens only.

    Each step takes one policy's examples (policies in turn), so the batch shares a prefix.
    The loss uses a random ``keep_fraction`` of completion positions (an unbiased estimate of
    the full loss at a fraction of the output-head cost) plus, always and ``decision_weight``
    times heavier, the two positions that carry the verdict: the first analysis token and the
    final 0/1. Violations are oversampled to ``positive_share`` of on-topic items (spam is 13%
    of the SMS data, harassment 14% of the moderation set), or the cheapest answer is "0".
    """
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    by_policy = {pid: [e for e in examples if e.policy_id == pid] for pid in prefixes}
    # Off-topic items (always 0) would swamp a policy's own data set: keep half as many of
    # them as there are on-topic items.
    for pid, pool in by_policy.items():
        on_topic = [e for e in pool if e.on_topic]
        off_topic = [e for e in pool if not e.on_topic]
        rng.shuffle(off_topic)
        positives = [e for e in on_topic if e.label == 1]
        negatives = len(on_topic) - len(positives)
        wanted = int(positive_share * negatives / (1 - positive_share))
        extra = [positives[i % len(positives)] for i in range(max(0, wanted - len(positives)))]
        by_policy[pid] = on_topic + extra + off_topic[: len(on_topic) // 2]
    queues: dict[str, list[int]] = {pid: [] for pid in prefixes}
    # The JSON policy has the longer answer to learn: it gets 3 steps in 5.
    schedule = ["spam", "harassment", "harassment", "spam", "harassment"]
    if set(schedule) != set(prefixes):
        schedule = sorted(prefixes)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return lr * 0.5 * (1 + math.cos(math.pi * progress))

    model.train()
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        pid = schedule[step % len(schedule)]
        pool, queue = by_policy[pid], queues[pid]
        if len(queue) < batch_size:
            fresh = list(range(len(pool)))
            rng.shuffle(fresh)
            queue.extend(fresh)
        batch = [pool[i] for i in queue[:batch_size]]
        del queue[:batch_size]
        rows, cols, targets, weights = [], [], [], []
        for b, example in enumerate(batch):
            seq = example.suffix + example.completion
            decisive = (example.verdict_index, example.decision_index)
            for t in range(len(example.suffix), len(seq)):
                key = t - len(example.suffix) in decisive
                if not key and rng.random() >= keep_fraction:
                    continue
                rows.append(b)
                cols.append(t - 1)  # the hidden state at t-1 predicts token t
                targets.append(seq[t])
                weights.append(decision_weight if key else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        hidden = _shared_prefix_hidden(model, prefixes[pid], batch)
        picked = hidden[torch.tensor(rows), torch.tensor(cols)]
        loss = ChunkedCrossEntropy.apply(
            picked, model.lm_head.weight, torch.tensor(targets), torch.tensor(weights)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(
                f"step {step:4d} loss {losses[-1]:.4f} lr {lr_at(step):.2e} "
                f"{time.perf_counter() - started:.0f}s",
                flush=True,
            )
    return losses
