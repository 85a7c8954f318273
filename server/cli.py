"""The `logstore` command: serve, manage topics and subscriptions, publish, read, check,
backup and restore.

Every command but `serve`, `check`, `backup`, `restore` and `hash-token` works either on a
data directory (`--data DIR`: a `Store`, no server needed) or through a running server
(`--url URL`: a `logstore.Client`). The two have the same methods and give back the same
types, so each command is written once for both. Reading a directory opens it read-only, so it works
while a server holds it; changing one needs the directory to itself (else: use --url).
The server's modules (and aiohttp) are imported only by `serve` and `hash-token`.

Exit status: 0 success, 1 failure (one line on stderr saying why), 2 bad usage, 130 when
Ctrl-C interrupts a command; `serve` shuts down gracefully on Ctrl-C or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict
from importlib.metadata import version
from stat import S_ISREG
from typing import BinaryIO

from logstore import (
    FSYNC_POLICIES,
    MAX_BATCH_MESSAGES,
    Client,
    LogstoreError,
    Record,
    Store,
    StoreLocked,
)
from logstore.wire import message_json

from .output import Progress, print_table

DEFAULT_DATA = "./logstore-data"
CLUSTER_SCHEMES = ("nats://", "tls://")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
_FOLLOW_WAIT = 30.0
_READ_PAGE = 1000
_NAMED_STARTS = {"start": "earliest", "end": "latest"}


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


def _require_store(path: str) -> None:
    """Refuse a directory that holds no store: a mistyped --data must not create one."""
    if path.startswith(CLUSTER_SCHEMES):  # a NATS cluster (docs/CLUSTER.md)
        return
    if not os.path.isdir(os.path.join(path, "meta")):
        raise CliError(
            f"{path} is not a logstore data directory (it has no meta/): check --data, or go "
            "through a server with --url; `logstore serve --data DIR` creates a store"
        )


def _target(args: argparse.Namespace, *, write: bool) -> Store | Client:
    """The server at --url, else the --data directory (read-only unless `write`)."""
    if args.url:
        return Client(args.url, token=args.token)
    _require_store(args.data)
    try:
        if args.data.startswith(CLUSTER_SCHEMES):
            return Store(args.data)
        return Store(args.data, readonly=not write)
    except StoreLocked:
        raise CliError(
            f"the data directory {args.data} is in use (is `logstore serve` running on it?); "
            "go through the server with --url"
        ) from None


# ----------------------------------------------------------------- commands


def _print_json(doc: object) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False))


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import ssl

    from .auth import AuthFileError
    from .limits import Limits
    from .serve import BindRefused, run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CliError("give both --tls-cert and --tls-key, or neither")
    given = {f: getattr(args, f) for f, _ in _LIMIT_FLAGS if getattr(args, f) is not None}
    try:
        run(
            args.data,
            args.host,
            args.port,
            args.fsync,
            args.auth_file,
            args.allow_unauthenticated,
            Limits(**given),
            frozenset(given),
            args.tls_cert,
            args.tls_key,
        )
    except (AuthFileError, BindRefused) as exc:
        raise CliError(str(exc)) from None
    except ssl.SSLError as exc:
        raise CliError(
            f"cannot use the TLS certificate {args.tls_cert} with key {args.tls_key}: {exc}"
        ) from None
    except StoreLocked:
        raise CliError(f"the data directory {args.data} is in use by another process") from None
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        raise CliError(str(exc)) from None
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    with _target(args, write=args.action in ("create", "delete")) as target:
        if args.action == "list":
            topics = [asdict(t) for t in target.topics()]
            if args.json:
                _print_json(topics)
            else:
                print_table(topics, ["id", "name", "start_offset", "end_offset", "size_bytes"])
        elif args.action == "info":
            _print_json(asdict(target.topic(args.topic)))
        elif args.action == "create":
            settings = {
                "name": args.name,
                "retention_ms": args.retention_ms,
                "retention_bytes": args.retention_bytes,
            }
            if args.segment_bytes is not None:
                settings["segment_bytes"] = args.segment_bytes
            _print_json(asdict(target.create_topic(args.topic, **settings)))
        else:
            target.delete_topic(args.topic)
            print(f"deleted topic {args.topic}", file=sys.stderr)
    return 0


def cmd_subscriptions(args: argparse.Namespace) -> int:
    with _target(args, write=args.action in ("create", "delete")) as target:
        if args.action == "list":
            subs = [asdict(s) for s in target.subscriptions(args.topic)]
            if args.json:
                _print_json(subs)
            else:
                print_table(subs, ["name", "ack_floor", "pending", "lag", "ack_wait"])
        elif args.action == "info":
            _print_json(asdict(target.subscription(args.topic, args.name)))
        elif args.action == "create":
            start: str | int = args.start
            if start.isascii() and start.isdigit():
                start = int(start)
            info = target.subscribe(
                args.topic,
                args.name,
                start=start,
                ack_wait=args.ack_wait,
                max_deliveries=args.max_deliveries,
                dead_letter_topic=args.dead_letter_topic,
            )
            _print_json(asdict(info))
        else:
            target.unsubscribe(args.topic, args.name)
            print(f"deleted subscription {args.name} of topic {args.topic}", file=sys.stderr)
    return 0


def _stdin_values(stream: BinaryIO, whole: bool) -> Iterator[bytes]:
    if whole:
        yield stream.read()
        return
    for line in stream:
        yield line[:-1] if line.endswith(b"\n") else line


def _batches(values: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def cmd_publish(args: argparse.Namespace) -> int:
    headers = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--header wants NAME=VALUE, not {item!r}")
        headers[name] = value
    key = args.key.encode() if args.key is not None else None
    if args.values:
        values: Iterator[bytes] = iter(v.encode() for v in args.values)
        size = len(args.values)
    else:
        values = _stdin_values(sys.stdin.buffer, args.whole)
        size = args.batch
    total = None if args.values else _stdin_size()
    done = 0
    with _target(args, write=True) as target, Progress() as progress:
        for batch in _batches(values, size):
            # Bare values take the library's fast path (and a raw body over HTTP).
            items = (
                batch if key is None and not headers else [Record(v, key, headers) for v in batch]
            )
            first = target.write_many(args.topic, items)
            print(json.dumps({"first_offset": first, "count": len(batch)}), flush=True)
            done += sum(map(len, batch)) + len(batch)  # the bytes of stdin's lines
            progress.update("publishing", min(done, total or done), total)
    return 0


def _stdin_size() -> int | None:
    """Bytes left on stdin when it is a file (`< file`), else None (a pipe: no end known)."""
    try:
        stat = os.fstat(sys.stdin.fileno())
        return stat.st_size - sys.stdin.buffer.tell() if S_ISREG(stat.st_mode) else None
    except (OSError, ValueError):
        return None


def cmd_read(args: argparse.Namespace) -> int:
    with _target(args, write=False) as target:
        offset = target.resolve_start(args.topic, args.offset, timestamp=args.timestamp)
        page = _READ_PAGE if args.max is None else max(min(args.max, _READ_PAGE), 1)
        # The iterator follows with long polls and, through --url, resumes after a lost
        # connection or a server restart without a gap or a repeat.
        messages = target.messages(
            args.topic, offset, follow=args.follow, max_messages=page, wait=_FOLLOW_WAIT
        )
        total = None
        if not args.follow:
            total = max(target.topic(args.topic).end_offset - offset, 0)
            total = total if args.max is None else min(total, args.max)
        out = _output_file(args.output) if args.output else sys.stdout.buffer
        try:
            # A bar only when the messages go elsewhere than the terminal it is drawn on.
            with Progress("messages", enabled=not out.isatty()) as progress:
                for done, m in enumerate(itertools.islice(messages, args.max), 1):
                    out.write((message_json(m).encode() if args.json else m.value) + b"\n")
                    if args.follow:
                        out.flush()
                    progress.update("reading", done, total)
            out.flush()
        finally:
            if args.output:
                out.close()
    return 0


def _output_file(path: str) -> BinaryIO:
    try:
        return open(path, "wb")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def cmd_check(args: argparse.Namespace) -> int:
    from logstore import check as run

    with Progress() as progress:
        return run(
            args.dir or args.data,
            sys.stdout,
            progress=lambda done, total: progress.update("checking", done, total),
        )


def cmd_backup(args: argparse.Namespace) -> int:
    from logstore import backup

    with Progress() as progress:
        report = backup(args.dir, args.dest, progress.update)
    messages = sum(t.end_offset - t.start_offset for t in report.topics.values())
    segments = sum(t.segments for t in report.topics.values())
    linked = sum(t.linked for t in report.topics.values())
    print(
        f"backed up {len(report.topics)} topic(s), {messages} message(s) in {segments} "
        f"segment(s) ({linked} hard-linked) to {report.path}"
    )
    if report.deleted:
        print(f"left out, deleted during the backup: {', '.join(report.deleted)}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from logstore import restore

    with Progress() as progress:
        report = restore(args.backup, args.dir, progress.update)
    print(
        f"restored {report.topics} topic(s), {report.messages} message(s) in "
        f"{report.segments} segment(s) to {os.path.abspath(args.dir)}; checked: no damage"
    )
    return 0


def cmd_cluster_dev(args: argparse.Namespace) -> int:
    """Run a 3-node NATS JetStream cluster on this machine until Ctrl-C (docs/CLUSTER.md)."""
    import signal
    import threading

    from .cluster_dev import ClusterError, DevCluster

    ports = [args.port + i for i in range(3)] if args.port else None
    try:
        cluster = DevCluster(args.dir, ports).start()
    except ClusterError as exc:
        raise CliError(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        pids = ", ".join(f"{n.name} pid {n.pid}" for n in cluster.nodes)
        print(f"logstore: NATS cluster up ({pids}); data under {cluster.root}", file=sys.stderr)
        print(f"logstore serve --data {cluster.url}", file=sys.stderr, flush=True)
        print(cluster.url, flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        print("logstore: NATS cluster stopped", file=sys.stderr, flush=True)
    return 0


def cmd_hash_token(args: argparse.Namespace) -> int:
    from .auth import hash_token

    token = args.token if args.token is not None else sys.stdin.readline().rstrip("\n")
    if not token:
        raise CliError("give the token as an argument or on stdin")
    print(hash_token(token))
    return 0


# ------------------------------------------------------------------- parser


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise CliError(f"{name} must be a port number, not {text!r}") from None


_LIMIT_FLAGS = [
    ("max_body_bytes", "largest request body (413 over it)"),
    ("max_batch_messages", "messages in one publish (413 over it)"),
    ("max_read_messages", "ceiling of max on replay and poll"),
    ("max_wait_seconds", "ceiling of wait on replay and poll"),
    ("page_bytes", "bytes of a replay page as sent, ceiling of max_bytes; poll: a sixth"),
    ("max_connections", "open connections (503 and close over it)"),
    ("max_long_polls", "long polls waiting at once (503 over it)"),
    ("max_sse_streams", "open event streams (503 over it)"),
    ("max_body_bytes_in_transit", "request bodies being received at once (503 over it)"),
    ("tail_cache_bytes", "answers kept for long polls woken together"),
    ("idle_timeout_seconds", "an idle connection is closed after this"),
    ("body_timeout_seconds", "a request body slower than this answers 408"),
    ("sse_keepalive_seconds", "an idle event stream gets a comment this often"),
    ("sse_send_timeout_seconds", "an event stream that reads nothing this long is closed"),
    ("sse_chunk_bytes", "encoded bytes per event-stream send"),
    ("sse_read_threads", "event streams reading the log at once"),
    ("retry_after_seconds", "Retry-After of 503 answers"),
    ("io_threads", "storage threads for reads, acks, topic changes"),
    ("publish_threads", "publishing threads"),
    ("shutdown_timeout_seconds", "on shutdown, time for requests in progress"),
]
"""The `Limits` fields `logstore serve` sets: flag --max-body-bytes, env LOGSTORE_MAX_BODY_BYTES."""


def _positive(kind: type) -> object:
    """An argparse type: a finite int or float > 0."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} > 0, not {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _add_limit_flags(group: argparse._ArgumentGroup) -> None:
    from .limits import DESCRIPTOR_CAPPED, Limits

    defaults = Limits()
    for field, text in _LIMIT_FLAGS:
        default = getattr(defaults, field)
        env = "LOGSTORE_" + field.upper()
        shown = f"{default:,}" if isinstance(default, int) else f"{default:g}"
        if field in DESCRIPTOR_CAPPED:
            shown += ", lowered to fit the descriptor limit"
        group.add_argument(
            "--" + field.replace("_", "-"),
            dest=field,
            type=_positive(type(default)),
            default=os.environ.get(env),
            metavar="N",
            help=f"{text} (env {env}; default {shown})",
        )


