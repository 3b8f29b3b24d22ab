//! Integration tests of the worker against the real PostgreSQL and Redis of the local
//! stack (`make services`; `make test` exports `DATABASE_URL` and `REDIS_URL`). Each test
//! uses its own event ids, and the migration tests their own scratch databases, so the
//! tests run in parallel with each other and with a running edge. The consumer tests
//! (`consume`, `sqs`) set `WORKER_EVENTS` to their own events (SQS: their own moto
//! queues), so they never take another test's messages.

mod catalog;
mod cli;
mod consume;
mod metrics;
mod migrate;
mod redis_tls;
mod rules;
mod sqs;
mod support;
