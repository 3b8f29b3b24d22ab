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
//! The open-loop load generator (`loadgen`) lands with issue 7.