def _batch_size(text: str) -> int:
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_BATCH_MESSAGES:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 1 to {MAX_BATCH_MESSAGES}, not {text!r}")


def _read_start(text: str) -> str | int:
    """--offset: an offset, "start" or "end" (`resolve_start`'s "earliest" and "latest")."""
    if text in _NAMED_STARTS:
        return _NAMED_STARTS[text]
    if text.isascii() and text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"expected an offset, 'start' or 'end', not {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logstore",
        description="A durable, log-structured message store.",
        epilog="Most commands act on --data DIR directly, or on a server with --url URL.",
    )
    parser.add_argument("--version", action="version", version=f"logstore {version('logstore')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data",
        default=os.environ.get("LOGSTORE_DATA", DEFAULT_DATA),
        help="data directory, or a NATS cluster nats://h1:4222,nats://h2:4222 "
        "(docs/CLUSTER.md) (env LOGSTORE_DATA; default %(default)s)",
    )
    target = argparse.ArgumentParser(add_help=False, parents=[data])
    target.add_argument(
        "--url",
        default=os.environ.get("LOGSTORE_URL"),
        help="use the server at this URL instead of --data (env LOGSTORE_URL)",
    )
    target.add_argument(
        "--token",
        default=os.environ.get("LOGSTORE_TOKEN"),
        help="bearer token for --url (env LOGSTORE_TOKEN)",
    )

    serve = commands.add_parser(
        "serve", parents=[data], help="run the HTTP server on a data directory"
    )
    serve.add_argument(
        "--host",
        default=os.environ.get("LOGSTORE_HOST", DEFAULT_HOST),
        help="address to listen on (env LOGSTORE_HOST; default %(default)s)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=_env_int("LOGSTORE_PORT", DEFAULT_PORT),
        help="port, 0 for any free one (env LOGSTORE_PORT; default %(default)s)",
    )
    serve.add_argument(
        "--fsync",
        choices=FSYNC_POLICIES,
        default=os.environ.get("LOGSTORE_FSYNC", "always"),
        help="durability policy (env LOGSTORE_FSYNC; default %(default)s)",
    )
    serve.add_argument(
        "--auth-file",
        default=os.environ.get("LOGSTORE_AUTH_FILE"),
        help="JSON file of bearer tokens and permissions (env LOGSTORE_AUTH_FILE)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="allow listening on a non-loopback address without --auth-file",
    )
    serve.add_argument(
        "--tls-cert",
        default=os.environ.get("LOGSTORE_TLS_CERT"),
        metavar="FILE",
        help="serve HTTPS with this PEM certificate chain (env LOGSTORE_TLS_CERT)",
    )
    serve.add_argument(
        "--tls-key",
        default=os.environ.get("LOGSTORE_TLS_KEY"),
        metavar="FILE",
        help="the PEM private key of --tls-cert (env LOGSTORE_TLS_KEY)",
    )
    _add_limit_flags(serve.add_argument_group("limits (docs/LIMITS.md)"))
    serve.set_defaults(run=cmd_serve)

    topics = commands.add_parser("topics", help="list, create, inspect, delete topics")
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", parents=[target], help="list topics")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions.add_parser("info", parents=[target], help="show a topic").add_argument("topic")
    p = actions.add_parser("create", parents=[target], help="create a topic")
    p.add_argument("topic")
    p.add_argument("--name", help="display name (default: the id)")
    p.add_argument("--retention-ms", type=int, help="delete segments older than this")
    p.add_argument("--retention-bytes", type=int, help="keep at most about this many bytes")
    p.add_argument("--segment-bytes", type=int, help="segment file size (default 64 MiB)")
    actions.add_parser("delete", parents=[target], help="delete a topic").add_argument("topic")
    topics.set_defaults(run=cmd_topics)

    subs = commands.add_parser("subscriptions", help="list, create, inspect, delete subscriptions")
    actions = subs.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", parents=[target], help="list a topic's subscriptions")
    p.add_argument("topic")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for action, text in (("info", "show"), ("create", "create"), ("delete", "delete")):
        p = actions.add_parser(action, parents=[target], help=f"{text} a subscription")
        p.add_argument("topic")
        p.add_argument("name")
        if action == "create":
            p.add_argument("--start", default="earliest", help="earliest, latest or an offset")
            p.add_argument("--ack-wait", type=float, default=30.0, help="lease seconds")
            p.add_argument("--max-deliveries", type=int, help="then dead-letter the message")
            p.add_argument("--dead-letter-topic", help="where dead letters go")
    subs.set_defaults(run=cmd_subscriptions)

    pub = commands.add_parser(
        "publish",
        parents=[target],
        help="publish messages from arguments, or stdin (one per line)",
    )
    pub.add_argument("topic")
    pub.add_argument("values", nargs="*", help="message values (default: read stdin)")
    pub.add_argument("--key", help="key of every message")
    pub.add_argument("--header", action="append", default=[], help="NAME=VALUE (repeatable)")
    pub.add_argument("--whole", action="store_true", help="all of stdin is one message")
    pub.add_argument(
        "--batch",
        type=_batch_size,
        default=1000,
        metavar="N",
        help=f"stdin lines per atomic batch, 1 to {MAX_BATCH_MESSAGES} (default %(default)s)",
    )
    pub.set_defaults(run=cmd_publish)

    read = commands.add_parser("read", parents=[target], help="print messages; --follow waits")
    read.add_argument("topic")
    start = read.add_mutually_exclusive_group()
    start.add_argument("--offset", type=_read_start, help="an offset, start (default) or end")
    start.add_argument("--timestamp", type=int, help="start at this time (ms since the epoch)")
    read.add_argument("--max", type=int, help="stop after this many messages")
    read.add_argument("-f", "--follow", action="store_true", help="wait for new messages")
    read.add_argument("--json", action="store_true", help="one Msg JSON object per line")
    read.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    read.set_defaults(run=cmd_read)

    check = commands.add_parser("check", help="verify every record of a data directory")
    check.add_argument("dir", nargs="?", help="data directory (default --data)")
    check.add_argument(
        "--data", default=os.environ.get("LOGSTORE_DATA", DEFAULT_DATA), help=argparse.SUPPRESS
    )
    check.set_defaults(run=cmd_check)

    saver = commands.add_parser(
        "backup",
        help="copy a data directory, even while a server writes to it (docs/OPERATIONS.md)",
    )
    saver.add_argument("dir", help="the data directory to back up")
    saver.add_argument("dest", help="where the backup goes: a new or empty directory")
    saver.set_defaults(run=cmd_backup)

    restorer = commands.add_parser(
        "restore", help="check a backup and make it a data directory again"
    )
    restorer.add_argument("backup", help="a directory `logstore backup` made")
    restorer.add_argument("dir", help="the data directory to create: new or empty")
    restorer.set_defaults(run=cmd_restore)

    dev = commands.add_parser(
        "cluster-dev",
        help="run a 3-node NATS JetStream cluster on this machine, for trying cluster mode",
    )
    dev.add_argument(
        "--dir", default="./logstore-cluster", help="where the nodes keep data (%(default)s)"
    )
    dev.add_argument(
        "--port",
        type=int,
        default=4222,
        help="client port of the first node; the others take the next two (%(default)s; "
        "0 for free ones)",
    )
    dev.set_defaults(run=cmd_cluster_dev)

    hasher = commands.add_parser("hash-token", help="print a token's hash for an auth file")
    hasher.add_argument("token", nargs="?", help="the token (default: read stdin)")
    hasher.set_defaults(run=cmd_hash_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except CliError as exc:
        print(f"logstore: error: {exc}", file=sys.stderr)
        return 1
    except LogstoreError as exc:
        print(f"logstore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`logstore read ... | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
