//! `loadgen`: the open-loop load generator (`loadgen --help`; the library's `app` module).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(perf::app::main(std::env::args().skip(1).collect()));
}
