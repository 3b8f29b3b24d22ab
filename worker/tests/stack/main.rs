//! Integration tests of the worker against the real PostgreSQL and Redis of the local
//! stack (`make services`; `make test` exports `DATABASE_URL` and `REDIS_URL`). Each test
//! uses its own event ids, and the migration tests their own scratch databases, so the
//! tests run in parallel with each other and with a running edge.

mod catalog;
mod cli;
mod migrate;
mod support;
