//! The protocol's shapes: what the real server sends is read, what we write reads back as
//! written, and no bytes make a decoder panic.

#![allow(clippy::unwrap_used)] // tests may unwrap

use msbw_protocol::params::{CommandParams, MetricsParams, ReplParams, Seconds, StartConfig, StartParams, StopParams};
use msbw_protocol::results::{CommandResult, HealthAnswer, MetricsResult, ReplResult, SandboxStatus, StartAnswer};
use msbw_protocol::{Answer, Call, Output, RequestError, Stream, decode_answer, decode_request, encode_success};
use proptest::prelude::*;
use serde_json::json;
use serde_json::value::RawValue;

#[test]
fn real_results_deserialize() {
    // Verbatim from the real server 0.2.6.
    let repl: ReplResult = serde_json::from_value(
        json!({"language":"python","output":[{"stream":"stdout","text":"42"},{"stream":"stderr","text":"e"},{"stream":"stdout","text":"43"}],"status":"success"}),
    )
    .unwrap();
    assert_eq!(
        repl.output,
        Output::new("42\n43\n", "e\n"),
        "each line with its newline"
    );
    let cmd: CommandResult = serde_json::from_value(json!({"args":["-c","echo hello; exit 3"],"command":"sh","exit_code":3,"output":[{"stream":"stdout","text":"hello"}],"success":false})).unwrap();
    assert_eq!((cmd.exit_code, cmd.output.stdout.as_str()), (3, "hello\n"));
    let metrics: MetricsResult = serde_json::from_value(json!({"sandboxes":[
        {"cpu_usage":0.0,"disk_usage":92,"memory_usage":4,"name":"sb1","namespace":"default","running":true},
        {"cpu_usage":null,"disk_usage":null,"memory_usage":null,"name":"sb2","namespace":"default","running":false}
    ]}))
    .unwrap();
    assert_eq!(metrics.sandboxes.len(), 2);
    assert_eq!(
        metrics.sandboxes[0].memory_usage.as_ref().and_then(|n| n.as_f64()),
        Some(4.0)
    );
    assert_eq!(metrics.sandboxes[1], SandboxStatus::stopped("default", "sb2"));
    assert_eq!(
        serde_json::to_value(&metrics.sandboxes[0]).unwrap()["memory_usage"],
        json!(4),
        "integers stay integers"
    );
}

#[test]
fn params_are_written_as_the_real_server_reads_them() {
    let p = MetricsParams {
        namespace: "*".into(),
        sandbox: None,
    };
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json!({"namespace": "*", "sandbox": null})
    );
    let p = ReplParams {
        sandbox: "s".into(),
        namespace: "n".into(),
        language: "python".into(),
        code: "1".into(),
        timeout: Some(Seconds::whole(30)),
    };
    assert_eq!(serde_json::to_value(&p).unwrap()["timeout"], json!(30), "an integer");
    let fractional: ReplParams =
        serde_json::from_value(json!({"sandbox":"s","namespace":"n","language":"python","code":"1","timeout":0.5}))
            .unwrap();
    assert_eq!(fractional.timeout, Some(Seconds(0.5)));
    let start = StartParams {
        sandbox: "s".into(),
        namespace: "n".into(),
        config: Some(StartConfig {
            image: Some("microsandbox/python".into()),
            memory: Some(512),
            cpus: Some(1),
            ..Default::default()
        }),
    };
    assert_eq!(
        serde_json::to_value(&start).unwrap(),
        json!({"sandbox":"s","namespace":"n","config":{"image":"microsandbox/python","memory":512,"cpus":1,"volumes":[],"envs":[]}})
    );
}

#[test]
fn start_answers_are_classified() {
    assert_eq!(
        StartAnswer::parse("sb", "Sandbox sb started successfully"),
        StartAnswer::Started
    );
    for text in [
        "Sandbox sb was started, but timed out waiting for it to be fully running. It may still be initializing.",
        "Sandbox sb was started, but couldn't verify it's running: boom",
        "Sandbox other started successfully",
        "",
    ] {
        assert!(
            matches!(StartAnswer::parse("sb", text), StartAnswer::Uncertain(_)),
            "{text}"
        );
    }
}

