//! A destination that misbehaves at random: 500s, 429 with Retry-After, answers slower than
//! the route's timeout, connections dropped before an answer; and 400 for bodies marked `"bad":
//! true`. A plain HTTP/1.1 server over TCP (keep-alive), so it can cut a connection wherever it
//! likes. It dedupes by `Idempotency-Key` as a careful destination would, and counts what a
//! duplicate arrival would have cost.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happened to each key.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Keys answered 2xx (processed), with the path they came to.
    pub processed: HashMap<String, String>,
    /// Arrivals of a key already processed (deduped, answered 200 again).
    pub duplicates: usize,
    /// Requests per key, whatever the answer.
    pub arrivals: HashMap<String, u32>,
    /// Answers by kind (`ok`, `500`, `429`, `slow`, `drop`, `400`).
    pub answers: HashMap<&'static str, usize>,
    /// TCP connections accepted (a reused connection serves many requests).
    pub connections: usize,
}

/// The chaos destination.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// `http://127.0.0.1:port`.
    pub base: String,
    tally: Arc<Mutex<Tally>>,
}

/// How slow a "slow" answer is: past any route timeout the test sets (1 s).
const SLOW: Duration = Duration::from_millis(2500);

impl Chaos {
    /// Starts the destination. Of the first three arrivals of a key, about one in eight each
    /// is a 500, a 429 (`Retry-After: 1`), a slow answer and a dropped connection; later
    /// arrivals succeed, so every healthy task gets through within its schedule.
    pub async fn start(seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let tally = Arc::new(Mutex::new(Tally::default()));
        let t = Arc::clone(&tally);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                t.lock().unwrap().connections += 1;
                tokio::spawn(serve(stream, Arc::clone(&t), seed));
            }
        });
        Self { base, tally }
    }

    /// What happened so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }
}

/// One connection: requests in turn until the client closes it or we cut it.
async fn serve(mut stream: TcpStream, tally: Arc<Mutex<Tally>>, seed: u64) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let key = header("idempotency-key");
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let bad = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .is_some_and(|v| v["bad"] == true);
        let (kind, answer) = {
            let mut t = tally.lock().unwrap();
            let n = {
                let a = t.arrivals.entry(key.clone()).or_default();
                *a += 1;
                *a
            };
            let kind = if bad {
                "400"
            } else if t.processed.contains_key(&key) {
                t.duplicates += 1;
                "ok"
            } else {
                choose(seed, &key, n)
            };
            if kind == "ok" {
                t.processed.insert(key.clone(), path);
            }
            *t.answers.entry(kind).or_default() += 1;
            let answer: &[u8] = match kind {
                "ok" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                "400" => b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n{\"error\":\"bad_input\"}",
                "500" => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops",
                "429" => b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            };
            (kind, answer)
        };
        match kind {
            "slow" => {
                // The client gives up first; whatever it does, this key is not processed.
                tokio::time::sleep(SLOW).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
                return;
            }
            // Hang up without a word.
            "drop" => return,
            _ => {
                if stream.write_all(answer).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The fate of arrival `n` of `key`: random-looking but reproducible from the seed.
fn choose(seed: u64, key: &str, n: u32) -> &'static str {
    if n > 3 {
        return "ok";
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, key, n).hash(&mut h);
    match h.finish() % 8 {
        0 => "500",
        1 => "429",
        2 => "slow",
        3 => "drop",
        _ => "ok",
    }
}

/// Reads one request (head and a `content-length` body); None when the connection ends.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let start = end + 4;
            while buf.len() < start + length {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[start..start + length].to_vec();
            buf.drain(..start + length);
            return Some((head, body));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
