"""The cheapest S3 download a decrypting server could make, for bench/s3_chain_bench.py:
per connection, a thread that GETs an object through boto3 in pieces of one sealed
segment and opens each with AES-GCM (or, with `?plain`, does not), at most two pieces
ahead, and the connection's own thread `sendall`ing the plaintext to the client: the
vault's design (read and open on one thread, send on another) without an HTTP framework,
an event loop, auth or an access log. What is left of a vault's download is what any
vault that decrypts must do (receive the ciphertext as boto3 does, open it, send it):
the floor for V. glibc's malloc is tuned as the vault's (vault/malloc_tuning.py), so
the megabyte buffers are reused, not mapped and zeroed anew each time.

    python bench/bare_s3_relay.py PORT ENDPOINT_URL BUCKET REGION

GET /KEY            the object KEY, sealed by the bench as segments of 1 MiB + 16 (tag),
                    segment i under nonce i (12 bytes, big-endian) with the key in the
                    environment's BENCH_RELAY_KEY (hex); answered as plaintext
GET /KEY?plain      the object's bytes as they are (a relay that does not decrypt)

Credentials: boto3's usual chain (the bench runs it inside tests/seaweed.py's environment).
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.malloc_tuning import tune_malloc

MIB = 1024 * 1024
TAG = 16
READ_AHEAD_PIECES = 2  # as vault/blobs/thread_reads.py


def serve(port: int, endpoint: str, bucket: str, region: str) -> None:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )
    tune_malloc()
    cipher = AESGCM(bytes.fromhex(os.environ["BENCH_RELAY_KEY"]))
    listener = socket.create_server(("127.0.0.1", port))

    def answer(sock: socket.socket) -> None:
        with sock:
            head = b""
            while b"\r\n\r\n" not in head:
                more = sock.recv(65536)
                if not more:
                    return
                head += more
            target = head.split(b" ", 2)[1].decode()
            key, _, query = target.lstrip("/").partition("?")
            plain = query == "plain"
            response = client.get_object(Bucket=bucket, Key=key)
            body, stored = response["Body"], response["ContentLength"]
            piece = MIB if plain else MIB + TAG
            segments = -(-stored // piece)
            length = stored if plain else stored - TAG * segments
            sock.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()
            )
            ready: queue.Queue[bytes | None] = queue.Queue(maxsize=READ_AHEAD_PIECES)

            def read() -> None:
                number = 0
                while data := body.read(piece):
                    if not plain:
                        data = cipher.decrypt(number.to_bytes(12, "big"), data, None)
                    ready.put(data)
                    number += 1
                ready.put(None)
                body.close()

            threading.Thread(target=read, daemon=True).start()
            while (data := ready.get()) is not None:
                sock.sendall(data)

    print("ready", flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=answer, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
