"""CPU per service-auth JWT verification (createReport, moderators), k256 and p256, without I/O.

Prints figures only, never asserts on time. Tokens are minted as a PDS mints them (protocol.md §4.2: `iat`, `iss`,
`aud`, `exp = iat + 60`, `lxm`, `jti`), each one distinct, and verified with `verify_service_jwt` against a key
getter that answers from memory, so the figure is parsing, claim checks and the signature: what every
authenticated request costs before it reaches the database. `--signature-only` also times `crypto.verify` alone.

    python bench/bench_auth.py [--tokens 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
import uuid

try:
    from bench import _harness
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness  # type: ignore[no-redef]

from labeler.protocol.crypto import Curve, SigningKey, verify
from labeler.protocol.service_auth import verify_service_jwt

AUD = "did:plc:benchlabelerbenchlabel22"
ISS = "did:plc:benchreporterbenchreport"
LXM = "com.atproto.moderation.createReport"


def _segment(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()


def mint(key: SigningKey, now: float) -> str:
    header = _segment({"typ": "JWT", "alg": key.curve.jwt_alg})
    payload = _segment(
        {"iat": int(now), "iss": ISS, "aud": AUD, "exp": int(now) + 60, "lxm": LXM, "jti": uuid.uuid4().hex}
    )
    signature = key.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


async def per_token_cpu_us(key: SigningKey, tokens: list[str], now: float) -> float:
    did_key = key.did_key

    async def get_key(_iss: str, _force: bool) -> str:
        return did_key

    start = time.process_time()
    for token in tokens:
        await verify_service_jwt(token, audiences={AUD}, lxm=LXM, get_key=get_key, now=now)
    return (time.process_time() - start) / len(tokens) * 1e6


def signature_cpu_us(key: SigningKey, count: int) -> float:
    message = b"x" * 400
    signature, did_key = key.sign(message), key.did_key
    start = time.process_time()
    for _ in range(count):
        verify(did_key, message, signature, allow_high_s=True)
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--signature-only", action="store_true", help="also time crypto.verify alone")
    args = parser.parse_args()
    _harness.print_machine()
    now = time.time()
    rows = []
    for curve in (Curve.K256, Curve.P256):
        key = SigningKey.generate(curve)
        tokens = [mint(key, now) for _ in range(args.tokens)]
        asyncio.run(per_token_cpu_us(key, tokens[:50], now))  # warm up (and fill the key cache)
        runs = [asyncio.run(per_token_cpu_us(key, tokens, now)) for _ in range(args.rounds)]
        row = [curve.jwt_alg, f"{statistics.median(runs):.1f}", f"{min(runs):.1f}–{max(runs):.1f}"]
        if args.signature_only:
            row.append(f"{statistics.median(signature_cpu_us(key, args.tokens) for _ in range(args.rounds)):.1f}")
        rows.append(row)
    headers = ["alg", "µs CPU per token (median)", "range over rounds"]
    if args.signature_only:
        headers.append("µs CPU per signature alone")
    _harness.print_table(f"verify_service_jwt, {args.tokens} distinct tokens × {args.rounds} rounds", headers, rows)


if __name__ == "__main__":
    main()
