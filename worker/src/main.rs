//! `worker`: drains the commit queue into PostgreSQL (issue 6). Not built yet: this
//! binary only says so, so that scripts can already name it.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eprintln!("worker: not implemented yet (see issue 6)");
    std::process::ExitCode::from(2)
}
