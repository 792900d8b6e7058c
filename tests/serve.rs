//! `sluice serve` as a subprocess on a free loopback port, with a tiny trained bundle: health,
//! models, a completion, a streamed chat completion, a bad request, then SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::evaluate::{PIPELINE, bundle, rows};
use crate::support::{BIN, Test};

/// One HTTP/1.1 request on a fresh connection: (status, headers and body as text).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    (status, out)
}

pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(t: &Test, args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .current_dir(t.root())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sluice serve never said where it listens");
            };
            if let Some(addr) = line.strip_prefix("listening on http://") {
                return Server {
                    child,
                    addr: addr.trim().to_owned(),
                };
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_answers_the_openai_api_and_stops_on_sigterm() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(20)).workflow(PIPELINE);
    t.run(&[]);
    let bundle = bundle(&t);
    let model = bundle.trim_start_matches("deployments/").to_owned();
    // The pre-trained base as a B variant, by its directory.
    let base = "build/tiny/pretrain/model";
    let mut server = Server::start(&t, &[&bundle, "--variant", &format!("{base}=0.3")]);
    let addr = server.addr.clone();

    let (status, body) = http(&addr, "GET", "/healthz", None);
    assert_eq!(status, 200, "{body}");

    let (status, body) = http(&addr, "GET", "/v1/models", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"id\":\"{model}\"")), "{body}");
    assert!(body.contains(&format!("\"id\":\"{base}\"")), "{body}");

    let request = format!(
        r#"{{"model": "{model}", "prompt": "colour 3?", "max_tokens": 5, "temperature": 0}}"#
    );
    let (status, body) = http(&addr, "POST", "/v1/completions", Some(&request));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"text\""), "{body}");
    assert!(body.contains("\"completion_tokens\""), "{body}");

    let request = format!(
        r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "colour 1?"}}], "max_tokens": 4, "stream": true}}"#
    );
    let (status, body) = http(&addr, "POST", "/v1/chat/completions", Some(&request));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("text/event-stream"), "{body}");
    assert!(body.contains("data: "), "{body}");
    assert!(body.contains("chat.completion.chunk"), "{body}");
    assert!(body.contains("[DONE]"), "{body}");

    // A request forced to the B variant is answered by it, and says so.
    let mut s = TcpStream::connect(&addr).unwrap();
    let request = r#"{"prompt": "colour 2?", "max_tokens": 3, "temperature": 0, "model": "x"}"#
        .replace("\"x\"", &format!("\"{base}\""));
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nx-sluice-variant: {base}\r\nContent-Length: {}\r\n\r\n{request}",
        request.len()
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.to_lowercase()
            .contains(&format!("x-sluice-variant: {base}")),
        "{body}"
    );

    let (status, body) = http(&addr, "POST", "/v1/completions", Some("{not json"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");

    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "sluice serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A deployment's name directory serves its newest version.
    let name_dir = bundle.rsplit_once('/').unwrap().0;
    let server = Server::start(&t, &[name_dir]);
    let (status, body) = http(&server.addr, "GET", "/v1/models", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"id\":\"{model}\"")), "{body}");
}
