//! The server over real HTTP on a loopback port, with fake backends: one that echoes the prompt's
//! words reversed, one that sleeps, one that fails, one that panics and one that classifies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_serve::{
    Backend, ChatMessage, FinishReason, GenerateRequest, Generation, ServeConfig, ServeError,
    TokenLogprob, TopLogprob, Variant, Variants,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Fake backends

/// Answers with the prompt's words reversed, one word a piece, one word a token.
struct Echo {
    id: &'static str,
    context: usize,
}

impl Backend for Echo {
    fn id(&self) -> &str {
        self.id
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        contents.join(" ")
    }

    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String> {
        let words: Vec<&str> = req.prompt.split_whitespace().rev().collect();
        let mut text = String::new();
        let mut completion_tokens = 0;
        let mut finish_reason = FinishReason::Stop;
        for word in &words {
            if req.stop.iter().any(|s| s == word) {
                break;
            }
            if completion_tokens == req.max_tokens {
                finish_reason = FinishReason::Length;
                break;
            }
            let piece = if text.is_empty() {
                (*word).to_owned()
            } else {
                format!(" {word}")
            };
            text.push_str(&piece);
            completion_tokens += 1;
            if !on_text(&piece) {
                break;
            }
        }
        Ok(Generation {
            text,
            prompt_tokens: words.len(),
            completion_tokens,
            finish_reason,
            ..Default::default()
        })
    }
}

fn echo(id: &'static str) -> Arc<dyn Backend> {
    Arc::new(Echo { id, context: 64 })
}

/// A classifier: `long` when a text has more than two words, else `short`, with probability
/// 0.75; it fails on an empty text.
struct Lengths {
    labels: Vec<String>,
}

