"""datavault's key hierarchy, ciphertext formats and root-key providers.

Public recipes: crypto.keywrap (keys under keys), crypto.records (small records),
crypto.stream (artefacts of any size), crypto.signing (Ed25519 receipts), crypto.jws
(compact JWS over Ed25519), crypto.mac (keyed hashes), crypto.providers (root keys),
crypto.secrets (SecretBytes), crypto.context (KeyContext, ObjectIdentity),
crypto.errors. Byte layouts and limits: crypto/FORMAT.md; safety limits:
crypto/limits.py.
Only crypto/_primitives.py imports cryptography.hazmat.
"""
