//! The local AWS emulator: moto server from the project's virtual environment, started when
//! nothing answers at the endpoint, and stopped with us.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Runs moto in-process and exits when its stdin closes, so the emulator never outlives the
/// process that started it, even one that is killed.
///
/// Two speed fixes to moto's SQS, same rules: its ReceiveMessage recomputes every attribute of
/// the queue (each a walk of the whole queue) for every message it returns, to read the
/// retention period, and reads the clock through `datetime` arithmetic about 9 µs a call. With
/// them a pass over 1,000 messages takes under a second instead of about two minutes, and one
/// over 10,000 is possible at all. Applied only where moto has the shape they replace.
const LAUNCHER: &str = r#"
import os, sys, threading, time
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
try:
    from moto.sqs import models as sqs
    exact = sqs.unix_time
    def unix_time(dt=None):
        return time.time() if dt is None else exact(dt)
    def unix_time_millis(dt=None):
        return unix_time(dt) * 1000.0
    def retained(self, queue_name, message):
        queue = self.get_queue(queue_name)
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()
    if hasattr(sqs.SQSBackend, "is_message_valid_based_on_retention_period") and hasattr(sqs, "unix_time_millis"):
        sqs.unix_time = unix_time
        sqs.unix_time_millis = unix_time_millis
        sqs.SQSBackend.is_message_valid_based_on_retention_period = retained
except Exception:
    pass
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

/// A running emulator (ours or one that was already there).
#[derive(Debug)]
pub struct Emulator {
    endpoint: String,
    child: Option<(Child, ChildStdin)>,
}

impl Emulator {
    /// The emulator at `127.0.0.1:port`: the one already answering there, or a new moto server.
    pub fn ensure(port: u16) -> anyhow::Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let endpoint = format!("http://{addr}");
        if port != 0 && answers(addr) {
            return Ok(Self {
                endpoint,
                child: None,
            });
        }
        let port = if port == 0 { free_port()? } else { port };
        Self::start(port)
    }

    /// Starts a moto server on `port`.
    pub fn start(port: u16) -> anyhow::Result<Self> {
        let python = venv_python()?;
        let mut child = Command::new(&python)
            // Isolated: the working directory is not on its path, so a `click.py` or
            // `flask.py` beside the user cannot stand in for moto's own imports.
            .arg("-I")
            .arg("-c")
            .arg(LAUNCHER)
            .arg(port.to_string())
            // Its request recorder (`/moto-api/recorder/*`, the cost bench's count) writes here,
            // not into the working directory.
            .env(
                "MOTO_RECORDER_FILEPATH",
                std::env::temp_dir().join(format!("moto-recording-{port}")),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the emulator with {}", python.display()))?;
        let stdin = child.stdin.take().context("emulator stdin")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while !answers(addr) {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the emulator exited at start ({status}); is moto[server] installed in {}? Run `make venv`.",
                    python.display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                bail!("the emulator did not answer on {addr} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            endpoint: format!("http://{addr}"),
            child: Some((child, stdin)),
        })
    }

    /// The endpoint URL to give the AWS SDK.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this process started it (and so stops it).
    pub fn is_ours(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some((mut child, mut stdin)) = self.child.take() {
            let _ = stdin.write_all(b"");
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The virtual environment's Python: `SWITCHBOARD_VENV`, else `.venv` in this directory or
/// one above it, else the one beside the source tree this binary was built from.
fn venv_python() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(venv) = std::env::var("SWITCHBOARD_VENV") {
        candidates.push(PathBuf::from(venv));
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|d| d.join(".venv")));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    candidates
        .into_iter()
        .map(|venv| venv.join("bin/python"))
        .find(|p| p.exists())
        .context(
            "no virtual environment with the emulator found (looked for .venv/bin/python here, \
             above here and beside the source); run `make venv` or set SWITCHBOARD_VENV",
        )
}
