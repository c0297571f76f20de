"""Run Bluesky's reference PLC directory + PDS (``devnet.mjs``) on loopback for end-to-end tests.

The Node side is installed by ``install.sh`` into a cache outside the repo; this module finds it, starts
``devnet.mjs`` as a child process, reads the one JSON line it prints and tears the process group down again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from atproto import Client, IdResolver

E2E_DIR = Path(__file__).resolve().parent
DEVNET_SCRIPT = E2E_DIR / "devnet.mjs"
INSTALL_SCRIPT = E2E_DIR / "install.sh"
INSTALL_HINT = "bash tests/e2e/install.sh"
START_TIMEOUT_S = 90.0


class DevnetError(RuntimeError):
    """The devnet could not be installed, started or queried."""


# --------------------------------------------------------------------------------------------------------
# Where install.sh puts things (keep in step with install.sh).


def cache_dir() -> Path:
    """The e2e cache: ``$LABELER_E2E_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/atproto-hma-labeler/e2e``."""
    explicit = os.environ.get("LABELER_E2E_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "atproto-hma-labeler" / "e2e"


def _node_package() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"node-linux-{arch}"


def node_bin() -> Path:
    """The cached Node 22 binary."""
    return cache_dir() / "node" / "node_modules" / _node_package() / "bin" / "node"


def app_dir() -> Path:
    """The folder whose node_modules hold @atproto/dev-env."""
    return cache_dir() / "app"


def install_key() -> str:
    """Hash of the install inputs; install.sh writes the same value to ``app/.installed`` when done."""
    digest = hashlib.sha256()
    for name in ("node-version", "package.json", "package-lock.json"):
        digest.update((E2E_DIR / name).read_bytes())
    return digest.hexdigest()


def install_problem() -> str | None:
    """Why the cached install cannot be used, or None when it is complete and current."""
    if not node_bin().is_file():
        return f"Node 22 is not installed at {node_bin()}"
    stamp = app_dir() / ".installed"
    if not stamp.is_file():
        return f"@atproto/dev-env is not installed in {app_dir()}"
    if stamp.read_text().strip() != install_key():
        return f"the e2e install in {cache_dir()} is out of date with tests/e2e/package-lock.json"
    return None


def run_install() -> None:
    """Run install.sh (idempotent; a no-op when the cache is current)."""
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DevnetError(f"{INSTALL_HINT} failed (exit {result.returncode}):\n{_tail(result.stderr)}")


# --------------------------------------------------------------------------------------------------------
# What devnet.mjs reports.


@dataclass(frozen=True)
class Account:
    """A seeded PDS account with its full password (PLC operations need it, not an app password)."""

    did: str
    handle: str
    password: str
    email: str
    access_jwt: str
    refresh_jwt: str


@dataclass(frozen=True)
class Post:
    """An image post: its record URI and CID and the CID of its (single) image blob."""

    uri: str
    cid: str
    blob_cid: str

    @property
    def did(self) -> str:
        """The author's DID (the repo in the at:// URI)."""
        return self.uri.removeprefix("at://").split("/", 1)[0]


@dataclass(frozen=True)
class Mail:
    """An email the PDS "sent" (captured in-process; nothing leaves the machine)."""

    to: str
    subject: str
    template: str
    token: str | None
    text: str


@dataclass(frozen=True)
class Devnet:
    """A running PLC + PDS. URLs use 127.0.0.1; the PDS's DID documents say ``pds_public_url`` (localhost)."""

    plc_url: str
    pds_url: str
    pds_public_url: str
    control_url: str
    accounts: dict[str, Account]
    post: Post
    pid: int
    log_path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], log_path: Path | None = None) -> Devnet:
        return cls(
            plc_url=data["plc_url"],
            pds_url=data["pds_url"],
            pds_public_url=data["pds_public_url"],
            control_url=data["control_url"],
            accounts={name: Account(**acct) for name, acct in data["accounts"].items()},
            post=Post(**data["post"]),
            pid=int(data["pid"]),
            log_path=log_path,
        )

    @property
    def alice(self) -> Account:
        return self.accounts["alice"]

    @property
    def bob(self) -> Account:
        return self.accounts["bob"]

    @property
    def labeler(self) -> Account:
        return self.accounts["labeler"]

    @property
    def firehose_url(self) -> str:
        """Base websocket URI for the PDS's ``com.atproto.sync.subscribeRepos`` (atproto SDK style)."""
        return self.pds_url.replace("http://", "ws://", 1) + "/xrpc"

    def account(self, name_or_account: str | Account) -> Account:
        if isinstance(name_or_account, Account):
            return name_or_account
        try:
            return self.accounts[name_or_account]
        except KeyError:
            raise DevnetError(f"no seeded account {name_or_account!r}; have {sorted(self.accounts)}") from None


