//! The `worker` binary itself: exit codes and output.

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use super::support::{drop_event, env, pg, redis, unique};

fn worker(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .args(args)
        .env("DATABASE_URL", env("DATABASE_URL"))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("WORKER_METRICS_ADDR", "off");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().expect("run the worker binary")
}

#[test]
fn bad_arguments_and_configuration_exit_64_naming_the_problem() {
    for (args, vars, says) in [
        (&["seed", "e", "--rate", "fast"][..], &[][..], "--rate"),
        (&["frobnicate"], &[], "unknown command"),
        (&[], &[], "usage"),
        (
            &["migrate"],
            &[("DATABASE_URL", "mysql://x")],
            "DATABASE_URL",
        ),
        (&["migrate"], &[("REDIS_URL", "http://x")], "REDIS_URL"),
        (&["migrate"], &[("WORKER_LOG", "loud")], "WORKER_LOG"),
    ] {
        let out = worker(args, vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?} {vars:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} {vars:?}: {stderr}");
    }
}

#[tokio::test]
async fn migrate_and_seed_report_what_they_did() {
    let out = worker(&["migrate"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema at version"));

    let event = unique("cli");
    let out = worker(
        &[
            "seed",
            &event,
            "--sections",
            "A,B",
            "--seats-per-section",
            "10",
            "--price",
            "5",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("event {event}")) && stdout.contains("A=10x5, B=10x5"),
        "{stdout}"
    );
    assert!(stdout.contains("total"), "says how long it took: {stdout}");

    let out = worker(&["rebuild-redis", &event], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = worker(&["rebuild-redis", &unique("absent")], &[]);
    assert_eq!(out.status.code(), Some(1));

    drop_event(&pg().await, &mut redis().await, &event).await;
}

/// A full disk under the log (stderr on `/dev/full`: every write fails with ENOSPC)
/// costs log lines, not the consumer: `worker run` keeps running, then stops cleanly
/// on SIGTERM (found by the fault suite: a full disk aborted the edges and the worker).
#[test]
fn a_log_that_cannot_be_written_does_not_stop_the_consumer() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let event = unique("fulllog");
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("run")
        .env("DATABASE_URL", env("DATABASE_URL"))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("WORKER_EVENTS", &event)
        .env("WORKER_METRICS_ADDR", "off")
        .env("WORKER_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(full)
        .spawn()
        .expect("start worker run");
    // It logs at start (connected, consuming) and at every empty poll at debug level;
    // a worker that dies of it does so at its first line, well within this window.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("worker run died with its log unwritable: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "after SIGTERM: {status}");
}
