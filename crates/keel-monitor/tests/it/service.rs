//! The watch service's /metrics endpoint, over a real socket.

use keel_monitor::service::{Gauges, serve_metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_answers_the_latest_gauges_and_404_elsewhere() {
    let gauges = Gauges::default();
    let bound = serve_metrics(([127, 0, 0, 1], 0).into(), gauges.clone())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let metrics = client
        .get(format!("http://{bound}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    assert_eq!(metrics.text().await.unwrap(), "", "no evaluation yet");
    // What an evaluation publishes is what the next scrape reads.
    gauges.set("keel_drift_detected{model=\"risk\"} 1\n".into());
    let scraped = client
        .get(format!("http://{bound}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(scraped, "keel_drift_detected{model=\"risk\"} 1\n");
    let other = client
        .get(format!("http://{bound}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