# --------------------------------------------------------------------------------------------------------
# Starting and stopping.


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _read_log_tail(path: Path) -> str:
    try:
        return _tail(path.read_text(errors="replace"))
    except OSError:
        return "(no log)"


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """Ask politely (stdin EOF, then SIGTERM) and then insist (SIGKILL), always on the whole group."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    for sig, wait_s in ((None, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # Anything the Node process left behind in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def start_devnet(
    *,
    timeout: float = START_TIMEOUT_S,
    auto_install: bool = False,
    seed_image: Path | None = None,
) -> Iterator[Devnet]:
    """Start PLC + PDS, seed alice/bob/labeler and one image post by alice, and stop it all on exit.

    ``auto_install`` runs install.sh first when the cache is missing or stale (cold: a few minutes).
    ``seed_image`` replaces the generated PNG of the seeded post. devnet.mjs logs to a temporary file
    (``Devnet.log_path``), removed at the end unless ``LABELER_E2E_KEEP_LOGS=1`` (or the start failed).
    """
    problem = install_problem()
    if problem is not None:
        if not auto_install:
            raise DevnetError(f"{problem}; run: {INSTALL_HINT}")
        run_install()
        problem = install_problem()
        if problem is not None:
            raise DevnetError(f"{INSTALL_HINT} ran but: {problem}")

    # One folder per run: the log, and TMPDIR for the PDS's databases and blobs (dev-env never deletes
    # them). Removed at the end; after a failed start only the log is kept, for the error message.
    run_dir = Path(tempfile.mkdtemp(prefix="devnet-"))
    data_dir = run_dir / "tmp"
    data_dir.mkdir()
    log_path = run_dir / "devnet.log"
    env = dict(os.environ)
    env["DEVNET_APP_DIR"] = str(app_dir())
    env["TMPDIR"] = str(data_dir)
    if seed_image is not None:
        env["DEVNET_SEED_IMAGE"] = str(seed_image)
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(node_bin()), str(DEVNET_SCRIPT)],
            cwd=str(app_dir()),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,  # its own process group, so teardown can kill everything it started
        )
    try:
        line = _read_first_line(proc, timeout)
        if line is None:
            exited = proc.poll()
            why = f"exited with {exited}" if exited is not None else f"printed nothing in {timeout:.0f} s"
            raise DevnetError(f"devnet.mjs {why}; log {log_path}:\n{_read_log_tail(log_path)}")
        try:
            devnet = Devnet.from_json(json.loads(line), log_path=log_path)
        except (ValueError, KeyError, TypeError) as exc:
            raise DevnetError(f"devnet.mjs printed an unexpected line {line!r}: {exc}") from exc
        _log(f"devnet up in {time.monotonic() - started:.1f} s: PDS {devnet.pds_url}, PLC {devnet.plc_url}")
    except BaseException:
        _stop_process_group(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    try:
        yield devnet
    finally:
        _stop_process_group(proc)
        if os.environ.get("LABELER_E2E_KEEP_LOGS") == "1":
            shutil.rmtree(data_dir, ignore_errors=True)
            _log(f"devnet log kept: {log_path}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def _read_first_line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """The first stdout line, or None on EOF / timeout (a reader thread, since pipes have no timeout)."""
    assert proc.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                return None  # died without a line (a grandchild could hold the pipe open)
            continue
        return raw.decode().strip() or None
    return None


def _log(message: str) -> None:
    if os.environ.get("LABELER_E2E_QUIET") != "1":
        print(f"[e2e] {message}", flush=True)  # shown by pytest with -s or on failure


# --------------------------------------------------------------------------------------------------------
# Helpers for tests.


def get_mail(devnet: Devnet) -> list[Mail]:
    """Every email the PDS has "sent" since start, oldest first."""
    resp = httpx.get(f"{devnet.control_url}/mail", timeout=10)
    resp.raise_for_status()
    return [
        Mail(to=m["to"], subject=m["subject"], template=m["template"], token=m["token"], text=m["text"])
        for m in resp.json()
    ]


def create_session(devnet: Devnet, account: str | Account) -> dict[str, Any]:
    """A fresh ``com.atproto.server.createSession`` (the seeded access JWTs expire after a couple of hours)."""
    acct = devnet.account(account)
    resp = httpx.post(
        f"{devnet.pds_url}/xrpc/com.atproto.server.createSession",
        json={"identifier": acct.did, "password": acct.password},
        timeout=10,
    )
    if resp.status_code != 200:
        raise DevnetError(f"createSession for {acct.handle} failed: {resp.status_code} {resp.text}")
    return dict(resp.json())


def plc_operation_token(devnet: Devnet, account: str | Account, *, timeout: float = 10.0) -> str:
    """Request a PLC operation signature for ``account`` and return the emailed token.

    The token goes to ``com.atproto.identity.signPlcOperation``; it is single-use and expires.
    """
    acct = devnet.account(account)
    seen = len(get_mail(devnet))
    access_jwt = create_session(devnet, acct)["accessJwt"]
    resp = httpx.post(
        f"{devnet.pds_url}/xrpc/com.atproto.identity.requestPlcOperationSignature",
        headers={"authorization": f"Bearer {access_jwt}"},
        timeout=10,
    )
    if resp.status_code != 200:
        raise DevnetError(f"requestPlcOperationSignature failed: {resp.status_code} {resp.text}")
    deadline = time.monotonic() + timeout
    while True:
        for mail in get_mail(devnet)[seen:]:
            if mail.to == acct.email and mail.template == "plcOperation" and mail.token:
                return mail.token
        if time.monotonic() > deadline:
            raise DevnetError(f"no PLC operation email for {acct.email} within {timeout} s")
        time.sleep(0.05)


def post_image(
    devnet: Devnet,
    account: str | Account,
    image: bytes,
    text: str = "",
    *,
    mime_type: str | None = None,
) -> Post:
    """Create an image post as ``account`` (uploadBlob + createRecord, done by devnet.mjs)."""
    acct = devnet.account(account)
    name = next((n for n, a in devnet.accounts.items() if a.did == acct.did), None)
    if name is None:
        raise DevnetError(f"post_image works for the seeded accounts only, not {acct.handle}")
    body: dict[str, Any] = {"account": name, "image_base64": base64.b64encode(image).decode(), "text": text}
    if mime_type:
        body["mime_type"] = mime_type
    resp = httpx.post(f"{devnet.control_url}/post-image", json=body, timeout=30)
    if resp.status_code != 200:
        raise DevnetError(f"/post-image failed: {resp.status_code} {resp.text}")
    return Post(**resp.json())


@contextlib.contextmanager
def login(devnet: Devnet, account: str | Account) -> Iterator[Client]:
    """An atproto ``Client`` logged in to the devnet PDS, closed on exit (unclosed sockets fail the run)."""
    acct = devnet.account(account)
    client = Client(base_url=devnet.pds_url)
    try:
        client.login(acct.did, acct.password, fetch_bsky_profile=False)
        yield client
    finally:
        client.request.close()


@contextlib.contextmanager
def id_resolver(devnet: Devnet, timeout: float = 5.0) -> Iterator[IdResolver]:
    """An ``IdResolver`` pointed at the devnet PLC whose HTTP clients are closed on exit.

    The SDK never closes them itself, and with ``filterwarnings = error`` the ResourceWarning fails the run;
    it has no public close(), so this reaches into its resolvers.
    """
    resolver = IdResolver(plc_url=devnet.plc_url, timeout=timeout)
    try:
        yield resolver
    finally:
        for method in getattr(resolver.did, "_methods", {}).values():
            with contextlib.suppress(Exception):
                method._client.close()
        with contextlib.suppress(Exception):
            resolver.handle._http_client.close()


@dataclass(frozen=True)
class Ozone:
    """Bluesky's moderation service from dev-env, beside the devnet's PLC and PDS (started on demand)."""

    url: str
    did: str
    admin_password: str

    @property
    def admin_auth(self) -> tuple[str, str]:
        """HTTP Basic credentials of Ozone's admin (for `tools.ozone.moderation.*` reads)."""
        return ("admin", self.admin_password)


