"""The JetStream engine: topics and subscriptions on a NATS JetStream cluster (SPEC §9).

`Store("nats://h1:4222,nats://h2:4222,...")` opens it; nats-py is imported only then. Each
module holds one part of the mapping (docs/CLUSTER.md has the whole of it):

    options.py      the URL and its query options (replicas, namespace, bounds)
    connection.py   the private event loop thread and the NATS connection on it
    api.py          JetStream API requests, their errors, bounded retries in elections
    names.py        topic and subscription names as stream / consumer names and subjects
    codec.py        messages as NATS messages (key and headers in `LS-*` headers)
    streams.py      topics as streams: create, info, list, delete
    append.py       atomic batches, message ids, idempotency keys
    read.py         batch Direct Get, leader reads, the offset for a time
    notify.py       wake-ups of waiting readers from a notification subject
    consumers.py    subscriptions as durable pull consumers; leases as tokens
    engine.py       `JetStreamEngine`, the `Engine` of `engine.base` over all of these
"""
