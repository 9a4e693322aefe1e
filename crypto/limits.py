"""Safety limits and sizes of the crypto formats, each with the reason beside it.

Everything a format depends on lives here so that a reviewer can check the bounds in one
place; FORMAT.md repeats them with the arithmetic.
"""

from typing import Final

KEY_SIZE: Final = 32
"""AES-256 keys and every key in the hierarchy: 256 bits keeps a margin against
multi-target and quantum (Grover) attacks at no measurable cost over AES-128."""

SALT_SIZE: Final = 32
"""Random HKDF salt per wrap / record / stream. 256 bits: after 2**64 messages under one
long-lived key the chance that two derived keys coincide is about 2**-129, so the
number of wraps per key is not a limit in practice (see MAX_WRAPS_PER_KEY)."""

GCM_NONCE_SIZE: Final = 12
"""AES-GCM's native 96-bit nonce; other lengths are hashed through GHASH and weaker."""

GCM_TAG_SIZE: Final = 16
"""Full 128-bit tags; truncated GCM tags lose forgery resistance quickly."""

COMMITMENT_SIZE: Final = 32
"""Key commitment (an HKDF output): 256 bits so that finding two keys with the same
commitment is a 128-bit collision search."""

MAX_WRAPS_PER_KEY: Final = 2**64
"""Documented bound, not a counter. Each wrap derives a one-time AES key from a fresh
256-bit salt, so the AES-GCM random-nonce bound (2**32 messages per key) never applies to
the long-lived key itself; the bound that remains is a salt collision (birthday bound
2**128). 2**64 wraps keep that probability under 2**-128."""

STREAM_NONCE_PREFIX_SIZE: Final = 7
"""Per stream random nonce prefix (Tink's AES-GCM-HKDF layout): 7 bytes prefix, 4 bytes
segment index, 1 byte last-segment flag = the 12-byte GCM nonce. The segment key is
already unique per stream (fresh salt), the prefix is defence in depth."""

DEFAULT_SEGMENT_SIZE: Final = 1024 * 1024
"""1 MiB of plaintext per segment: the 16-byte tag costs 0.0015 %, per-segment Python
overhead is amortised over 1 MiB of AES work, a stream buffers at most about two segments
(2 MiB per transfer), and a range read decrypts at most 2 MiB more than asked. The size
is recorded in each header, so changing this default never breaks old objects."""

MIN_SEGMENT_SIZE: Final = 16
"""Below 16 bytes the tag outweighs the data; tests use 16..64-byte segments."""

MAX_SEGMENT_SIZE: Final = 64 * 1024 * 1024
"""Caps the memory a reader must be ready to buffer for one segment when it trusts the
header of an object it has not authenticated yet: a C1 or C2 header's segment size is
authenticated only when the first segment opens (C3's commitment covers it)."""

MAX_SEGMENTS: Final = 2**32
"""The segment index is a 32-bit nonce field; it must never wrap. With 1 MiB segments the
largest object is 2**32 MiB = 4 PiB of plaintext."""

MAX_KEY_ID_BYTES: Final = 255
"""The stream header stores the key id with a one-byte length prefix."""

MAX_CONTEXT_FIELD_BYTES: Final = 4096
"""Context fields are identifiers, not data; a cap keeps a hostile id from bloating the
associated data that every segment authenticates."""