def start_ozone(devnet: Devnet, db_url: str) -> Ozone:
    """Start Ozone on the running devnet (once; later calls return the same one). Needs PostgreSQL at `db_url`."""
    resp = httpx.post(f"{devnet.control_url}/ozone", json={"db_url": db_url}, timeout=120)
    if resp.status_code != 200:
        raise DevnetError(f"/ozone failed: {resp.status_code} {resp.text}")
    return Ozone(**resp.json())


def create_account(devnet: Devnet, name: str) -> Account:
    """A new account on the devnet's PDS (not in devnet.accounts): handle ``<name>.test``."""
    handle, password, email = f"{name}.test", f"{name}-devnet-password", f"{name}@example.com"
    resp = httpx.post(
        f"{devnet.pds_url}/xrpc/com.atproto.server.createAccount",
        json={"handle": handle, "email": email, "password": password},
        timeout=10,
    )
    if resp.status_code != 200:
        raise DevnetError(f"createAccount {handle} failed: {resp.status_code} {resp.text}")
    out = resp.json()
    return Account(
        did=out["did"],
        handle=out["handle"],
        password=password,
        email=email,
        access_jwt=out["accessJwt"],
        refresh_jwt=out["refreshJwt"],
    )


@dataclass(frozen=True)
class AppView:
    """Bluesky's reference AppView from dev-env, indexing the devnet's PDS (started on demand)."""

    url: str
    did: str


