//! End-to-end tests of the whole system (edge + worker + Redis + PostgreSQL), in
//! `tests/tests/`. They land with the worker (issue 6).
