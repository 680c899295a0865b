//! [`RedisServer`]: a `redis-server` of a test's own, on a Unix socket in a fresh directory
//! (no port to race for), stopped when dropped.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A `redis-server` process owned by a test: its own directory and socket, persistence off
/// unless asked for, killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    append_only: bool,
    /// A TLS listener: certificate, key, loopback port.
    tls: Option<(PathBuf, PathBuf, u16)>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with persistence off (no RDB snapshots, no AOF).
    pub fn start() -> io::Result<Self> {
        Self::launch(false)
    }

    /// Starts a server with the append-only file on and `appendfsync always`: everything it
    /// acknowledged survives a restart.
    pub fn start_persistent() -> io::Result<Self> {
        Self::launch(true)
    }

    /// Starts a server (persistence off) that also serves TLS on a loopback port, with the
    /// certificate `cert` and its key `key` (PEM); clients are not asked for certificates.
    pub fn start_tls(cert: &Path, key: &Path) -> io::Result<Self> {
        // A port the system just gave out; the server binds it at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut server = Self::prepare(false)?;
        server.tls = Some((cert.to_path_buf(), key.to_path_buf(), port));
        server.spawn()?;
        Ok(server)
    }

    fn launch(append_only: bool) -> io::Result<Self> {
        let mut server = Self::prepare(append_only)?;
        server.spawn()?;
        Ok(server)
    }

    fn prepare(append_only: bool) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let binary = find_binary()?;
        let dir = std::env::temp_dir().join(format!(
            "enclave-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("redis.sock");
        Ok(Self {
            binary,
            dir,
            socket,
            append_only,
            tls: None,
            child: None,
        })
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&self.socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .arg("--loglevel")
            .arg("warning");
        if let Some((cert, key, port)) = &self.tls {
            command
                .arg("--tls-port")
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(cert)
                .args(["--tls-auth-clients", "no"]);
        }
        if self.append_only {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", self.binary.display()),
                )
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if ping(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "redis-server exited at start ({status}); see its stderr above"
                    )));
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server did not answer PING within {READY_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL clients connect with (`redis+unix:///…/redis.sock`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The TLS URL (`rediss://127.0.0.1:PORT`) of a server started with
    /// [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|(_, _, port)| format!("rediss://127.0.0.1:{port}"))
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the server the way an operator would (`SHUTDOWN`: with persistence on, the
    /// append-only file is complete), then starts it again on the same directory and socket.
    pub fn restart(&mut self) -> io::Result<()> {
        self.shutdown()?;
        self.spawn()
    }

    /// Kills the server at once (`SIGKILL`) and starts it again on the same directory.
    pub fn crash_and_restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Stops the server with `SHUTDOWN` and waits for the process to end.
    pub fn shutdown(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            // The server closes the connection as it exits: the reply is not awaited.
            if let Ok(mut stream) = UnixStream::connect(&self.socket) {
                let _ = stream.write_all(b"SHUTDOWN\r\n");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        Ok(())
    }

    /// Kills the server (`SIGKILL`) without restarting it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(socket: &Path) -> io::Result<()> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply)?;
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(io::Error::other("unexpected PING reply"))
    }
}

/// `redis-server` from `PATH` (or Debian's path).
fn find_binary() -> io::Result<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    from_path
        .or_else(|| {
            let debian = PathBuf::from("/usr/bin/redis-server");
            debian.is_file().then_some(debian)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "redis-server not found on PATH: install Debian's `redis-server` package \
                 (.ci/run does) to run the Redis store tests",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(socket: &Path, line: &[u8]) -> Vec<u8> {
        let mut stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream.write_all(line).unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn a_persistent_server_keeps_its_data_across_a_restart_and_a_plain_one_does_not() {
        let mut persistent = RedisServer::start_persistent().unwrap();
        assert_eq!(command(persistent.socket(), b"SET k v\r\n"), b"+OK\r\n");
        persistent.restart().unwrap();
        assert_eq!(command(persistent.socket(), b"GET k\r\n"), b"$1\r\nv\r\n");

        let mut plain = RedisServer::start().unwrap();
        assert_eq!(command(plain.socket(), b"SET k v\r\n"), b"+OK\r\n");
        plain.restart().unwrap();
        assert_eq!(command(plain.socket(), b"GET k\r\n"), b"$-1\r\n");
        assert!(plain.url().starts_with("redis+unix:///"));
    }
}
