"""The error tree of crypto/. Messages never carry key bytes or plaintext."""


class CryptoError(Exception):
    """Base class of every error raised by crypto/."""


class IntegrityError(CryptoError):
    """A ciphertext, wrapped key or header failed to authenticate or parse.

    One type and one message for every such failure (tag, commitment, format, context,
    truncation), so that callers and attackers cannot learn which check failed.
    """

    def __init__(self, message: str = "ciphertext failed integrity check") -> None:
        super().__init__(message)


class KeyUnavailableError(CryptoError):
    """A root key cannot be used: the key file or KMS is unreachable, refuses access, or
    the key (epoch) has been destroyed."""