impl Backend for Lengths {
    fn id(&self) -> &str {
        "lengths"
    }
    fn context_length(&self) -> usize {
        64
    }
    fn chat_prompt(&self, _: &[ChatMessage]) -> String {
        String::new()
    }
    fn generate(
        &self,
        _: &GenerateRequest,
        _: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String> {
        Err("a classifier does not generate".to_owned())
    }
    fn labels(&self) -> Option<&[String]> {
        Some(&self.labels)
    }
    fn classify(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        texts
            .iter()
            .map(|t| match t.split_whitespace().count() {
                0 => Err("empty text".to_owned()),
                1 | 2 => Ok(vec![0.25, 0.75]),
                _ => Ok(vec![0.75, 0.25]),
            })
            .collect()
    }
}

/// Sleeps, then answers "done"; counts the generations it has started.
struct Slow {
    delay: Duration,
    started: Arc<AtomicUsize>,
}

impl Backend for Slow {
    fn id(&self) -> &str {
        "slow"
    }
    fn context_length(&self) -> usize {
        64
    }
    fn chat_prompt(&self, _: &[ChatMessage]) -> String {
        String::new()
    }
    fn generate(
        &self,
        _: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String> {
        self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        on_text("done");
        Ok(Generation {
            text: "done".to_owned(),
            prompt_tokens: 1,
            completion_tokens: 1,
            finish_reason: FinishReason::Stop,
            ..Default::default()
        })
    }
}

/// Fails every generation.
struct Failing;

impl Backend for Failing {
    fn id(&self) -> &str {
        "failing"
    }
    fn context_length(&self) -> usize {
        64
    }
    fn chat_prompt(&self, _: &[ChatMessage]) -> String {
        String::new()
    }
    fn generate(
        &self,
        _: &GenerateRequest,
        _: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String> {
        Err("the model is on fire".to_owned())
    }
}

/// Answers with the seed it was given, in two pieces: `seed`, ` 5`; the prompt is two tokens.
struct Seeded;

impl Backend for Seeded {
    fn id(&self) -> &str {
        "seeded"
    }
    fn context_length(&self) -> usize {
        64
    }
    fn chat_prompt(&self, _: &[ChatMessage]) -> String {
        String::new()
    }
    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String> {
        let pieces = ["seed".to_owned(), format!(" {:?}", req.seed)];
        for piece in &pieces {
            on_text(piece);
        }
        Ok(Generation {
            text: pieces.concat(),
            prompt_tokens: 2,
            completion_tokens: 2,
            finish_reason: FinishReason::Stop,
            ..Default::default()
        })
    }
}

/// Generates `max_tokens` tokens (at most 2) of `t0`, `t1`; reports log-probabilities as asked:
/// a prompt of words or ids (`w0 w1` for `[0, 1]`), then -0.5 for each generated token, with
/// alternatives `t0` (-0.5), `t1` (-1.5), `t2` (-2.5). Knows ten token ids.
struct Scored;

impl Backend for Scored {
    fn id(&self) -> &str {
        "scored"
    }
    fn context_length(&self) -> usize {
        64
    }
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
    fn vocab_size(&self) -> Option<usize> {
        Some(10)
    }
    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String> {
        let prompt = match &req.prompt_ids {
            Some(ids) => ids
                .iter()
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" "),
            None => req.prompt.clone(),
        };
        let mut logprobs = Vec::new();
        if let (Some(_), true) = (req.logprobs, req.echo) {
            for (i, word) in prompt.split_whitespace().enumerate() {
                logprobs.push(TokenLogprob {
                    token: word.to_owned(),
                    bytes: word.as_bytes().to_vec(),
                    logprob: (i > 0).then_some(-1.0),
                    top: Vec::new(),
                    prompt: true,
                });
            }
        }
        let alternatives: Vec<TopLogprob> = (0..3)
            .map(|i| TopLogprob {
                token: format!("t{i}"),
                bytes: format!("t{i}").into_bytes(),
                logprob: -0.5 - i as f32,
            })
            .collect();
        let mut text = String::new();
        let count = req.max_tokens.min(2);
        for i in 0..count {
            let token = format!("t{i}");
            on_text(&token);
            text.push_str(&token);
            if let Some(k) = req.logprobs {
                logprobs.push(TokenLogprob {
                    token: token.clone(),
                    bytes: token.clone().into_bytes(),
                    logprob: Some(alternatives[i].logprob),
                    top: alternatives[..k.min(3)].to_vec(),
                    prompt: false,
                });
            }
        }
        Ok(Generation {
            text,
            prompt_tokens: prompt.split_whitespace().count(),
            completion_tokens: count,
            finish_reason: FinishReason::Length,
            echo: req.echo.then_some(prompt),
            logprobs,
        })
    }
}

/// Panics in every generation.
struct Panicking;

impl Backend for Panicking {
    fn id(&self) -> &str {
        "panicking"
    }
    fn context_length(&self) -> usize {
        64
    }
    fn chat_prompt(&self, _: &[ChatMessage]) -> String {
        String::new()
    }
    fn generate(
        &self,
        _: &GenerateRequest,
        _: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String> {
        panic!("boom")
    }
}

// ---------------------------------------------------------------------------------------------
// A server on a free port and a small HTTP/1.1 client

struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    async fn start(config: ServeConfig, variants: Variants) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(sluice_serve::serve(listener, config, variants, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            shutdown: Some(tx),
            handle,
        }
    }

    /// A server with one variant, `main`, over `backend`.
    async fn single(backend: Arc<dyn Backend>) -> Server {
        Self::with_config(ServeConfig::default(), backend).await
    }

    async fn with_config(config: ServeConfig, backend: Arc<dyn Backend>) -> Server {
        Self::start(config, Variants::single("main", backend).unwrap()).await
    }

    fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    /// Triggers a graceful shutdown and waits for `serve` to return.
    async fn stop(mut self) -> Result<(), ServeError> {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the server did not shut down")
            .unwrap()
    }
}

#[derive(Debug, Clone, Copy)]
struct Client {
    addr: SocketAddr,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not json ({e}): {}", self.body))
    }

    /// The payloads of the `data:` lines of a server-sent event stream.
    fn events(&self) -> Vec<String> {
        assert_eq!(
            self.header("content-type"),
            Some("text/event-stream"),
            "{self:?}"
        );
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix("data: ").or(line.strip_prefix("data:")))
            .map(str::to_owned)
            .collect()
    }

    /// Asserts an OpenAI-style error with this status and returns its `error` object.
    fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let body = self.json();
        let error = &body["error"];
        assert!(error["message"].is_string(), "{body}");
        assert!(error["type"].is_string(), "{body}");
        assert!(error.get("param").is_some(), "{body}");
        assert!(error.get("code").is_some(), "{body}");
        error.clone()
    }
}

impl Client {
    async fn get(self, path: &str) -> Response {
        self.send("GET", path, &[], None).await
    }

    async fn post(self, path: &str, body: &Value) -> Response {
        self.send("POST", path, &[], Some(body.to_string().as_bytes()))
            .await
    }

