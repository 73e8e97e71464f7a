"""Hub ids as a person types them (``gpt2``, ``org/name``, ``org/name@revision``), checked with huggingface_hub's own
validator, and named back the same way: the id alone on the default branch, ``@revision`` otherwise."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..safe.errors import CheckpointError

DEFAULT_REVISION = "main"
MAX_REVISION_CHARS = 255
COMMIT = re.compile(r"[0-9a-f]{40}")  # a full commit hash (huggingface_hub's REGEX_COMMIT_HASH)
SHORT_COMMIT = re.compile(r"[0-9a-f]{7,39}")  # a commit's leading digits, as `git log --oneline` shows them
SHOWN_COMMIT = 12  # a snapshot no branch or tag points to is named by this many leading digits
# what git's check-ref-format refuses in a branch or tag name (and what could step out of the cache's refs/ folder)
REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|^\.|^/|/$|\.$|\.lock$|^@$")


class HubIdError(CheckpointError):
    """Text that is not a hub id this app accepts (the message says which part and why)."""


@dataclass(frozen=True)
class HubRef:
    """A model on the Hugging Face Hub: its repository id and, when not the default branch, a revision."""

    repo_id: str  # "gpt2", "sentence-transformers/all-MiniLM-L6-v2"
    revision: str | None = None  # a branch, a tag or a commit (or its leading digits); None: main

    @property
    def name(self) -> str:
        """How the app names it everywhere: ``org/name``, or ``org/name@revision`` off the default branch."""
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"

    @property
    def wanted(self) -> str:
        """The revision asked for, the default branch when none was."""
        return self.revision or DEFAULT_REVISION

    @classmethod
    def parse(cls, text: str) -> HubRef:
        """``org/name[@revision]`` -> a HubRef; HubIdError naming what is wrong (huggingface_hub's validator for the
        id, git's rules for a branch or tag name)."""
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        raw = str(text).strip()
        repo_id, at, revision = raw.partition("@")
        if len(raw) > 96 + 1 + 96 + 1 + MAX_REVISION_CHARS:
            raise HubIdError(f"a hub id is at most {96 + 1 + 96} characters, a revision {MAX_REVISION_CHARS}")
        try:
            validate_repo_id(repo_id)
        except HFValidationError as e:
            raise HubIdError(f"“{repo_id[:120]}”: {str(e).split(':')[0]}") from None
        if not at:
            return cls(repo_id)
        return cls(repo_id, check_revision(revision))


def check_revision(revision: str) -> str | None:
    """A branch, tag or commit as typed after ``@`` (None for ``main``); HubIdError for anything git would refuse or
    that could name a file outside the cache's ``refs/`` folder (``..``, a leading ``/``, control characters)."""
    if not revision:
        raise HubIdError("nothing after “@”: name a branch, a tag or a commit (or leave out the “@”)")
    if len(revision) > MAX_REVISION_CHARS:
        raise HubIdError(f"the revision is {len(revision):,} characters long (at most {MAX_REVISION_CHARS})")
    if REF_FORBIDDEN.search(revision):
        raise HubIdError(f"“{revision[:80]}” is not a branch, tag or commit name (git's rules: no “..”, spaces, "
                         "control characters, “~^:?*[\\”, and no leading, trailing or double “/”)")
    return None if revision == DEFAULT_REVISION else revision


def looks_like_hub_id(text: str) -> bool:
    """True for text shaped as a hub id (``name``, ``org/name``, ``org/name@rev``) rather than a path: no leading
    ``/``, ``~`` or ``.``, no backslash, at most one ``/`` before any ``@``. Whether it is valid is ``HubRef.parse``'s
    question."""
    raw = str(text).strip()
    repo_part = raw.partition("@")[0]
    return bool(repo_part) and not raw.startswith(("/", "~", ".")) and "\\" not in raw and repo_part.count("/") <= 1


__all__ = ["COMMIT", "DEFAULT_REVISION", "HubIdError", "HubRef", "SHORT_COMMIT", "check_revision",
           "looks_like_hub_id"]
