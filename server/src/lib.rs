//! `trtllm serve`: an OpenAI-compatible HTTP server over the continuous-batching engine
//! (`trtllm_core::serve::{Scheduler, Engine}`).
//!
//! Endpoints: `POST /v1/completions`, `POST /v1/chat/completions` (SSE streaming with
//! `stream: true`, a usage chunk with `stream_options.include_usage`), `GET /v1/models`,
//! `POST /v1/embeddings` (`embeddings.rs`), `POST /tokenize`, `POST /detokenize` (vLLM shapes,
//! `tokenize.rs`), `GET /health`, `GET /metrics` (Prometheus text). Errors are OpenAI-style JSON (`error.rs`).
//! The engine runs on its own thread; each request's tokens come back over a tokio channel, and
//! a request whose client has gone (handler or stream dropped) is cancelled, freeing its KV
//! blocks. SIGINT / SIGTERM stop accepting requests and drain the ones in flight; at the drain
//! deadline what is left ends with an error (an error event and `[DONE]` on a stream) and
//! [`serve`] returns [`ServeError::DrainTimedOut`]; a second signal exits at once.
//!
//! Against hostile clients: connection limits and timeouts (`http.rs`), per-request header,
//! Host, content-type and body checks (`guard.rs`), tokenization off the HTTP workers behind a
//! byte cap (`offload.rs`).
//!
//! Dependencies, and why: `axum` (HTTP/1 routing, SSE responses) on `tokio` (the runtime axum
//! needs; also the per-request channels and signal handling); `hyper` + `hyper-util` (the
//! HTTP/1 connection with its header-read timeout, graceful shutdown); `http-body-util`
//! (reading a body frame by frame under a limit); `futures-util` (building the SSE body stream);
//! `serde_path_to_error` (a 400 for a wrongly typed field names that field). The engine itself
//! stays free of async code and of these crates: `trtllm-core` only sees the `EventSink` trait.

mod chat;
mod completions;
mod embeddings;
pub mod error;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod gen;
pub mod guard;
mod guided;
pub mod http;
mod offload;
mod protocol;
mod setup;
pub mod sizing;
mod sse;
mod startup;
mod tokenize;
mod tools;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use trtllm_core::serve::EngineHandle;
use trtllm_core::text::{ChatTemplate, Tokenizer};

pub use setup::{build_engine, ServeConfig, Served};

use error::{ApiError, ApiResult};

/// Most choices one request may ask for (prompts x n).
pub const MAX_CHOICES: usize = 256;

/// What the handlers share.
pub struct AppState {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    pub model_name: String,
    pub api_key: Option<String>,
    text: offload::TextWork,
    cut: tokio::sync::watch::Sender<bool>,
    draining: AtomicBool,
    ids: AtomicU64,
    created: u64,
    /// The structured-output grammar compiler, made on the first constrained request.
    grammars: std::sync::OnceLock<Result<Arc<trtllm_core::text::GrammarCompiler>, String>>,
}

