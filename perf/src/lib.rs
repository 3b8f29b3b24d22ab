//! Load generation, benchmarks and profiling for max-tps-ecs.
//!
//! # Layout
//! - `bench-ping.sh`: `/public/ping` requests/s of the edge (each driver) against
//!   nginx's static 200, same machine, same load tool, same run.
//!
//! The open-loop load generator (`loadgen`) lands with issue 7.
