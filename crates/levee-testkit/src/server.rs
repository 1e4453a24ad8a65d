//! [`RedisServer`]: a throwaway `redis-server` on a free loopback port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestkitError;

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RedisServerOptions {
    password: Option<String>,
    cluster: bool,
    tls: bool,
    /// More `redis-server` arguments (a Cluster node's announced port).
    extra: Vec<String>,
}

impl RedisServerOptions {
    /// Require this password (`requirepass`).
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Serve TLS only (`rediss://`), with a fresh self-signed certificate
    /// for 127.0.0.1; [`RedisServer::ca_cert_pem`] gives it to clients.
    #[must_use]
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub(crate) fn cluster_node() -> Self {
        RedisServerOptions {
            cluster: true,
            ..Default::default()
        }
    }

    /// Adds `redis-server` arguments.
    pub(crate) fn args<I: IntoIterator<Item = String>>(mut self, args: I) -> Self {
        self.extra.extend(args);
        self
    }
}

/// A `redis-server` process on 127.0.0.1 with no persistence, in its own
/// temporary directory. Dropping it kills the process.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    opts: RedisServerOptions,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and returns once it answers `PING`.
    pub fn start() -> Result<RedisServer, TestkitError> {
        Self::start_with(RedisServerOptions::default())
    }

    /// Starts a server with `opts`.
    pub fn start_with(opts: RedisServerOptions) -> Result<RedisServer, TestkitError> {
        let dir = tempfile::tempdir().map_err(TestkitError::io("creating a temp dir"))?;
        Self::start_in(opts, dir, free_port()?)
    }

    pub(crate) fn start_in(
        opts: RedisServerOptions,
        dir: tempfile::TempDir,
        port: u16,
    ) -> Result<RedisServer, TestkitError> {
        let mut server = RedisServer {
            port,
            opts,
            dir,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), TestkitError> {
        let log = self.log_path();
        let mut cmd = Command::new("redis-server");
        if self.opts.tls {
            let cert = self.write_cert()?;
            cmd.args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(self.dir.path().join("key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(&cert)
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.arg("--port").arg(self.port.to_string());
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = &self.opts.password {
            cmd.arg("--requirepass").arg(pw);
        }
        if self.opts.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "2000"]);
        }
        // Later arguments win: a Cluster's own node timeout included.
        cmd.args(&self.opts.extra);
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TestkitError::NotInstalled("redis-server"),
            _ => TestkitError::Io {
                what: "spawning redis-server".into(),
                source: e,
            },
        })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.not_ready(format!("redis-server exited early ({status})")));
            }
            if self.ping(Duration::from_millis(200)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(self.not_ready(format!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        )))
    }

    fn not_ready(&self, msg: String) -> TestkitError {
        TestkitError::NotReady(msg, self.log_path().display().to_string())
    }

    /// Writes a self-signed certificate for 127.0.0.1 (once) and returns
    /// its path.
    fn write_cert(&self) -> Result<PathBuf, TestkitError> {
        let cert_path = self.dir.path().join("cert.pem");
        if cert_path.exists() {
            return Ok(cert_path);
        }
        let generated = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .map_err(|e| {
            TestkitError::NotReady(format!("generating a test certificate: {e}"), String::new())
        })?;
        std::fs::write(&cert_path, generated.cert.pem())
            .map_err(TestkitError::io("writing cert.pem"))?;
        std::fs::write(
            self.dir.path().join("key.pem"),
            generated.signing_key.serialize_pem(),
        )
        .map_err(TestkitError::io("writing key.pem"))?;
        Ok(cert_path)
    }

    /// The PEM of the certificate a TLS server presents (its own CA).
    pub fn ca_cert_pem(&self) -> Option<Vec<u8>> {
        self.opts
            .tls
            .then(|| std::fs::read(self.dir.path().join("cert.pem")).ok())
            .flatten()
    }

    /// Sends `PING` (after `AUTH` when a password is set); true on `PONG`.
    pub fn ping(&self, timeout: Duration) -> bool {
        if self.opts.tls {
            return self.tls_ping();
        }
        let mut cmds = Vec::new();
        if let Some(pw) = &self.opts.password {
            cmds.push(vec!["AUTH", pw.as_str()]);
        }
        cmds.push(vec!["PING"]);
        matches!(self.raw(&cmds, timeout), Ok(reply) if reply.contains("PONG"))
    }

    fn tls_ping(&self) -> bool {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--tls", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("--cacert")
            .arg(self.dir.path().join("cert.pem"));
        if let Some(pw) = &self.opts.password {
            cmd.args(["--no-auth-warning", "-a", pw]);
        }
        cmd.arg("PING")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
            .unwrap_or(false)
    }

    /// Sends commands over a fresh connection; returns the raw replies.
    pub(crate) fn raw(&self, cmds: &[Vec<&str>], timeout: Duration) -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut out = Vec::new();
        for cmd in cmds {
            out.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
            for arg in cmd {
                out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
            }
        }
        stream.write_all(&out)?;
        let mut reply = String::new();
        let mut buf = [0u8; 4096];
        // One read is enough for the short replies this is used for; keep
        // reading until every command has answered or the timeout strikes.
        while reply.matches("\r\n").count() < cmds.len() {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            reply.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(reply)
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` with TLS; with `:password@`
    /// when one is set).
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls { "rediss" } else { "redis" };
        match &self.opts.password {
            Some(pw) => format!("{scheme}://:{pw}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The loopback address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's working directory (its `nodes.conf` lives there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Kills the process (SIGKILL) and waits for it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if running and starts it again on the same port,
    /// with empty data (nothing is persisted).
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.kill();
        self.spawn()
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped process ignores SIGKILL until... it does not, but make
        // sure a paused server is not left behind frozen either way.
        self.resume();
        self.kill();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(TestkitError::io("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(TestkitError::io("finding a free port"))?
        .port();
    Ok(port)
}
