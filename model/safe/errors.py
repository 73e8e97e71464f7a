"""The exceptions a user's files raise, shared by every reader (no other imports: any module may use them)."""


class CheckpointError(Exception):
    """A checkpoint directory that cannot be loaded; the message names the file and the problem."""


class ImageError(ValueError):
    """An image that cannot be read (too large, not PNG, JPEG or WebP, damaged...); the message names the file and
    the problem."""


__all__ = ["CheckpointError", "ImageError"]
