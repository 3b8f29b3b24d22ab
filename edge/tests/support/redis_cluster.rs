//! A private Redis Cluster for a test: `redis-server --cluster-enabled yes` on free
//! ports (their cluster bus on other free ports), joined by `redis-cli --cluster
//! create`, its files in a temporary folder. Dropped, it is killed and deleted.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use super::{redis_server::RedisServer, WAIT};

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl RedisCluster {
    /// `primaries` primaries and `replicas` replicas of each; a primary silent for
    /// one second is failed over.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "edge-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut nodes = Vec::new();
        for i in 0..primaries * (1 + replicas) {
            let node_dir = dir.join(i.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let (bus, node_dir) = (free_port().to_string(), node_dir.display().to_string());
            nodes.push(RedisServer::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                "1000",
                "--cluster-config-file",
                "nodes.conf",
                "--dir",
                &node_dir,
            ]));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes, dir };
        cluster.wait_until("every node knows the others and the state is ok", |c| {
            c.nodes.iter().all(|n| {
                let info = c.cli(n.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", c.nodes.len()))
            })
        });
        cluster
    }

    /// `redis-cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", addrs.join(","))
    }

    /// One command to the node on `port` (`redis-cli --raw`), its output trimmed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["--raw", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn slot(&self, key: &str) -> u16 {
        let port = self.nodes[0].port;
        self.cli(port, &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("slot")
    }

    /// The node id of the node on `port`.
    pub fn id(&self, port: u16) -> String {
        self.cli(port, &["CLUSTER", "MYID"])
    }

    /// The port of the primary that serves `slot`, as the node on `asked` sees it
    /// (`CLUSTER NODES`: `id host:port@bus flags primary ... slot ranges`).
    pub fn owner(&self, asked: u16, slot: u16) -> u16 {
        let nodes = self.cli(asked, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let addr = fields[1].split('@').next().expect("addr");
                return addr
                    .rsplit(':')
                    .next()
                    .expect("port")
                    .parse()
                    .expect("port");
            }
        }
        panic!("no node serves slot {slot}: {nodes}")
    }

    /// SIGKILL to the node on `port`: no goodbye to its clients or to the cluster.
    pub fn kill(&self, port: u16) {
        let info = self.cli(port, &["INFO", "server"]);
        let pid = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("process_id:"))
            .expect("process_id");
        let status = Command::new("kill").args(["-KILL", pid]).status();
        assert!(status.expect("kill").success(), "kill -KILL {pid}");
    }

    /// Polls `done` every 20 ms until it holds, at most [`WAIT`] (or 30 s).
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + WAIT.max(Duration::from_secs(30));
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