@dataclass(frozen=True)
class LabelFeed:
    """How far the AppView's stand-in ingester got with one labeler's subscribeLabels."""

    did: str
    endpoint: str
    cursor: int
    accepted: int
    rejected: int
    foreign: int
    error: str | None


def start_appview(devnet: Devnet, db_url: str) -> AppView:
    """Start the AppView on the running devnet (once; later calls return the same one). Needs PostgreSQL."""
    started = time.monotonic()
    resp = httpx.post(f"{devnet.control_url}/appview", json={"db_url": db_url}, timeout=120)
    if resp.status_code != 200:
        raise DevnetError(f"/appview failed: {resp.status_code} {resp.text}")
    _log(f"AppView up in {time.monotonic() - started:.1f} s: {resp.json()['url']}")
    return AppView(**resp.json())


def feed_labels(devnet: Devnet, did: str, *, until_seq: int, timeout: float = 20.0) -> LabelFeed:
    """Have the AppView ingest labeler ``did``'s labels from cursor 0 (the endpoint its DID document names), verifying
    each signature, and wait until its cursor reaches ``until_seq``."""
    resp = httpx.post(f"{devnet.control_url}/appview/labelers", json={"did": did}, timeout=30)
    if resp.status_code != 200:
        raise DevnetError(f"/appview/labelers failed: {resp.status_code} {resp.text}")
    deadline = time.monotonic() + timeout
    while True:
        feeds = httpx.get(f"{devnet.control_url}/appview/labelers", timeout=10).json()
        feed = LabelFeed(**next(f for f in feeds if f["did"] == did))
        if feed.cursor >= until_seq or feed.error:
            return feed
        if time.monotonic() > deadline:
            raise DevnetError(f"the AppView's ingester of {did} stopped at seq {feed.cursor} of {until_seq}")
        time.sleep(0.05)
