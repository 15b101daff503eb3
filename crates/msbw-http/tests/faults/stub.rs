//! A loopback stand-in for the microsandbox server 0.2.6: the five JSON-RPC methods and the
//! health route, with the real server's answer shapes (masked `500 / 5002` for an unknown
//! sandbox, `400 / 2001` for an unknown namespace), and a count of every request that reached
//! it, per method. It is the upstream the fault proxy sits in front of: what it counted is what
//! reached "the server".

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::common::metrics_listing;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The key under which the readiness probe (`sandbox.command.run` of `true`) is counted, apart
/// from the caller's own commands.
pub const PROBE: &str = "probe";

/// What the stub does with the next `sandbox.repl.run` / `sandbox.command.run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Answer normally.
    #[default]
    Normal,
    /// The sandbox dies while running the next call: it is forgotten and the call gets the
    /// masked `500 / 5002`, as the real server answers when the agent's connection breaks. Once.
    VanishDuringExec,
}

#[derive(Debug, Default)]
struct State_ {
    /// (namespace, name) -> running.
    sandboxes: HashMap<(String, String), bool>,
    /// Requests per method that reached the stub.
    counts: BTreeMap<String, usize>,
    behaviour: Behaviour,
}

/// A running stub server on 127.0.0.1.
#[derive(Debug)]
pub struct Stub {
    addr: SocketAddr,
    state: Arc<Mutex<State_>>,
    task: JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<State_>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State_> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stub {
    /// Starts a stub on a free loopback port.
    pub async fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stub");
        let addr = listener.local_addr().expect("the stub's address");
        let state: Shared = Arc::default();
        let app = Router::new()
            .route(
                "/api/v1/health",
                get(|| async { Json(json!({"message": "Service is healthy"})) }),
            )
            .route("/api/v1/rpc", post(rpc))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub { addr, state, task }
    }

    /// Where the stub listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests of `method` (or [`PROBE`]) reached the stub.
    pub fn count(&self, method: &str) -> usize {
        lock(&self.state).counts.get(method).copied().unwrap_or(0)
    }

    /// Every count, for messages.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        lock(&self.state).counts.clone()
    }

    /// Forgets the counts (after a setup step).
    pub fn reset_counts(&self) {
        lock(&self.state).counts.clear();
    }

    /// Sets what the next executions do.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.state).behaviour = behaviour;
    }

    /// Whether the stub has `namespace/name` running.
    pub fn is_running(&self, namespace: &str, name: &str) -> bool {
        lock(&self.state)
            .sandboxes
            .get(&(namespace.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or(false)
    }

    /// Whether the stub knows `namespace/name` (running or not).
    pub fn knows(&self, namespace: &str, name: &str) -> bool {
        lock(&self.state)
            .sandboxes
            .contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// The names of the running sandboxes.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.state)
            .sandboxes
            .iter()
            .filter(|(_, running)| **running)
            .map(|((ns, name), _)| format!("{ns}/{name}"))
            .collect();
        names.sort();
        names
    }
}

fn masked() -> (StatusCode, Json<Value>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "Internal server error", "code": 5002})),
    )
}

fn ok(id: &Value, result: Value) -> (StatusCode, Json<Value>) {
    (
        StatusCode::OK,
        Json(json!({"jsonrpc": "2.0", "result": result, "id": id})),
    )
}

fn text(params: &Value, field: &str) -> String {
    params.get(field).and_then(Value::as_str).unwrap_or_default().to_owned()
}

async fn rpc(State(state): State<Shared>, Json(request): Json<Value>) -> (StatusCode, Json<Value>) {
    let method = text(&request, "method");
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let key = (text(&params, "namespace"), text(&params, "sandbox"));
    let mut st = lock(&state);
    let counted = if method == "sandbox.command.run" && text(&params, "command") == "true" {
        PROBE.to_owned()
    } else {
        method.clone()
    };
    *st.counts.entry(counted).or_insert(0) += 1;
    match method.as_str() {
        "sandbox.start" => {
            st.sandboxes.insert(key.clone(), true);
            ok(&id, json!(format!("Sandbox {} started successfully", key.1)))
        }
        "sandbox.stop" => match st.sandboxes.get_mut(&key) {
            Some(running) => {
                *running = false;
                ok(&id, json!(format!("Sandbox {} stopped successfully", key.1)))
            }
            None => masked(),
        },
        "sandbox.metrics.get" => {
            let namespace = key.0;
            let name = params.get("sandbox").and_then(Value::as_str);
            if namespace != "*" && !st.sandboxes.keys().any(|(ns, _)| *ns == namespace) {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": format!("Namespace directory '{namespace}' does not exist"), "code": 2001})),
                );
            }
            if let Some(name) = name
                && !st.sandboxes.contains_key(&(namespace.clone(), name.to_owned()))
            {
                return masked();
            }
            let sandboxes = st
                .sandboxes
                .iter()
                .map(|((ns, n), running)| (ns.as_str(), n.as_str(), *running));
            ok(&id, metrics_listing(sandboxes, &namespace, name))
        }
        "sandbox.repl.run" | "sandbox.command.run" => {
            if !st.sandboxes.get(&key).copied().unwrap_or(false) {
                return masked();
            }
            if st.behaviour == Behaviour::VanishDuringExec && text(&params, "command") != "true" {
                st.behaviour = Behaviour::Normal;
                st.sandboxes.remove(&key);
                return masked();
            }
            if method == "sandbox.repl.run" {
                ok(
                    &id,
                    json!({"status": "success", "language": "python",
                               "output": [{"stream": "stdout", "text": "ran"}]}),
                )
            } else {
                ok(
                    &id,
                    json!({"exit_code": 0, "success": true,
                               "output": [{"stream": "stdout", "text": "ran"}]}),
                )
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": id})),
        ),
    }
}
