//! The suite against an S3-compatible server (moto in CI: start it with
//! `tests/s3/moto.sh start`, which prints `KEEL_TEST_S3_ENDPOINT`).
//!
//! Without `KEEL_TEST_S3_ENDPOINT` these tests say they were skipped and
//! pass, except under `CI=true`, where they fail: CI must exercise S3. Each
//! test creates its own bucket with an unsigned CreateBucket request (which
//! moto accepts) and uses the credentials `test`/`test`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;

use super::{file, ok, suite};
use crate::ArtifactStore;
use crate::s3::S3Location;

/// The endpoint under test, or `None` (after saying so) when there is none
/// outside CI.
fn endpoint() -> Option<String> {
    match std::env::var("KEEL_TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            Some(endpoint.trim().trim_end_matches('/').to_string())
        }
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but KEEL_TEST_S3_ENDPOINT is not set: start an S3 server with \
                 `eval \"$(tests/s3/moto.sh start)\"` before `cargo test`"
            );
            eprintln!(
                "skipped: KEEL_TEST_S3_ENDPOINT is not set, so the S3 backend was not tested"
            );
            None
        }
    }
}

/// Creates a fresh bucket named after `test` and returns a store on
/// `s3://bucket/prefix`.
async fn s3_store(endpoint: &str, test: &str, prefix: &str) -> (String, ArtifactStore) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let bucket = format!("keel-{test}-{}-{nanos}", std::process::id());
    let response = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await;
    match response {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => panic!(
            "CreateBucket {bucket} at {endpoint}: HTTP {}",
            response.status()
        ),
        Err(error) => panic!("CreateBucket {bucket} at {endpoint}: {error}"),
    }
    (bucket.clone(), open(endpoint, &bucket, prefix))
}

fn open(endpoint: &str, bucket: &str, prefix: &str) -> ArtifactStore {
    let uri = if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    };
    let location = ok("parse", S3Location::parse(&uri));
    let builder = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1");
    let store = ok("open", ArtifactStore::open_s3(&location, builder));
    assert_eq!(store.uri(), uri);
    store
}

#[tokio::test]
async fn s3_round_trip() {
    let Some(endpoint) = endpoint() else { return };
    let (_, store) = s3_store(&endpoint, "round-trip", "some/prefix").await;
    suite::round_trip(&store).await;
}

#[tokio::test]
async fn s3_nested_listing() {
    let Some(endpoint) = endpoint() else { return };
    let (_, store) = s3_store(&endpoint, "listing", "p").await;
    suite::nested_listing(&store).await;
}

#[tokio::test]
async fn s3_delete_prefix() {
    let Some(endpoint) = endpoint() else { return };
    let (_, store) = s3_store(&endpoint, "delete", "p").await;
    suite::delete_prefix(&store).await;
}

#[tokio::test]
async fn s3_escaping_paths_rejected() {
    let Some(endpoint) = endpoint() else { return };
    let (_, store) = s3_store(&endpoint, "escape", "p").await;
    suite::escaping_paths_rejected(&store).await;
}

#[tokio::test]
async fn s3_large_streamed_round_trip() {
    let Some(endpoint) = endpoint() else { return };
    let (_, store) = s3_store(&endpoint, "large", "p").await;
    suite::large_streamed_round_trip(&store).await;
}

#[tokio::test]
async fn s3_failed_stream_leaves_previous_object() {
    let Some(endpoint) = endpoint() else { return };
    let (_, store) = s3_store(&endpoint, "failed", "p").await;
    suite::failed_stream_leaves_previous_object(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_concurrent_puts_leave_one_complete_object() {
    let Some(endpoint) = endpoint() else { return };
    let (_, store) = s3_store(&endpoint, "concurrent", "p").await;
    suite::concurrent_puts_leave_one_complete_object(&store).await;
}

/// Stores on different prefixes of one bucket do not see each other; the
/// bucket root sees both under their prefixes.
#[tokio::test]
async fn s3_prefixes_isolate_stores() {
    let Some(endpoint) = endpoint() else { return };
    let (bucket, team_a) = s3_store(&endpoint, "prefixes", "team-a").await;
    let team_b = open(&endpoint, &bucket, "team-b");
    let whole = open(&endpoint, &bucket, "");
    ok(
        "put a",
        team_a.put_bytes("m/x.txt", Bytes::from_static(b"a")).await,
    );
    ok(
        "put b",
        team_b.put_bytes("m/x.txt", Bytes::from_static(b"bb")).await,
    );
    assert_eq!(
        ok("list a", team_a.list_recursive("").await),
        vec![file("m/x.txt", 1)]
    );
    assert_eq!(
        ok("list bucket", whole.list_recursive("").await),
        vec![file("team-a/m/x.txt", 1), file("team-b/m/x.txt", 2)]
    );
    assert_eq!(ok("delete in a", team_a.delete("m").await), 1);
    assert_eq!(
        ok("b untouched", team_b.get_bytes("m/x.txt").await),
        Bytes::from_static(b"bb")
    );
}

/// `ArtifactStore::open` configured from the environment alone, as
/// `tests/s3/moto.sh start` exports it (an http:// `AWS_ENDPOINT_URL`, test
/// keys): plain HTTP and path-style requests must follow from the endpoint.
#[tokio::test]
async fn s3_open_from_environment() {
    let Some(endpoint) = endpoint() else { return };
    let configured = std::env::var("AWS_ENDPOINT_URL").ok();
    if configured.as_deref().map(|url| url.trim_end_matches('/')) != Some(endpoint.as_str()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but AWS_ENDPOINT_URL does not point at KEEL_TEST_S3_ENDPOINT: \
             use the exports printed by `tests/s3/moto.sh start`"
        );
        eprintln!("skipped: AWS_ENDPOINT_URL does not point at KEEL_TEST_S3_ENDPOINT");
        return;
    }
    let (bucket, _) = s3_store(&endpoint, "from-env", "").await;
    let store = ok(
        "open from env",
        ArtifactStore::open(&format!("s3://{bucket}/env/")),
    );
    assert_eq!(store.uri(), format!("s3://{bucket}/env"));
    ok(
        "put",
        store.put_bytes("a/b.txt", Bytes::from_static(b"env")).await,
    );
    assert_eq!(
        ok("get", store.get_bytes("a/b.txt").await),
        Bytes::from_static(b"env")
    );
    assert_eq!(ok("list", store.list("a").await), vec![file("a/b.txt", 3)]);
    assert_eq!(ok("delete", store.delete("a").await), 1);
}
