import hashlib
import shutil
import subprocess

import pytest

from batch.policy.files import PolicyError, load_policies, load_policy, parse_policy


def test_shipped_policies_load_with_format_and_version(policies):
    by_id = {p.id: p for p in policies}
    assert by_id["spam"].output == "binary"
    assert by_id["harassment"].output == "json"
    assert all(p.version == "1" for p in policies)
    # Only the body is sent to the model, never the front matter.
    assert "+++" not in by_id["spam"].text
    assert by_id["spam"].text.startswith("# Spam Policy")


def test_policy_sha256_matches_sha256sum(spam_policy_path):
    policy = load_policy(spam_policy_path)
    if shutil.which("sha256sum"):
        out = subprocess.run(["sha256sum", str(spam_policy_path)], capture_output=True, text=True)
        assert out.stdout.split()[0] == policy.sha256
    assert policy.sha256 == hashlib.sha256(spam_policy_path.read_bytes()).hexdigest()


def test_editing_one_character_changes_only_that_hash(
    tmp_path, spam_policy_path, harassment_policy_path
):
    spam = tmp_path / "spam.md"
    harassment = tmp_path / "harassment.md"
    spam.write_bytes(spam_policy_path.read_bytes())
    harassment.write_bytes(harassment_policy_path.read_bytes())
    before = {p.id: p for p in load_policies([spam, harassment])}
    spam.write_text(spam.read_text().replace("single character", "single Character", 1))
    after = {p.id: p for p in load_policies([spam, harassment])}
    assert after["spam"].sha256 != before["spam"].sha256
    assert after["harassment"].sha256 == before["harassment"].sha256
    assert after["spam"].id == before["spam"].id and after["spam"].version == before["spam"].version


@pytest.mark.parametrize(
    "source, message",
    [
        ("no front matter\n", "must start with"),
        ('+++\nid = "x"\n', "never closed"),
        ('+++\nid = "x"\nversion = "1"\n+++\nbody\n', "lacks output"),
        ('+++\nid = "x"\nversion = "1"\noutput = "yaml"\n+++\nbody\n', "must be one of"),
        ('+++\nid = "Bad Id"\nversion = "1"\noutput = "binary"\n+++\nbody\n', "lower-case"),
        ('+++\nid = "x"\nversion = "1"\noutput = "binary"\n+++\n\n', "body"),
        ('+++\nid = = "x"\n+++\nbody\n', "not valid TOML"),
    ],
)
def test_bad_policies_are_rejected_with_a_reason(source, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(source, "0" * 64, "p.md")


def test_duplicate_policy_ids_are_rejected(spam_policy_path):
    with pytest.raises(PolicyError, match="used by both"):
        load_policies([spam_policy_path, spam_policy_path])


def test_policy_token_counts_are_in_the_guides_sweet_spot(policies):
    from batch.vocab import load_encoding

    encoding = load_encoding()
    for policy in policies:
        tokens = len(encoding.encode(policy.text, disallowed_special=()))
        assert 400 <= tokens <= 600, (policy.id, tokens)
