//! `worker run` on the aws profile: SQS FIFO on a private moto server (PyPI
//! `moto[server]` in `.run/venv`, installed by `make deps`), PostgreSQL and Redis of the
//! stack. moto's gaps (FIELD-NOTES.md): a FIFO deduplication id is forgotten once its
//! message is deleted, which these tests do not rely on either way.

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aws_sdk_sqs::types::QueueAttributeName;

use super::support::{
    commit_message, count, drop_event, env, pg, redis, seed, state, unique, WAIT,
};
use crate::eventually;

const REGION: &str = "ap-northeast-2";

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../.run/venv/bin/moto_server");
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (run `make deps` to install moto)"));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Moto { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    async fn sqs(&self) -> aws_sdk_sqs::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        aws_sdk_sqs::Client::new(&config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A FIFO queue whose dead letters go to a FIFO DLQ after `max_receives` receives:
/// (queue url, dlq url).
async fn queues(sqs: &aws_sdk_sqs::Client, max_receives: u32) -> (String, String) {
    let dlq = sqs
        .create_queue()
        .queue_name("commits-dlq.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create the DLQ");
    let dlq_url = dlq.queue_url().expect("url").to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("DLQ arn");
    let redrive = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives});
    let queue = sqs
        .create_queue()
        .queue_name("commits.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .expect("create the queue");
    (queue.queue_url().expect("url").to_owned(), dlq_url)
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, group: &str, dedup: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

/// Visible and in-flight messages of a queue.
async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes");
    let get = |name: QueueAttributeName| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

fn spawn_worker(moto: &Moto, url: &str, extra: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .arg("run")
        .env("PROFILE", "aws")
        .env("SQS_QUEUE_URL", url)
        .env("SQS_WAIT_SECS", "1")
        .env("DATABASE_URL", env("DATABASE_URL"))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("WORKER_VISIBILITY_MS", "2000")
        .env("WORKER_EVENT_REFRESH_MS", "200")
        .env("WORKER_CONCURRENCY", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in moto.env() {
        command.env(k, v);
    }
    for (k, v) in extra {
        command.env(k, v);
    }
    command.spawn().expect("spawn the worker binary")
}

async fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the worker did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn sqs_commits_are_stored_once_deleted_after_the_commit_and_poison_is_redriven() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let moto = Moto::start();
    let sqs = moto.sqs().await;
    let (url, dlq_url) = queues(&sqs, 2).await;
    let event = unique("sqs");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    let group = format!("{event}#0");
    let alice = commit_message(&event, "alice", "k", &["A-1"]);
    // The same commit twice (SQS FIFO deduplicates only for 5 minutes; a producer
    // retry after that, or moto, delivers it twice), then bob for the same seat.
    send(&sqs, &url, &group, "alice-1", &alice).await;
    send(&sqs, &url, &group, "alice-2", &alice).await;
    send(
        &sqs,
        &url,
        &group,
        "bob",
        &commit_message(&event, "bob", "k", &["A-1"]),
    )
    .await;
    send(&sqs, &url, &format!("{event}#1"), "junk", "not json").await;

    let worker = spawn_worker(&moto, &url, &[]);
    eventually!(
        "alice CONFIRMED",
        state(&mut redis, &event, "alice", "k").await.as_deref() == Some("CONFIRMED")
    );
    eventually!(
        "bob REJECTED",
        state(&mut redis, &event, "bob", "k").await.as_deref() == Some("REJECTED")
    );
    // The poison is never deleted: the redrive policy moves it after 2 receives.
    eventually!(
        "the poison in the DLQ",
        depth(&sqs, &dlq_url).await == (1, 0)
    );
    eventually!("the queue empty", depth(&sqs, &url).await == (0, 0));
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM orders WHERE event_id = $1",
            &event
        )
        .await,
        2
    );
    let dead = sqs
        .receive_message()
        .queue_url(&dlq_url)
        .send()
        .await
        .expect("receive from the DLQ");
    assert_eq!(dead.messages()[0].body(), Some("not json"));

    // SIGTERM ends the long polls and exits cleanly.
    let kill = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    assert!(wait_exit(worker).await.success());

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn sqs_a_worker_killed_between_commit_and_delete_redelivers_and_doubles_nothing() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let moto = Moto::start();
    let sqs = moto.sqs().await;
    let (url, _) = queues(&sqs, 5).await;
    let event = unique("sqscrash");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    send(
        &sqs,
        &url,
        &format!("{event}#0"),
        "d",
        &commit_message(&event, "carol", "k", &["A-3"]),
    )
    .await;

    let crashing = spawn_worker(&moto, &url, &[("WORKER_FAULT", "exit-after-commit")]);
    assert_eq!(
        wait_exit(crashing).await.code(),
        Some(worker::run::FAULT_EXIT_CODE)
    );
    let orders = "SELECT count(*) FROM orders WHERE event_id = $1";
    assert_eq!(count(&pg, orders, &event).await, 1);
    assert_eq!(state(&mut redis, &event, "carol", "k").await, None);
    assert_eq!(depth(&sqs, &url).await, (0, 1), "received, not deleted");

    let mut restarted = spawn_worker(&moto, &url, &[]);
    eventually!(
        "CONFIRMED after the redelivery",
        state(&mut redis, &event, "carol", "k").await.as_deref() == Some("CONFIRMED")
    );
    eventually!("deleted", depth(&sqs, &url).await == (0, 0));
    let _ = restarted.kill();
    let _ = restarted.wait();
    assert_eq!(count(&pg, orders, &event).await, 1);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM sold_seats WHERE event_id = $1",
            &event
        )
        .await,
        1
    );

    drop_event(&pg, &mut redis, &event).await;
}