#[test]
fn health_answers_are_read_leniently() {
    let old = HealthAnswer::decode(br#"{"message": "Service is healthy"}"#).unwrap();
    assert_eq!(old.message.as_deref(), Some("Service is healthy"));
    assert!(!old.read_only_volumes);
    let new = HealthAnswer::decode(br#"{"message": "ok", "capabilities": {"read_only_volumes": true}}"#).unwrap();
    assert!(new.read_only_volumes);
    for odd in [
        r#"{"capabilities": {"read_only_volumes": "yes"}}"#,
        r#"{"capabilities": ["read_only_volumes"]}"#,
        r#"{"capabilities": null}"#,
        r#"{"message": 7}"#,
    ] {
        let answer = HealthAnswer::decode(odd.as_bytes()).unwrap();
        assert!(!answer.read_only_volumes, "{odd}");
    }
    assert!(HealthAnswer::decode(b"[1, 2]").is_err());
    assert!(HealthAnswer::decode(b"\"text\"").is_err());
    assert!(HealthAnswer::decode(b"<html>").is_err());
}

#[test]
fn requests_are_refused_as_the_real_servers_framework_does() {
    assert!(matches!(decode_request(b"{not json"), Err(RequestError::Syntax(_))));
    assert!(matches!(decode_request(b""), Err(RequestError::Syntax(_))));
    assert!(matches!(decode_request(b"[]"), Err(RequestError::Shape(_))));
    assert!(matches!(
        decode_request(br#"["2.0","sandbox.stop",{},1]"#),
        Err(RequestError::Shape(_))
    ));
    assert!(matches!(
        decode_request(br#"{"jsonrpc":"2.0"}"#),
        Err(RequestError::Shape(_))
    ));
    let r = decode_request(br#"{"jsonrpc":"2.0","method":"m","id":null,"extra":1}"#).unwrap();
    assert!(r.id.is_none(), "a null id is no id");
    let e = r.params::<StopParams>().unwrap_err();
    assert_eq!(e.to_string(), "missing field `sandbox`", "no position in the message");
}

#[test]
fn the_three_answer_shapes_are_read() {
    assert!(matches!(
        decode_answer(br#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found: x"},"id":1}"#),
        Ok(Answer::RpcError { code: -32601, .. })
    ));
    assert!(matches!(
        decode_answer(br#"{"error":"Internal server error","code":5002}"#),
        Ok(Answer::RestError { code: Some(5002), .. })
    ));
    assert!(matches!(decode_answer(br#"{"error":[1]}"#), Ok(Answer::OddError(_))));
    assert!(matches!(decode_answer(br#"{"x":1}"#), Ok(Answer::Neither)));
    assert!(matches!(decode_answer(br#"{"result":null}"#), Ok(Answer::Result(r)) if r.get() == "null"));
    assert!(decode_answer(b"Failed to deserialize").is_err());
    assert!(decode_answer(b"[1]").is_err());
}

#[test]
fn many_tiny_lines_cost_about_their_bytes() {
    // 200,000 empty stdout lines: the wire holds ~6 MB; the decoded output is 200 KB.
    let lines = 200_000;
    let output = Output::new("\n".repeat(lines), "");
    let body = encode_success(&json!({"output": output}), None).unwrap();
    let result = match decode_answer(&body).unwrap() {
        Answer::Result(r) => r,
        other => panic!("{other:?}"),
    };
    let decoded: ReplResult = msbw_protocol::envelope::decode_result(&result).unwrap();
    assert_eq!(decoded.output.stdout.len(), lines, "each line is its newline");
}

fn line_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~]{0,12}", Just(String::new())].prop_map(|s| s.replace(['\n', '\r'], ""))
}

/// A text as the decoder gives it: each line followed by a newline.
fn canonical_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(line_text(), 0..6).prop_map(|lines| lines.iter().map(|l| format!("{l}\n")).collect())
}

fn text_with_newlines() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a\\r\\n]{0,12}"]
}

proptest! {
    #[test]
    fn output_round_trips(stdout in canonical_text(), stderr in canonical_text()) {
        let output = Output::new(stdout, stderr);
        let json = serde_json::to_vec(&output).unwrap();
        let back: Output = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(back, output);
    }

    #[test]
    fn output_is_written_as_its_lines(stdout in text_with_newlines(), stderr in text_with_newlines()) {
        let output = Output::new(stdout.clone(), stderr.clone());
        let json: serde_json::Value = serde_json::to_value(&output).unwrap();
        let expected: Vec<serde_json::Value> = stdout.lines().map(|l| json!({"stream": "stdout", "text": l}))
            .chain(stderr.lines().map(|l| json!({"stream": "stderr", "text": l})))
            .collect();
        prop_assert_eq!(json, serde_json::Value::Array(expected));
        let back: Output = serde_json::from_value(serde_json::to_value(&output).unwrap()).unwrap();
        prop_assert_eq!(back.stdout, stdout.lines().map(|l| format!("{l}\n")).collect::<String>());
    }

    #[test]
    fn output_chunks_concatenate_to_the_serialized_output(
        stdout in text_with_newlines(), stderr in text_with_newlines(), chunk in 1usize..64,
    ) {
        let output = Output::new(stdout, stderr);
        let whole = serde_json::to_vec(&output).unwrap();
        let pieces: Vec<u8> = output.into_json_chunks(chunk).flatten().collect();
        prop_assert_eq!(String::from_utf8(pieces).unwrap(), String::from_utf8(whole).unwrap());
    }

    #[test]
    fn calls_decode_as_sent(sandbox in "[A-Za-z0-9_-]{1,63}", code in any::<String>(), timeout in proptest::option::of(0u64..100_000), id in any::<u64>()) {
        let params = ReplParams { sandbox: sandbox.clone(), namespace: "default".into(), language: "python".into(), code, timeout: timeout.map(Seconds::whole) };
        let body = serde_json::to_vec(&Call::new("sandbox.repl.run", &params, id)).unwrap();
        let request = decode_request(&body).unwrap();
        prop_assert_eq!(request.jsonrpc.as_str(), "2.0");
        prop_assert_eq!(request.method.as_str(), "sandbox.repl.run");
        prop_assert_eq!(request.id.as_ref().map(|r| r.get().to_owned()), Some(id.to_string()));
        prop_assert_eq!(request.params::<ReplParams>().unwrap(), params);
    }

    #[test]
    fn params_round_trip(
        name in "[A-Za-z0-9_-]{1,63}", image in proptest::option::of("[a-z/:.]{1,20}"), memory in proptest::option::of(any::<u32>()),
        cpus in proptest::option::of(any::<u8>()), volumes in proptest::collection::vec(any::<String>(), 0..3),
        ports in proptest::collection::vec(any::<String>(), 0..2), envs in proptest::collection::vec(any::<String>(), 0..3),
        command in proptest::option::of(any::<String>()), args in proptest::collection::vec(any::<String>(), 0..3),
        timeout in proptest::option::of(prop_oneof![(0u64..1_000_000).prop_map(Seconds::whole), (0.001f64..1e6).prop_map(Seconds)]),
    ) {
        let start = StartParams { sandbox: name.clone(), namespace: "ns".into(), config: Some(StartConfig { image, memory, cpus, volumes, ports, envs, workdir: None, shell: Some("sh".into()) }) };
        prop_assert_eq!(serde_json::from_slice::<StartParams>(&serde_json::to_vec(&start).unwrap()).unwrap(), start);
        let cmd = CommandParams { sandbox: name.clone(), namespace: "ns".into(), command, args, timeout };
        prop_assert_eq!(serde_json::from_slice::<CommandParams>(&serde_json::to_vec(&cmd).unwrap()).unwrap(), cmd);
        let stop = StopParams { sandbox: name.clone(), namespace: "ns".into() };
        prop_assert_eq!(serde_json::from_slice::<StopParams>(&serde_json::to_vec(&stop).unwrap()).unwrap(), stop);
        let metrics = MetricsParams { namespace: "*".into(), sandbox: Some(name) };
        prop_assert_eq!(serde_json::from_slice::<MetricsParams>(&serde_json::to_vec(&metrics).unwrap()).unwrap(), metrics);
    }

    #[test]
    fn results_round_trip_through_the_envelope(
        stdout in canonical_text(), stderr in canonical_text(), exit_code in any::<i32>(), id in proptest::option::of(any::<i64>()),
    ) {
        let result = CommandResult { command: "sh".into(), args: vec!["-c".into()], exit_code, success: exit_code == 0, output: Output::new(stdout, stderr) };
        let id_raw = id.map(|i| RawValue::from_string(i.to_string()).unwrap());
        let body = encode_success(&result, id_raw.as_deref()).unwrap();
        let raw = match decode_answer(&body).unwrap() { Answer::Result(r) => r, other => panic!("{other:?}") };
        prop_assert_eq!(msbw_protocol::envelope::decode_result::<CommandResult>(&raw).unwrap(), result);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(&body).map(|r| r.params::<StartParams>());
        let _ = decode_answer(&body);
        let _ = HealthAnswer::decode(&body);
        let _ = msbw_protocol::key::verify("k", std::str::from_utf8(&body).ok());
    }

    #[test]
    fn decoders_never_panic_on_json_like_bytes(body in "[\\[\\]{}\":,a-z0-9 \\\\.-]{0,80}") {
        let _ = decode_request(body.as_bytes()).map(|r| (r.params::<ReplParams>(), r.params::<MetricsParams>()));
        if let Ok(Answer::Result(raw)) = decode_answer(body.as_bytes()) {
            let _ = msbw_protocol::envelope::decode_result::<ReplResult>(&raw);
        }
    }
}

#[test]
fn the_stream_of_a_line_is_read_like_the_real_client_does() {
    assert_eq!(Stream::from_wire("STDERR"), Stream::Stderr);
    assert_eq!(Stream::from_wire("other"), Stream::Stdout);
    let mut o = Output::new("a\n", "");
    o.push_line(Stream::Stdout, "b");
    o.push_line(Stream::Stderr, "Error: Execution timed out after 1 seconds");
    assert_eq!(o, Output::new("a\nb", "Error: Execution timed out after 1 seconds"));
}
