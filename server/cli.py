"""The `logstore` command: serve, manage topics and subscriptions, publish, read, check.

Every command but `serve`, `check` and `hash-token` works either on a data directory
(`--data DIR`: a `Store`, no server needed) or through a running server (`--url URL`: a
`logstore.client.Client`). The two have the same methods and give back the same types, so
each command is written once for both. Reading a directory opens it read-only, so it works
while a server holds it; changing one needs the directory to itself (else: use --url).
The server's modules (and aiohttp) are imported only by `serve` and `hash-token`.

Exit status: 0 success, 1 failure (one line on stderr saying why), 2 bad usage, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import BinaryIO

from logstore import FSYNC_POLICIES, MAX_BATCH_MESSAGES, LogstoreError, Record, Store, StoreLocked
from logstore.client import Client
from logstore.wire import message_json

DEFAULT_DATA = "./logstore-data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
_FOLLOW_WAIT = 30.0
_READ_PAGE = 1000
_NAMED_STARTS = {"start": "earliest", "end": "latest"}


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


def _target(args: argparse.Namespace, *, write: bool) -> Store | Client:
    """The server at --url, else the --data directory (read-only unless `write`)."""
    if args.url:
        return Client(args.url, token=args.token)
    try:
        return Store(args.data, readonly=not write)
    except StoreLocked:
        raise CliError(
            f"the data directory {args.data} is in use (is `logstore serve` running on it?); "
            "go through the server with --url"
        ) from None


# ----------------------------------------------------------------- commands


def _print_json(doc: object) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False))


def _table(rows: list[dict], columns: list[str]) -> None:
    cells = [columns] + [["-" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from .auth import AuthFileError
    from .serve import BindRefused, run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run(
            args.data,
            args.host,
            args.port,
            args.fsync,
            args.auth_file,
            args.allow_unauthenticated,
        )
    except (AuthFileError, BindRefused) as exc:
        raise CliError(str(exc)) from None
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
                _table(topics, ["id", "name", "start_offset", "end_offset", "size_bytes"])
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
                _table(subs, ["name", "ack_floor", "pending", "lag", "ack_wait"])
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
    with _target(args, write=True) as target:
        for batch in _batches(values, size):
            # Bare values take the library's fast path (and a raw body over HTTP).
            items = (
                batch if key is None and not headers else [Record(v, key, headers) for v in batch]
            )
            first = target.write_many(args.topic, items)
            print(json.dumps({"first_offset": first, "count": len(batch)}), flush=True)
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    with _target(args, write=False) as target:
        offset = target.resolve_start(args.topic, args.offset, timestamp=args.timestamp)
        wait = _FOLLOW_WAIT if args.follow else 0.0
        left = args.max
        out = sys.stdout.buffer
        while left is None or left > 0:
            page = _READ_PAGE if left is None else min(left, _READ_PAGE)
            messages = target.read(args.topic, offset, max_messages=page, wait=wait)
            if not messages and not args.follow:
                break
            for m in messages:
                out.write((message_json(m).encode() if args.json else m.value) + b"\n")
            out.flush()
            if messages:
                offset = messages[-1].offset + 1
            if left is not None:
                left -= len(messages)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from logstore import check as run

    return run(args.dir or args.data, sys.stdout)


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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data",
        default=os.environ.get("LOGSTORE_DATA", DEFAULT_DATA),
        help="data directory (env LOGSTORE_DATA; default %(default)s)",
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
    read.set_defaults(run=cmd_read)

    check = commands.add_parser("check", help="verify every record of a data directory")
    check.add_argument("dir", nargs="?", help="data directory (default --data)")
    check.add_argument(
        "--data", default=os.environ.get("LOGSTORE_DATA", DEFAULT_DATA), help=argparse.SUPPRESS
    )
    check.set_defaults(run=cmd_check)

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
