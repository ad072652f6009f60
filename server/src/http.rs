//! The connection layer: an accept loop over hyper's HTTP/1 server with the limits a public
//! server needs against slow or idle clients.
//!
//! - `header_timeout`: a connection must deliver a complete request head within this of
//!   opening, or of finishing its previous response (hyper's `header_read_timeout`). It closes
//!   slow-header ("slowloris") connections and idle ones, fresh or kept alive.
//! - `send_timeout`: a response write that makes no progress this long (the client stopped
//!   reading) closes the connection, which cancels its request ([`StallGuard`]).
//! - `max_connections`: connections open at once. One more is answered at once with a 503
//!   JSON error, `Retry-After: 1` and closed, without going through hyper.
//!
//! The body timeout and limit, and header-size, Host and content-type checks, are per request:
//! `guard.rs`. Graceful shutdown is hyper-util's: in-flight requests finish, idle connections
//! close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// The connection-level limits (`trtllm serve` flags; docs/serving.md).
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
}

/// Headers one request may carry before hyper refuses it with a bare 431 (the JSON 431 for
/// more than [`crate::guard::MAX_HEADERS`] comes from the guard, below this).
const HYPER_MAX_HEADERS: usize = 256;

/// Accept connections on `listener` and serve `app` on each until `stop` resolves; returns the
/// graceful-shutdown handle of the connections still open.
pub async fn serve_until(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnLimits,
    stop: impl std::future::Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(HYPER_MAX_HEADERS);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: wait for some to close
                    // instead of spinning on accept.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open connections");
            tokio::spawn(refuse(stream));
            continue;
        };
        let io = TokioIo::new(StallGuard::new(stream, limits.send_timeout));
        let svc = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(builder.serve_connection(io, svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection closed: {e}");
            }
            drop(slot);
        });
    }
    graceful
}

/// The whole response of a refused connection: a 503 OpenAI-style error.
fn refusal() -> Vec<u8> {
    let body = crate::error::ApiError::unavailable(
        "too many open connections; retry later (the server's --max-connections)",
    )
    .body()
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answer a connection over the cap and close it. The request is read (briefly, bounded) after
/// the answer so that closing does not reset the connection before the client reads the 503.
async fn refuse(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(&refusal()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// A socket whose writes fail with `TimedOut` once one has been pending for `limit`: a client
/// that stops reading its response cannot hold the connection (and its request) forever.
pub struct StallGuard<T> {
    io: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(io: T, limit: Duration) -> Self {
        StallGuard { io, limit, stalled: None }
    }

    /// `Pending` (the write waits) unless the write has waited `limit`: then `TimedOut`.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.limit;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_write_times_out_and_a_moving_one_does_not() {
        // A 4 KiB pipe that nobody reads: writes fill it, then wait forever.
        let (a, mut b) = tokio::io::duplex(4096);
        let mut w = StallGuard::new(a, Duration::from_millis(200));
        let t = std::time::Instant::now();
        let e = w.write_all(&vec![0u8; 1 << 20]).await.expect_err("a stalled write must fail");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(200) && t.elapsed() < Duration::from_secs(5));

        // The same amount goes through when the peer reads, however long the whole takes.
        let (a, mut b2) = tokio::io::duplex(4096);
        let mut w = StallGuard::new(a, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 20];
            b2.read_exact(&mut buf).await.map(|_| buf.len())
        });
        w.write_all(&vec![1u8; 1 << 20]).await.expect("a moving write must not time out");
        assert_eq!(reader.await.expect("join").expect("read"), 1 << 20);
        let mut x = [0u8; 1];
        let _ = b.read(&mut x).await;
    }

    #[test]
    fn the_refusal_is_a_complete_503_with_retry_after_and_a_json_error() {
        let r = String::from_utf8(refusal()).expect("utf-8");
        let (head, body) = r.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("retry-after: 1") && head.contains("connection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(v["error"]["type"], "server_error");
    }
}
