//! `rediss://` (ElastiCache in-transit encryption) against a real TLS `redis-server`
//! whose certificate is signed by a CA made for the test.

use worker::redis::{Conn, Frame, Pipeline, RedisConfig};

use crate::support::redis_server::RedisServer;

#[tokio::test]
async fn rediss_connects_with_a_trusted_ca_and_refuses_an_unknown_one() {
    let server = RedisServer::start_tls();
    let mut config =
        RedisConfig::from_url(&format!("rediss://127.0.0.1:{}/1", server.port)).expect("url");
    assert!(config.tls);

    let refused = Conn::connect(&config)
        .await
        .expect_err("a certificate of an unknown CA");
    assert!(refused.to_string().contains("certificate"), "{refused}");

    config.tls_ca_file = Some(server.tls_dir().join("ca.crt"));
    let mut conn = Conn::connect(&config).await.expect("TLS with the test CA");
    let mut pipeline = Pipeline::new();
    pipeline
        .push(&[b"SET", b"tls-key", b"over tls"])
        .push(&[b"GET", b"tls-key"])
        .push(&[b"CLIENT", b"INFO"]);
    let replies = conn.transaction(&pipeline).await.expect("a transaction");
    assert_eq!(replies[1], Frame::BulkString("over tls".into()));
    let Frame::BulkString(info) = &replies[2] else {
        panic!("CLIENT INFO: {:?}", replies[2]);
    };
    let info = String::from_utf8_lossy(info);
    assert!(info.contains(" db=1 "), "SELECT from the URL: {info}");
}