impl AppState {
    pub fn new(served: &Served, api_key: Option<String>) -> Self {
        AppState {
            engine: served.engine.handle(),
            tokenizer: served.tokenizer.clone(),
            chat_template: served.chat_template.clone(),
            model_name: served.model_name.clone(),
            api_key,
            text: offload::TextWork::new(
                served.engine.handle().limits().max_total_tokens,
                served.tokenizer.max_token_bytes(),
            ),
            cut: tokio::sync::watch::Sender::new(false),
            draining: AtomicBool::new(false),
            ids: AtomicU64::new(1),
            created: unix_now(),
            grammars: std::sync::OnceLock::new(),
        }
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Relaxed)
    }
    /// A request naming another model is a 404; no name means this one.
    fn check_model(&self, model: Option<&str>) -> ApiResult<()> {
        match model {
            Some(m) if !m.is_empty() && m != self.model_name => Err(ApiError::model_not_found(m)),
            _ => Ok(()),
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.map(str::trim) != Some(key.as_str()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    if st.is_draining() {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    // Every sample carries the served model's name (vLLM's `model_name` label).
    let text = trtllm_core::serve::with_label(
        &st.engine.metrics().render_prometheus(),
        "model_name",
        &st.model_name,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    let limits = st.engine.limits();
    Json(json!({"object": "list", "data": [{
        "id": st.model_name, "object": "model", "created": st.created, "owned_by": "trtllm",
        "max_model_len": limits.max_total_tokens,
    }]}))
    .into_response()
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(uri.path()).into_response()
}

async fn method_not_allowed() -> Response {
    let mut e = ApiError::invalid("", "Method not allowed for this endpoint.");
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.into_response()
}

/// The application: routes, auth on `/v1/*`, JSON 404 / 405, the request guard (`guard.rs`).
pub fn router(state: Arc<AppState>, guard: guard::GuardConfig) -> Router {
    let v1 = Router::new()
        .route("/v1/completions", post(completions::handler))
        .route("/v1/chat/completions", post(chat::handler))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings::handler))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // The guard enforces the body limit (as a JSON 413); axum's own 2 MB default is off.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(Arc::new(guard), guard::guard))
}

/// `--chat-template FILE` in place of the tokenizer's template; `bos_token` / `eos_token` from
/// the model's template, else from the tokenizer's BOS / first EOS id.
fn override_template(path: &std::path::Path, served: &Served) -> trtllm_core::Result<ChatTemplate> {
    let mut t = ChatTemplate::from_file(path, served.chat_template.as_ref())?;
    let tok = &served.tokenizer;
    let text = |id: Option<&u32>| id.and_then(|&i| tok.decode(&[i], false).ok()).unwrap_or_default();
    if served.chat_template.is_none() {
        t.bos_token = text(tok.bos_token_id.as_ref());
        t.eos_token = text(tok.eos_token_ids.first());
    }
    Ok(t)
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Engine(#[from] trtllm_core::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    /// Requests were still running at the drain deadline; they were ended with an error.
    #[error("the drain timeout ({0:?}) passed with requests still running; they were ended with an error")]
    DrainTimedOut(Duration),
}

/// Load the model, start the engine, serve until SIGINT / SIGTERM, then drain and stop.
pub fn serve(cfg: ServeConfig) -> Result<(), ServeError> {
    if cfg.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(ServeError::Config(
            "--api-key is empty: give a key, or leave the flag out to serve without one".into(),
        ));
    }
    if let Some(path) = &cfg.chat_template {
        // Read it before the (long) load, so a wrong path fails at once.
        ChatTemplate::from_file(path, None)?;
    }
    if setup::run_worker(&cfg)? {
        return Ok(());
    }
    let mut served = build_engine(&cfg)?;
    if let Some(path) = &cfg.chat_template {
        served.chat_template = Some(override_template(path, &served)?);
    }
    startup::log(&cfg, &served);
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ServeError::Io { what, source }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.http_workers.max(1))
        .enable_all()
        .build()
        .map_err(io("starting the tokio runtime"))?;
    let state = Arc::new(AppState::new(&served, cfg.api_key.clone()));
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let outcome = rt.block_on(async {
        let mut signals = Signals::new().map_err(io("installing signal handlers"))?;
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(io(&format!("binding {addr}")))?;
        let local: SocketAddr = listener.local_addr().map_err(io("local address"))?;
        let guard = guard::GuardConfig {
            body_timeout: cfg.body_timeout,
            max_body_bytes: cfg.max_body_bytes,
            allowed_hosts: state.api_key.is_none().then(|| guard::AllowedHosts::new(&cfg.host)),
        };
        let limits = http::ConnLimits {
            header_timeout: cfg.header_timeout,
            send_timeout: cfg.send_timeout,
            max_connections: cfg.max_connections,
        };
        if state.api_key.is_none() {
            tracing::warn!(
                "no API key set (--api-key / TRTLLM_API_KEY): any client that reaches {local} can use \
                 the server; only requests addressed to localhost or {} with JSON bodies are answered",
                cfg.host
            );
        }
        println!("trtllm serve: model `{}` listening on http://{local}", state.model_name);
        let graceful =
            http::serve_until(listener, router(state.clone(), guard), limits, signals.next()).await;
        state.draining.store(true, Relaxed);
        println!("trtllm serve: shutting down; draining requests in flight");
        tokio::spawn(async move {
            let code = signals.next_code().await;
            eprintln!("trtllm serve: second signal; exiting now");
            std::process::exit(code);
        });
        let drain = cfg.drain_timeout;
        let done = graceful.shutdown();
        tokio::pin!(done);
        if tokio::time::timeout(drain, &mut done).await.is_ok() {
            return Ok(());
        }
        eprintln!("trtllm serve: drain timeout ({drain:?}) reached; ending what is left with an error");
        state.cut.send_replace(true);
        // The cut requests send their error (an event and [DONE] on streams); let them go out.
        let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
        Err(ServeError::DrainTimedOut(drain))
    });
    drop(state);
    rt.shutdown_timeout(Duration::from_secs(1));
    served.engine.shutdown();
    println!("trtllm serve: stopped");
    outcome
}

/// SIGINT and SIGTERM, installed once so that a second one is never missed.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal, as the exit code a process killed by it has (128 + its number).
    async fn next_code(&mut self) -> i32 {
        #[cfg(unix)]
        {
            tokio::select! { _ = self.int.recv() => 130, _ = self.term.recv() => 143 }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            130
        }
    }

    async fn next(&mut self) {
        self.next_code().await;
    }
}
