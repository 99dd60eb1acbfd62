//! The listener: accepts connections, holds each client address to
//! `[serve] max_connections_per_client`, and serves each connection with
//! hyper under the header-read timeout (`[serve] header_timeout_ms`), so a
//! client that opens connections and sends a request slowly, or never,
//! holds nothing for long. The body-read timeout is the handlers' (see
//! `routes::read_body`).

use super::Shared;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How the listener treats connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub per_client: usize,
}

/// Open connections per client address.
#[derive(Default)]
struct Open(Mutex<HashMap<IpAddr, usize>>);

/// One open connection of a client; given back when dropped.
struct Slot {
    open: Arc<Open>,
    ip: IpAddr,
}

impl Open {
    /// A slot for one more connection of `ip`, unless it holds `max`.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        // Nothing panics while holding the lock; a poisoned one is used as is.
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            open: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish (idle connections are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(Open::default());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, and go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = open.take(peer.ip(), limits.per_client) else {
            shared.metrics.connections_refused.inc();
            tracing::debug!(client = %peer.ip(), limit = limits.per_client, "refused a connection: the client holds too many");
            tokio::spawn(refuse(stream, limits.per_client));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(client = %peer.ip(), error = %e, "connection closed");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers a connection over its client's limit with a 503 and closes it,
/// without reading its request.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = serde_json::json!({"error": {
        "code": "connections.too_many",
        "message": format!("this client holds {limit} connections already (serve.max_connections_per_client); reuse one or close some"),
    }})
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}
