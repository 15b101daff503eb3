//! Reaching the host's network: a listener on the host's loopback gets no connection (and does
//! when the network is shared, so the test can fail).

use std::io::ErrorKind;
use std::net::TcpListener;

use super::*;

fn assert_no_connection(listener: &TcpListener) {
    listener.set_nonblocking(true).expect("non-blocking listener");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("the host listener accepted a connection from {from}"),
        Err(e) => panic!("accept: {e}"),
    }
}

const CONNECT: &str = r#"
import socket
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=3).close()
    print("connected")
except OSError as e:
    print("failed:", type(e).__name__)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_reach_a_listener_on_the_hosts_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sandbox = Sandbox::new("net", Template::Python).await;

    let out = sandbox.python(&CONNECT.replace("PORT", &port.to_string())).await;
    assert!(out.stdout.starts_with("failed:"), "{out:?}");
    assert_no_connection(&listener);
    // Not even a TCP handshake through another program.
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo open");
    let curlish = sandbox.command("bash", &["-c", &script]).await;
    assert!(!curlish.stdout.contains("open"), "{curlish:?}");
    assert_no_connection(&listener);

    // The sandbox's own loopback works: the failure above is isolation, not a broken stack.
    sandbox
        .assert_prints(
            "import socket\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
             c = socket.create_connection(s.getsockname(), timeout=3); a, _ = s.accept()\n\
             c.sendall(b'ping'); print(a.recv(4).decode())",
            "ping\n",
        )
        .await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_network_enabled_the_same_connection_succeeds() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = backend_with(|config| config.network = true);
    assert!(!backend.capabilities().await.network_isolated);
    let sandbox = Sandbox::start(&backend, &spec("net-on", Template::Python)).await;
    let out = sandbox.python(&CONNECT.replace("PORT", &port.to_string())).await;
    assert_eq!(out.stdout, "connected\n", "{out:?}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_ok(),
        "the connection should have reached the host listener"
    );
    sandbox.stop().await;
}
