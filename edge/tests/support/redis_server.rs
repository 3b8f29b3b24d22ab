//! A private `redis-server` for tests that kill, pause or reconfigure it, so they
//! never disturb the shared one (`REDIS_URL`) that other tests use in parallel.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::WAIT;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    /// TLS only: the folder with `ca.crt`, `server.crt`, `server.key`.
    tls: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start(args: &[&str]) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            tls: None,
        };
        server.restart();
        server
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 signed by a CA
    /// made for it (`openssl`); the CA is `tls_dir()/ca.crt`.
    pub fn start_tls() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(format!("edge-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tls dir");
        let openssl = |args: &str| {
            let status = Command::new("openssl")
                .args(args.split(' '))
                .current_dir(&dir)
                .stderr(Stdio::null())
                .status();
            assert!(
                status.expect("openssl (make deps installs it)").success(),
                "openssl {args}"
            );
        };
        openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca");
        openssl(
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1",
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
        openssl(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
             -days 1 -extfile ext.cnf",
        );
        let file = |name: &str| dir.join(name).display().to_string();
        let tls_port = port.to_string();
        let args = [
            ("--port", "0".to_owned()),
            ("--tls-port", tls_port),
            ("--tls-cert-file", file("server.crt")),
            ("--tls-key-file", file("server.key")),
            ("--tls-ca-cert-file", file("ca.crt")),
            ("--tls-auth-clients", "no".to_owned()),
        ];
        let args = args
            .into_iter()
            .flat_map(|(k, v)| [k.to_owned(), v])
            .collect();
        let mut server = RedisServer {
            child: None,
            port,
            args,
            tls: Some(dir),
        };
        server.restart();
        server
    }

    pub fn tls_dir(&self) -> &std::path::Path {
        self.tls.as_deref().expect("a TLS server")
    }

    /// Starts the process (again, on the same port) and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (run `make services` to install it)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn answers(&self) -> bool {
        if let Some(dir) = &self.tls {
            let ca = dir.join("ca.crt").display().to_string();
            let port = self.port.to_string();
            let ping = Command::new("redis-cli")
                .args(["--tls", "--cacert", &ca, "-p", &port, "ping"])
                .output();
            return ping.is_ok_and(|out| out.stdout.starts_with(b"PONG"));
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0)
    }

    /// SIGKILL: no goodbye on any connection.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT (`resume`): the server stops answering with its
    /// connections open, as a stalled or overloaded Redis does.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args(["-s", signal, &pid]).status();
        assert!(status.expect("kill").success(), "kill -s {signal}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one inline command on a fresh connection and returns the raw reply.
    pub fn raw(&self, command: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(format!("{command}\r\n").as_bytes())
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.tls {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
