//! Bad input gets a clear 4xx `Status`, and the server keeps serving.

use hollow_testkit::http_request;
use serde_json::Value;

use crate::start_control_plane;

fn status_of(body: &[u8]) -> Value {
    let status: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not a Status: {}", String::from_utf8_lossy(body)));
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["status"], "Failure", "{status}");
    status
}

#[test]
fn bad_requests_get_a_status_and_the_server_keeps_serving() {
    let hollow = start_control_plane();
    let address = hollow.api_address;
    let post = |path: &str, content_type: &str, body: &[u8]| {
        http_request(address, "POST", path, Some(content_type), body).unwrap()
    };
    let pods = "/api/v1/namespaces/default/pods";

    // Malformed JSON and YAML.
    let (code, body) = post(pods, "application/json", b"{\"metadata\": {");
    assert_eq!(code, 400);
    assert_eq!(status_of(&body)["reason"], "BadRequest");
    let (code, body) = post(pods, "application/yaml", b"metadata: [unclosed");
    assert_eq!(code, 400);
    status_of(&body);

    // A field of the wrong type.
    let (code, body) = post(
        pods,
        "application/json",
        br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":"nope"}}"#,
    );
    assert_eq!(code, 400);
    assert!(
        status_of(&body)["message"]
            .as_str()
            .unwrap()
            .contains("cannot be handled as a Pod")
    );

    // An unknown kind, and a kind that does not belong at this URL.
    let (code, body) = post(
        "/apis/example.com/v1/namespaces/default/widgets",
        "application/json",
        b"{}",
    );
    assert_eq!(code, 404);
    status_of(&body);
    let (code, body) = post(
        pods,
        "application/json",
        br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"}}"#,
    );
    assert_eq!(code, 400);
    status_of(&body);

    // A missing name, an invalid name and an invalid label value: 422 naming the field.
    let (code, body) = post(
        pods,
        "application/json",
        br#"{"metadata":{},"spec":{"containers":[]}}"#,
    );
    assert_eq!(code, 422);
    let status = status_of(&body);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    let (code, body) = post(
        pods,
        "application/json",
        br#"{"metadata":{"name":"Not_Valid"},"spec":{"containers":[]}}"#,
    );
    assert_eq!(code, 422);
    assert_eq!(
        status_of(&body)["details"]["causes"][0]["field"],
        "metadata.name"
    );
    let (code, body) = post(
        pods,
        "application/json",
        br#"{"metadata":{"name":"ok","labels":{"app":"has spaces"}},"spec":{"containers":[]}}"#,
    );
    assert_eq!(code, 422);
    let status = status_of(&body);
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.labels");
    assert_eq!(status["details"]["kind"], "Pod");

    // An unsupported media type and a body over the size limit.
    let (code, body) = post(pods, "application/xml", b"<pod/>");
    assert_eq!(code, 415);
    status_of(&body);
    let huge = vec![b' '; 4 * 1024 * 1024];
    let (code, body) = post(pods, "application/json", &huge);
    assert_eq!(code, 413);
    status_of(&body);

    // A bad selector, an unsupported field selector.
    let (code, body) = http_request(
        address,
        "GET",
        "/api/v1/pods?labelSelector=a%20in%20(",
        None,
        b"",
    )
    .unwrap();
    assert_eq!(code, 400);
    status_of(&body);
    let (code, body) = http_request(
        address,
        "GET",
        "/api/v1/pods?fieldSelector=spec.nope%3Dx",
        None,
        b"",
    )
    .unwrap();
    assert_eq!(code, 400);
    assert_eq!(
        status_of(&body)["message"],
        "field label not supported: spec.nope"
    );

    // Nothing was written, and the server still serves.
    let (code, body) = http_request(address, "GET", pods, None, b"").unwrap();
    assert_eq!(code, 200);
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (code, _) = post(
        pods,
        "application/json",
        br#"{"metadata":{"name":"fine"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    assert_eq!(code, 201);
}
