//! Load generation, benchmarks and profiling for max-tps-ecs.
//!
//! # Layout
//! - `bench-ping.sh`: `/public/ping` requests/s and server CPU-µs per request of the edge
//!   (each driver) against nginx's static 200 (`nginx/static200.conf`) and the
//!   monoio-http yardstick, same machine, same load tool, same run; writes
//!   `results/ping.md`.
//! - `src/bin/monoio_http_ping.rs`: a minimal one-thread server on monoio-http's h1
//!   codec answering `GET /public/ping` like the edge, only for that comparison.
//! - `probe-http.py`: raw-socket HTTP/1.1 robustness probes (pipelining, smuggling
//!   shapes, header and body limits, garbage, random mutations) of any such server;
//!   findings for monoio-http and the edge in `results/monoio-http.md`.
//!
//! - `bench-redis.sh` + `src/bin/redis_bench.rs`: the edge's pipelined Redis client on
//!   one core (`SET key:<random> val NX PX 300000`, 256 concurrent callers) against
//!   `redis-benchmark -P 16 -c 50`, same Redis, same run; writes `results/redis.md`.
//!
//! - `loadgen` (`src/bin/loadgen.rs`, issue 7): the open-loop load generator. A request
//!   is due at a time set by the offered rate, whatever the server does; latency counts
//!   from that time when the request had to wait for a connection (coordinated omission
//!   corrected). Modules, in the order a run uses them:
//!   - `app`: command line, buyers entered, runs (plain, `stepup`, `max` search, the
//!     same against nginx), audit, output files; `merge` of several machines' JSON.
//!   - `setup`: buyers enter the waiting room before a run that needs room tokens.
//!   - `run`: one run: monoio runtimes (one a thread), progress line every second, CPU
//!     time sampled at stage boundaries (`cpu`).
//!   - `schedule`: the open-loop clock and stages; `scenario`: what each slot sends and
//!     learns; `client`: the keep-alive HTTP/1.1 client.
//!   - `soak`: `loadgen soak`'s pass mark (flat RSS and open files of the watched
//!     processes) and its chart.
//!   - `stats`: HdrHistograms per stage and endpoint, their V2 serialization;
//!     `report`: markdown, JSON and the hand-drawn SVG chart; `audit`: statuses polled
//!     to the end and PostgreSQL checked after a run that buys.
//! - `bench.sh` (`make bench`): the standard set (issue 4's figures: `max` searches of
//!   cached summary and hold, each edge driver, nginx's static 200 in the same run;
//!   stepup; mixed and journey with the worker, audited), each report in `results/`;
//!   `bench-index.py` writes `results/bench.md` from their JSON.
//! - `profile.sh` (`make profile`): flamegraph of the edge under loadgen (`perf record
//!   -e cpu-clock`, inferno); `callgrind.sh` (`make callgrind`): the edge's instructions
//!   per request for a fixed batch (valgrind), repeatable on a noisy machine.
//! - `faults.sh` (`make fault`, `make fault-short`) + `faultproxy.py` + `faults.py`:
//!   the fault suite (issue 14): loadgen `mixed` with its audit and a `--trace`, and
//!   mid-run a kill -9 of the worker, of an edge, of Redis, a PostgreSQL restart, Redis
//!   stopped, and a fault proxy between edge and Redis; `results/faults.md`.
//! - `soak.sh` (`make soak`): `loadgen soak` for 30 minutes, RSS and open files of the
//!   edge and the worker sampled and judged; `results/soak/`.

pub mod app;
pub mod audit;
pub mod client;
pub mod cpu;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod setup;
pub mod soak;
pub mod stats;
