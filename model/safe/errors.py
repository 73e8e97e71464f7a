"""The exception a user's checkpoint raises, shared by every loader (no other imports: any module may use it)."""


class CheckpointError(Exception):
    """A checkpoint directory that cannot be loaded; the message names the file and the problem."""


__all__ = ["CheckpointError"]