    async fn post_with(self, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
        self.send("POST", path, headers, Some(body.to_string().as_bytes()))
            .await
    }

    async fn send(
        self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
            self.addr
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        if let Some(body) = body {
            stream.write_all(body).await.unwrap();
        }
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The value of a metric sample line `series` (name and labels exactly as rendered).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{series}` in\n{metrics}"))
        .parse()
        .unwrap()
}

/// Polls `condition` until it holds, for at most five seconds.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn completion(prompt: &str) -> Value {
    json!({"model": "echo-1", "prompt": prompt})
}

fn chat(content: &str) -> Value {
    json!({"model": "echo-1", "messages": [{"role": "user", "content": content}]})
}

fn slow(delay_ms: u64) -> (Arc<dyn Backend>, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let backend = Arc::new(Slow {
        delay: Duration::from_millis(delay_ms),
        started: Arc::clone(&started),
    });
    (backend, started)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_has_openai_shape() {
    let server = Server::single(echo("echo-1")).await;
    let client = server.client();

    let response = client
        .post("/v1/completions", &completion("one two three"))
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("x-sluice-variant"), Some("main"));
    let body = response.json();
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"), "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "echo-1");
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "text": "three two one", "finish_reason": "stop", "logprobs": null}])
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );

    // max_tokens cuts with "length"; stop as a string or an array; prompt as an array of one;
    // fields the SDK sends are accepted and ignored.
    let cases = [
        (
            json!({"model": "echo-1", "prompt": "a b c d", "max_tokens": 2}),
            "d c",
            "length",
        ),
        (
            json!({"model": "echo-1", "prompt": "a b c d", "stop": "b"}),
            "d c",
            "stop",
        ),
        (
            json!({"model": "echo-1", "prompt": ["a b c d"], "stop": ["x", "c"]}),
            "d",
            "stop",
        ),
        (
            json!({
                "model": "echo-1", "prompt": "a b", "temperature": 0.7, "top_p": 0.9, "seed": 42,
                "user": "u-1", "n": 1, "logprobs": null, "echo": false, "presence_penalty": 0,
                "frequency_penalty": 0, "logit_bias": {}, "stream": false, "stop": null,
            }),
            "b a",
            "stop",
        ),
    ];
    for (request, text, finish) in cases {
        let body = client.post("/v1/completions", &request).await.json();
        assert_eq!(body["choices"][0]["text"], text, "{request}");
        assert_eq!(body["choices"][0]["finish_reason"], finish, "{request}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_has_openai_shape() {
    let server = Server::single(echo("echo-1")).await;
    let client = server.client();

    let request = json!({
        "model": "echo-1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
        "max_completion_tokens": 3,
        "stream_options": null,
    });
    let response = client.post("/v1/chat/completions", &request).await;
    assert_eq!(response.status, 200, "{response:?}");
    let body = response.json();
    assert!(
        body["id"].as_str().unwrap().starts_with("chatcmpl-"),
        "{body}"
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "echo-1");
    assert_eq!(
        body["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": "there hello brief"},
            "finish_reason": "length",
            "logprobs": null,
        }])
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7})
    );

    // Without a limit, chat may use the whole context.
    let body = client
        .post("/v1/chat/completions", &chat("a b c"))
        .await
        .json();
    assert_eq!(body["choices"][0]["message"]["content"], "c b a");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_streams_as_server_sent_events() {
    let server = Server::single(echo("echo-1")).await;
    let mut request = completion("one two three");
    request["stream"] = json!(true);
    let response = server.client().post("/v1/completions", &request).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("x-sluice-variant"), Some("main"));
    let events = response.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("cmpl-"));
    for chunk in &chunks {
        assert_eq!(chunk["object"], "text_completion", "{chunk}");
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["model"], "echo-1");
        assert!(chunk.get("usage").is_none(), "{chunk}");
    }
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "three two one");
    // One chunk per piece, then one with the finish reason.
    assert_eq!(chunks.len(), 4);
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .collect();
    assert_eq!(
        finishes,
        [&Value::Null, &Value::Null, &Value::Null, &json!("stop")]
    );

    // include_usage adds a usage chunk with no choices before [DONE].
    request["stream_options"] = json!({"include_usage": true});
    let events = server
        .client()
        .post("/v1/completions", &request)
        .await
        .events();
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["usage"], Value::Null);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_deltas() {
    let server = Server::single(echo("echo-1")).await;
    let mut request = chat("one two three");
    request["stream"] = json!(true);
    let response = server.client().post("/v1/chat/completions", &request).await;
    assert_eq!(response.status, 200, "{response:?}");
    let events = response.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert!(chunk["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(chunk["choices"][0]["index"], 0);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "three two one");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_gives_that_many_choices_each_with_its_own_seed() {
    let server = Server::single(Arc::new(Seeded)).await;
    let client = server.client();

    let body = client
        .post(
            "/v1/completions",
            &json!({"model": "seeded", "prompt": "x", "n": 3, "seed": 5}),
        )
        .await
        .json();
    let choices: Vec<(u64, &str)> = body["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["index"].as_u64().unwrap(), c["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        choices,
        [
            (0, "seed Some(5)"),
            (1, "seed Some(6)"),
            (2, "seed Some(7)")
        ]
    );
    // The prompt counts once, the completions add up.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8})
    );

    // A chat stream: each choice opens with the role, then its content, then its finish.
    let events = client
        .post(
            "/v1/chat/completions",
            &json!({
                "model": "seeded", "messages": [{"role": "user", "content": "x"}], "n": 2,
                "seed": 9, "stream": true, "stream_options": {"include_usage": true},
            }),
        )
        .await
        .events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (usage, chunks) = chunks.split_last().unwrap();
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6})
    );
    let shown: Vec<(u64, Value, Value)> = chunks
        .iter()
        .map(|c| {
            let choice = &c["choices"][0];
            (
                choice["index"].as_u64().unwrap(),
                choice["delta"].clone(),
                choice["finish_reason"].clone(),
            )
        })
        .collect();
    let role = json!({"role": "assistant", "content": ""});
    let content = |text: &str| json!({"content": text});
    assert_eq!(
        shown,
        [
            (0, role.clone(), Value::Null),
            (0, content("seed"), Value::Null),
            (0, content(" Some(9)"), Value::Null),
            (0, json!({}), json!("stop")),
            (1, role, Value::Null),
            (1, content("seed"), Value::Null),
            (1, content(" Some(10)"), Value::Null),
            (1, json!({}), json!("stop")),
        ]
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_array_gets_n_choices_per_prompt_in_order() {
    let server = Server::single(echo("echo-1")).await;
    let body = server
        .client()
        .post(
            "/v1/completions",
            &json!({"model": "echo-1", "prompt": ["a b", "c d e"], "n": 2}),
        )
        .await
        .json();
    let choices: Vec<(u64, &str)> = body["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["index"].as_u64().unwrap(), c["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        choices,
        [(0, "b a"), (1, "b a"), (2, "e d c"), (3, "e d c")]
    );
    // Each prompt counts once (2 + 3 tokens), every choice's completion counts.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15})
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_echo_and_token_id_prompts() {
    let server = Server::single(Arc::new(Scored)).await;
    let client = server.client();

    // Completions: the legacy shape, the prompt echoed first.
    let body = client
        .post(
            "/v1/completions",
            &json!({"model": "scored", "prompt": "x yy", "max_tokens": 2, "logprobs": 2, "echo": true}),
        )
        .await
        .json();
    let choice = &body["choices"][0];
    assert_eq!(choice["text"], "x yyt0t1");
    assert_eq!(
        choice["logprobs"],
        json!({
            "tokens": ["x", "yy", "t0", "t1"],
            "token_logprobs": [null, -1.0, -0.5, -1.5],
            "top_logprobs": [null, {}, {"t0": -0.5, "t1": -1.5}, {"t0": -0.5, "t1": -1.5}],
            "text_offset": [0, 1, 3, 5],
        })
    );
    // The prompt's log-probabilities alone: echo with max_tokens 0, prompts as token ids.
    let body = client
        .post(
            "/v1/completions",
            &json!({"model": "scored", "prompt": [[0, 1], [2]], "max_tokens": 0, "logprobs": 1, "echo": true}),
        )
        .await
        .json();
    let texts: Vec<&str> = body["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["w0 w1", "w2"]);
    assert_eq!(
        body["choices"][0]["logprobs"]["token_logprobs"],
        json!([null, -1.0])
    );
    // Without logprobs, none.
    let body = client
        .post(
            "/v1/completions",
            &json!({"model": "scored", "prompt": "x"}),
        )
        .await
        .json();
    assert_eq!(body["choices"][0]["logprobs"], Value::Null);

    // Chat: one object per completion token.
    let chat = json!({
        "model": "scored", "messages": [{"role": "user", "content": "q"}], "max_tokens": 1,
        "logprobs": true, "top_logprobs": 1,
    });
    let body = client.post("/v1/chat/completions", &chat).await.json();
    assert_eq!(
        body["choices"][0]["logprobs"],
        json!({"content": [{
            "token": "t0", "logprob": -0.5, "bytes": [116, 48],
            "top_logprobs": [{"token": "t0", "logprob": -0.5, "bytes": [116, 48]}],
        }], "refusal": null})
    );
    // Streamed, a choice's log-probabilities come in its last chunk.
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let events = client
        .post("/v1/chat/completions", &streamed)
        .await
        .events();
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(
        last["choices"][0]["logprobs"]["content"][0]["token"], "t0",
        "{last}"
    );
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["choices"][0]["logprobs"].is_null())
    );

    // Token ids outside the vocabulary, and a backend that takes none.
    let error = client
        .post(
            "/v1/completions",
            &json!({"model": "scored", "prompt": [3, 10]}),
        )
        .await
        .error(400);
    assert_eq!(error["param"], "prompt");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("token id 10 is outside the vocabulary"),
        "{error}"
    );
    server.stop().await.unwrap();

    let server = Server::single(echo("echo-1")).await;
    let error = server
        .client()
        .post(
            "/v1/completions",
            &json!({"model": "echo-1", "prompt": [1, 2]}),
        )
        .await
        .error(400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("takes text prompts, not token ids"),
        "{error}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_metrics() {
    let variants = Variants::new(
        "main",
        echo("echo-1"),
        vec![Variant {
            name: "b".to_owned(),
            weight: 0.5,
            backend: echo("echo-2"),
        }],
    )
    .unwrap();
    let server = Server::start(ServeConfig::default(), variants).await;
    let client = server.client();

    let models = client.get("/v1/models").await;
    assert_eq!(models.status, 200);
    let models = models.json();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["echo-1", "echo-2"]);
    assert_eq!(models["data"][1]["object"], "model");
    assert_eq!(client.get("/v1/models/echo-2").await.json()["id"], "echo-2");
    assert_eq!(
        client.get("/v1/models/nope").await.error(404)["code"],
        "model_not_found"
    );

    let health = client.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok"}));

    // Two completions and a chat on main, one completion on b, one bad request on b.
    let main = [("x-sluice-variant", "main")];
    let b = [("x-sluice-variant", "b")];
    client
        .post_with("/v1/completions", &main, &completion("a b"))
        .await;
    client
        .post_with("/v1/completions", &main, &completion("a b c"))
        .await;
    client
        .post_with("/v1/chat/completions", &main, &chat("a"))
        .await;
    client
        .post_with("/v1/completions", &b, &completion("a b c d"))
        .await;
    let bad = client
        .post_with("/v1/completions", &b, &json!({"model": "echo-1"}))
        .await;
    bad.error(400);
    assert_eq!(bad.header("x-sluice-variant"), Some("b"));

    let response = client.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = response.body;
    let value = |series: &str| sample(&metrics, series);
    assert_eq!(
        value(r#"sluice_requests_total{variant="main",endpoint="completions"}"#),
        2.0
    );
    assert_eq!(
        value(r#"sluice_requests_total{variant="main",endpoint="chat_completions"}"#),
        1.0
    );
    assert_eq!(
        value(r#"sluice_requests_total{variant="b",endpoint="completions"}"#),
        2.0
    );
    assert_eq!(
        value(r#"sluice_request_errors_total{variant="b",endpoint="completions",status="400"}"#),
        1.0
    );
    assert_eq!(
        value(r#"sluice_generated_tokens_total{variant="main"}"#),
        6.0
    );
    assert_eq!(value(r#"sluice_generated_tokens_total{variant="b"}"#), 4.0);
    assert_eq!(value(r#"sluice_prompt_tokens_total{variant="main"}"#), 6.0);
    assert_eq!(
        value(r#"sluice_request_duration_seconds_count{variant="main"}"#),
        3.0
    );
    assert_eq!(
        value(r#"sluice_request_duration_seconds_bucket{variant="b",le="+Inf"}"#),
        2.0
    );
    assert_eq!(value(r#"sluice_requests_in_flight{variant="main"}"#), 0.0);
    assert!(metrics.contains("# TYPE sluice_request_duration_seconds histogram"));
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.contains("variant=\""), "unlabelled series: {line}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_routing_follows_weights_and_the_header() {
    let variants = || {
        Variants::new(
            "main",
            echo("echo-1"),
            vec![Variant {
                name: "b".to_owned(),
                weight: 0.2,
                backend: echo("echo-2"),
            }],
        )
        .unwrap()
    };
    let config = ServeConfig {
        seed: 11,
        ..ServeConfig::default()
    };
    let routes = async |server: &Server| {
        let mut routes = Vec::new();
        for _ in 0..200 {
            let response = server
                .client()
                .post("/v1/completions", &completion("x"))
                .await;
            assert_eq!(response.status, 200, "{response:?}");
            let variant = response.header("x-sluice-variant").unwrap().to_owned();
            let model = response.json()["model"].as_str().unwrap().to_owned();
            let expected = if variant == "b" { "echo-2" } else { "echo-1" };
            assert_eq!(model, expected, "the body names the variant's model");
            routes.push(variant);
        }
        routes
    };
    let server = Server::start(config.clone(), variants()).await;
    let first = routes(&server).await;
    let to_b = first.iter().filter(|v| *v == "b").count();
    assert!((25..=55).contains(&to_b), "{to_b} of 200 went to b");
    let metrics = server.client().get("/metrics").await.body;
    assert_eq!(
        sample(
            &metrics,
            r#"sluice_requests_total{variant="b",endpoint="completions"}"#
        ),
        to_b as f64
    );

    // The header forces a variant, whatever the weights.
    for _ in 0..10 {
        let response = server
            .client()
            .post_with(
                "/v1/completions",
                &[("x-sluice-variant", "b")],
                &completion("x"),
            )
            .await;
        assert_eq!(response.header("x-sluice-variant"), Some("b"));
        assert_eq!(response.json()["model"], "echo-2");
    }
    let unknown = server
        .client()
        .post_with(
            "/v1/completions",
            &[("x-sluice-variant", "c")],
            &completion("x"),
        )
        .await;
    assert_eq!(unknown.error(400)["code"], "unknown_variant");
    // A variant's name is accepted as the model, and so is another variant's model id.
    let by_name = json!({"model": "b", "prompt": "x"});
    assert_eq!(
        server
            .client()
            .post("/v1/completions", &by_name)
            .await
            .status,
        200
    );
    server.stop().await.unwrap();

    // The same seed routes the same way.
    let server = Server::start(config, variants()).await;
    assert_eq!(routes(&server).await, first);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let config = ServeConfig {
        body_limit: 4096,
        ..ServeConfig::default()
    };
    let server = Server::with_config(config, echo("echo-1")).await;
    let client = server.client();

    let malformed = client
        .send(
            "POST",
            "/v1/completions",
            &[],
            Some(b"{\"model\": \"echo-1\", "),
        )
        .await;
    let error = malformed.error(400);
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"].as_str().unwrap().contains("json"),
        "{error}"
    );
    assert_eq!(malformed.header("x-sluice-variant"), Some("main"));

    // (path, body, status, param, code)
    let cases = [
        (
            "/v1/completions",
            json!({"model": "echo-1"}),
            400,
            json!("prompt"),
            Value::Null,
        ),
        (
            "/v1/completions",
            json!({"prompt": "x"}),
            400,
            json!("model"),
            Value::Null,
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo-1"}),
            400,
            json!("messages"),
            Value::Null,
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-4", "prompt": "x"}),
            404,
            json!("model"),
            json!("model_not_found"),
        ),
        (
            "/v1/completions",
            json!({"model": "echo-1", "prompt": "x", "max_tokens": 0}),
            400,
            json!("max_tokens"),
            Value::Null,
        ),
        (
            "/v1/completions",
            json!({"model": "echo-1", "prompt": "x", "max_tokens": 65}),
            400,
            json!("max_tokens"),
            Value::Null,
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1000}),
            400,
            json!("max_tokens"),
            Value::Null,
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo-1", "messages": []}),
            400,
            json!("messages"),
            Value::Null,
        ),
        (
            "/v1/completions",
            json!({"model": "echo-1", "prompt": "x", "n": 17}),
            400,
            json!("n"),
            Value::Null,
        ),
        (
            "/v1/chat/completions",
            json!({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            400,
            json!("n"),
            Value::Null,
        ),
        (
            "/v1/completions",
            json!({"model": "echo-1", "prompt": "x", "max_tokens": "many"}),
            400,
            json!("max_tokens"),
            Value::Null,
        ),
        (
            "/v1/completions",
            json!({"model": "echo-1", "prompt": [[1, 2]]}),
            400,
            json!("prompt"),
            Value::Null,
        ),
    ];
    for (path, body, status, param, code) in cases {
        let response = client.post(path, &body).await;
        let error = response.error(status);
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body}: {error}");
        assert_eq!(error["code"], code, "{body}: {error}");
    }

    let oversized = json!({"model": "echo-1", "prompt": "x ".repeat(4096)});
    let response = client.post("/v1/completions", &oversized).await;
    assert_eq!(response.error(413)["code"], "request_too_large");

    assert_eq!(
        client.get("/v1/nothing").await.error(404)["code"],
        "unknown_url"
    );
    assert_eq!(
        client.get("/v1/completions").await.error(405)["code"],
        "method_not_allowed"
    );
    // Still healthy after all that.
    assert_eq!(
        client
            .post("/v1/completions", &completion("ok"))
            .await
            .status,
        200
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_body_limit_is_one_mebibyte() {
    let server = Server::single(echo("echo-1")).await;
    let just_under =
        json!({"model": "echo-1", "prompt": "x".repeat((1 << 20) - 100), "max_tokens": 1});
    let response = server.client().post("/v1/completions", &just_under).await;
    assert_eq!(response.status, 200, "{response:?}");
    let over = json!({"model": "echo-1", "prompt": "x".repeat(1 << 20)});
    server
        .client()
        .post("/v1/completions", &over)
        .await
        .error(413);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_and_panics_are_500s() {
    let failing = Server::single(Arc::new(Failing)).await;
    let request = json!({"model": "failing", "prompt": "x"});
    let error = failing
        .client()
        .post("/v1/completions", &request)
        .await
        .error(500);
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["message"], "the model is on fire");
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    failing
        .client()
        .post("/v1/completions", &streamed)
        .await
        .error(500);
    let metrics = failing.client().get("/metrics").await.body;
    assert_eq!(
        sample(
            &metrics,
            r#"sluice_request_errors_total{variant="main",endpoint="completions",status="500"}"#
        ),
        2.0
    );
    failing.stop().await.unwrap();

    let panicking = Server::single(Arc::new(Panicking)).await;
    let chat = json!({"model": "panicking", "messages": [{"role": "user", "content": "x"}]});
    for _ in 0..3 {
        let error = panicking
            .client()
            .post("/v1/chat/completions", &chat)
            .await
            .error(500);
        assert!(
            error["message"].as_str().unwrap().contains("boom"),
            "{error}"
        );
    }
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    panicking
        .client()
        .post("/v1/chat/completions", &streamed)
        .await
        .error(500);
    // The server still answers, and the panics released their generation slots.
    assert_eq!(panicking.client().get("/healthz").await.status, 200);
    let metrics = panicking.client().get("/metrics").await.body;
    assert_eq!(
        sample(&metrics, r#"sluice_requests_in_flight{variant="main"}"#),
        0.0
    );
    panicking.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_bound_is_503() {
    let (backend, started) = slow(1500);
    let config = ServeConfig {
        max_concurrent: 1,
        max_queue: 1,
        ..ServeConfig::default()
    };
    let server = Server::with_config(config, backend).await;
    let client = server.client();
    let request = json!({"model": "slow", "prompt": "x"});

    let running = tokio::spawn({
        let request = request.clone();
        async move { client.post("/v1/completions", &request).await }
    });
    eventually("the first generation", async || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let queued = tokio::spawn({
        let request = request.clone();
        async move { client.post("/v1/completions", &request).await }
    });
    eventually("a queued request", async || {
        let metrics = client.get("/metrics").await.body;
        sample(&metrics, r#"sluice_requests_queued{variant="main"}"#) == 1.0
    })
    .await;

    let rejected = client.post("/v1/completions", &request).await;
    let error = rejected.error(503);
    assert_eq!(error["code"], "overloaded");
    assert_eq!(rejected.header("retry-after"), Some("1"));
    assert_eq!(rejected.header("x-sluice-variant"), Some("main"));

    let running = running.await.unwrap();
    let queued = queued.await.unwrap();
    assert_eq!(running.status, 200, "{running:?}");
    assert_eq!(queued.status, 200, "{queued:?}");
    assert_eq!(queued.json()["choices"][0]["text"], "done");
    // Room again.
    assert_eq!(client.post("/v1/completions", &request).await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let (backend, started) = slow(800);
    let server = Server::single(backend).await;
    let client = server.client();
    let addr = server.addr;

    let plain = tokio::spawn(async move {
        client
            .post("/v1/completions", &json!({"model": "slow", "prompt": "x"}))
            .await
    });
    let streamed = tokio::spawn(async move {
        client
            .post(
                "/v1/completions",
                &json!({"model": "slow", "prompt": "x", "stream": true}),
            )
            .await
    });
    // One generation running, the other waiting for the slot: both accepted.
    eventually("both requests", async || {
        let metrics = client.get("/metrics").await.body;
        started.load(Ordering::SeqCst) == 1
            && sample(&metrics, r#"sluice_requests_queued{variant="main"}"#) == 1.0
    })
    .await;
    let stopped_at = Instant::now();
    server.stop().await.unwrap();
    assert!(
        stopped_at.elapsed() >= Duration::from_millis(300),
        "serve returned before the slow requests finished"
    );

    let plain = plain.await.unwrap();
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(plain.json()["choices"][0]["text"], "done");
    let streamed = streamed.await.unwrap();
    assert_eq!(streamed.status, 200, "{streamed:?}");
    assert_eq!(streamed.events().last().map(String::as_str), Some("[DONE]"));
    // No longer accepting.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifier_answers_v1_classify_and_nothing_else() {
    let classifier: Arc<dyn Backend> = Arc::new(Lengths {
        labels: vec!["long".to_owned(), "short".to_owned()],
    });
    let server = Server::single(classifier).await;
    let client = server.client();

    let response = client
        .post(
            "/v1/classify",
            &json!({"model": "lengths", "input": ["one two three", "hi"]}),
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("x-sluice-variant"), Some("main"));
    let body = response.json();
    assert!(body["id"].as_str().unwrap().starts_with("clf-"), "{body}");
    assert_eq!(body["object"], "classification");
    assert_eq!(body["model"], "lengths");
    assert_eq!(
        body["data"],
        json!([
            {"index": 0, "label": "long", "score": 0.75, "scores": {"long": 0.75, "short": 0.25}},
            {"index": 1, "label": "short", "score": 0.75, "scores": {"long": 0.25, "short": 0.75}},
        ])
    );
    // One text as a plain string.
    let body = client
        .post(
            "/v1/classify",
            &json!({"model": "main", "input": "a b c d"}),
        )
        .await
        .json();
    assert_eq!(body["data"][0]["label"], "long", "{body}");

    let error = client
        .post(
            "/v1/completions",
            &json!({"model": "lengths", "prompt": "x"}),
        )
        .await
        .error(400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("is a classifier"),
        "{error}"
    );
    for (request, param) in [
        (json!({"model": "lengths"}), "input"),
        (json!({"model": "lengths", "input": 3}), "input"),
        (json!({"model": "lengths", "input": []}), "input"),
        (json!({"input": "x"}), "model"),
    ] {
        let error = client.post("/v1/classify", &request).await.error(400);
        assert_eq!(error["param"], param, "{request}: {error}");
    }
    let error = client
        .post("/v1/classify", &json!({"model": "nope", "input": "x"}))
        .await
        .error(404);
    assert_eq!(error["code"], "model_not_found");
    let error = client
        .post("/v1/classify", &json!({"model": "lengths", "input": [""]}))
        .await
        .error(500);
    assert!(
        error["message"].as_str().unwrap().contains("empty text"),
        "{error}"
    );
    let metrics = client.get("/metrics").await.body;
    assert_eq!(
        sample(
            &metrics,
            "sluice_requests_total{variant=\"main\",endpoint=\"classify\"}"
        ),
        8.0,
        "{metrics}"
    );
    server.stop().await.unwrap();

    // A text generator does not classify.
    let server = Server::single(echo("echo-1")).await;
    let error = server
        .client()
        .post("/v1/classify", &json!({"model": "echo-1", "input": "x"}))
        .await
        .error(400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("does not classify"),
        "{error}"
    );
    server.stop().await.unwrap();
}
