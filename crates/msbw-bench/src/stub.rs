//! A loopback stub of the microsandbox server that answers every call at once, on a thread and
//! runtime of its own (so its CPU time is not the client's): starts succeed, the listing is
//! empty, code and commands print `ok`, stops succeed. Both the bare client and the wrapper's
//! HTTP backend are measured against it.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use msbw_protocol::params::{StartParams, StopParams};
use msbw_protocol::results::{started_message, stopped_message};
use msbw_protocol::{MAX_REQUEST_BYTES, decode_request, encode_success, method};
use serde_json::json;
use tokio::net::TcpListener;

/// A running stub; it stops with the process.
pub(crate) struct Stub {
    pub(crate) url: String,
}

impl Stub {
    /// Starts a stub on a free loopback port.
    pub(crate) fn start() -> Result<Stub, String> {
        let (tx, rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
        std::thread::Builder::new()
            .name("stub".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(format!("the stub's runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(format!("the stub cannot listen: {e}")));
                            return;
                        }
                    };
                    let _ = tx.send(listener.local_addr().map_err(|e| e.to_string()));
                    serve(listener).await;
                });
            })
            .map_err(|e| format!("the stub's thread: {e}"))?;
        let addr = rx.recv().map_err(|_| "the stub did not start".to_owned())??;
        Ok(Stub {
            url: format!("http://{addr}"),
        })
    }
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, hyper::service::service_fn(answer))
                .await;
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // As the real server: the health check (which a client asks once, for the server's
    // abilities) answers without a body to read.
    if request.method() == hyper::Method::GET && request.uri().path() == "/api/v1/health" {
        return Ok(reply(200, b"{\"message\":\"Service is healthy\"}".to_vec()));
    }
    let body = match Limited::new(request.into_body(), MAX_REQUEST_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(reply(400, b"{\"error\":\"bad body\",\"code\":1001}".to_vec())),
    };
    let Ok(call) = decode_request(&body) else {
        return Ok(reply(400, b"{\"error\":\"bad request\",\"code\":1001}".to_vec()));
    };
    let id = call.id.as_deref();
    let encoded = match call.method.as_str() {
        method::START => {
            let name = call.params::<StartParams>().map(|p| p.sandbox).unwrap_or_default();
            encode_success(&started_message(&name), id)
        }
        method::STOP => {
            let name = call.params::<StopParams>().map(|p| p.sandbox).unwrap_or_default();
            encode_success(&stopped_message(&name), id)
        }
        method::METRICS => encode_success(&json!({"sandboxes": []}), id),
        method::REPL_RUN => encode_success(
            &json!({"status": "success", "language": "python", "output": [{"stream": "stdout", "text": "ok"}]}),
            id,
        ),
        method::COMMAND_RUN => encode_success(
            &json!({"command": "true", "args": [], "exit_code": 0, "success": true, "output": []}),
            id,
        ),
        _ => return Ok(reply(404, b"{\"error\":\"unknown method\",\"code\":1001}".to_vec())),
    };
    Ok(match encoded {
        Ok(bytes) => reply(200, bytes),
        Err(_) => reply(500, b"{\"error\":\"encode\",\"code\":5002}".to_vec()),
    })
}

fn reply(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
