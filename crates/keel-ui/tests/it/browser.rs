//! The links the MLflow client prints, opened in headless Chromium as a
//! person would: the official client logs runs (params, step metrics, a CSV,
//! an image, an HTML report; `<script>` in a run name, a tag and a param) and
//! registers a model with gate results and an alias; each page is checked
//! for what a reader would see, for horizontal scrolling at 1280 px, for
//! script injection and for JavaScript console errors, and photographed
//! under `target/ui-screenshots/`.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::util;
use crate::webdriver::{self, Browser};

const XSS: &str = "<script>window.__xss=1</script>";

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("ui-screenshots"))
        .unwrap_or_else(|| PathBuf::from("ui-screenshots"));
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

struct Visit<'a> {
    browser: &'a Browser,
    shots: PathBuf,
    problems: Vec<String>,
}

impl Visit<'_> {
    /// Opens `url`, waits until the browser shows `path` (the hash router may
    /// redirect) and the page has loaded, then checks what every page must hold.
    async fn page(&mut self, name: &str, url: &str, path: &str) {
        eprintln!("browser: {name} {url}");
        self.browser.open(url).await;
        let wanted = json!(path);
        self.browser
            .wait_for(
                &format!("{name}: {path}"),
                &format!(
                    "return decodeURIComponent(location.pathname) === {wanted} && document.readyState === 'complete';"
                ),
            )
            .await;
        let checks = self
            .browser
            .run(
                "return {
                    wide: document.documentElement.scrollWidth > window.innerWidth,
                    xss: window.__xss !== undefined,
                    scripts: document.scripts.length,
                    title: document.title,
                };",
                json!([]),
            )
            .await;
        if checks["wide"] == json!(true) {
            self.problems
                .push(format!("{name}: scrolls horizontally at 1280 px"));
        }
        if checks["xss"] == json!(true) {
            self.problems.push(format!("{name}: injected script ran"));
        }
        if checks["scripts"] != json!(1) {
            self.problems
                .push(format!("{name}: {} script elements", checks["scripts"]));
        }
        self.browser
            .screenshot(&self.shots.join(format!("{name}.png")))
            .await;
        self.console(name).await;
    }

    async fn console(&mut self, name: &str) {
        for (level, message) in self.browser.console().await {
            if level == "SEVERE" {
                self.problems
                    .push(format!("{name}: console error: {message}"));
            }
        }
    }

    async fn texts(&self, selector: &str) -> Vec<String> {
        let value = self
            .browser
            .run(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim());",
                json!([selector]),
            )
            .await;
        serde_json::from_value(value).unwrap_or_default()
    }

    async fn count(&self, selector: &str) -> i64 {
        self.browser
            .run(
                "return document.querySelectorAll(arguments[0]).length;",
                json!([selector]),
            )
            .await
            .as_i64()
            .unwrap_or(-1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_links_open_the_right_pages_in_chromium() {
    let Some((driver, chromium)) = webdriver::find_browser() else {
        return;
    };
    let Some(python) = util::python() else {
        return;
    };
    let server = util::start_server().await;
    let out = util::run_python(&python, "ui_fixture.py", &server.url).await;
    let ids: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("fixture output {out}: {e}"));
    let exp = ids["experiment_id"].as_str().expect("experiment id");
    let r0 = ids["runs"][0].as_str().expect("run 0");
    let r1 = ids["runs"][1].as_str().expect("run 1");
    let url = &server.url;

    let browser = Browser::start(&driver, &chromium).await;
    let mut visit = Visit {
        browser: &browser,
        shots: screenshot_dir(),
        problems: Vec::new(),
    };

    // The console check can fail: an error logged by a page is seen.
    browser.open(&format!("{url}/health")).await;
    browser.run("console.error('keel-probe');", json!([])).await;
    let probe = browser.console().await;
    assert!(
        probe
            .iter()
            .any(|(level, message)| level == "SEVERE" && message.contains("keel-probe")),
        "console errors are not collected: {probe:?}"
    );

    // The home page lists the experiments; an unknown MLflow route lands there with a note.
    visit
        .page("00-experiments", &format!("{url}/#/no-such-page"), "/")
        .await;
    assert!(
        visit
            .texts("main table a")
            .await
            .contains(&"ui-browser".to_string())
    );
    assert!(
        visit
            .texts("#route-note")
            .await
            .join(" ")
            .contains("#/no-such-page"),
        "the note names the unknown route"
    );

    // The experiment link the client prints: the runs table with both runs,
    // names shown as typed (never run), their params in columns.
    visit
        .page(
            "01-experiment",
            &format!("{url}/#/experiments/{exp}"),
            &format!("/experiments/{exp}"),
        )
        .await;
    let names = visit.texts("#runs-table td.name a").await;
    assert_eq!(
        names,
        vec![format!("{XSS}run-1"), format!("{XSS}run-0")],
        "newest first, escaped"
    );
    let table = visit.texts("#runs-table tbody").await.join(" ");
    for value in ["gbdt", "rf", "0.01", "FINISHED"] {
        assert!(table.contains(value), "runs table lacks {value}: {table}");
    }
    assert_eq!(
        visit
            .texts("#runs-table thead th")
            .await
            .iter()
            .filter(|h| h.contains("val_accuracy"))
            .count(),
        1,
        "a metric column"
    );

    // Selecting two runs and pressing compare.
    assert_eq!(
        browser
            .run(
                "return document.getElementById('compare-button').disabled;",
                json!([])
            )
            .await,
        json!(true)
    );
    visit
        .browser
        .click(&format!("input[name=runs][value='{r0}']"))
        .await;
    visit
        .browser
        .click(&format!("input[name=runs][value='{r1}']"))
        .await;
    visit.browser.click("#compare-button").await;
    browser
        .wait_for(
            "compare page after selecting",
            "return location.pathname === '/compare-runs' && document.readyState === 'complete';",
        )
        .await;
    assert_eq!(visit.count("#compare-table thead th a").await, 2);
    visit.console("02-compare-selected").await;

    // The run link: param values, metric names, both charts drawn.
    visit
        .page(
            "03-run",
            &format!("{url}/#/experiments/{exp}/runs/{r1}"),
            &format!("/experiments/{exp}/runs/{r1}"),
        )
        .await;
    let params = visit.texts("#params tbody tr").await;
    for expected in ["lr0.01", "modelrf", "depth6", &format!("note{XSS}")] {
        assert!(
            params.iter().any(|row| row.replace(char::is_whitespace, "")
                == expected.replace(char::is_whitespace, "")),
            "param row {expected} missing from {params:?}"
        );
    }
    let metrics = visit.texts("#metrics tbody td:first-child").await;
    assert_eq!(metrics, vec!["loss", "val_accuracy"]);
    let lines = browser
        .run(
            "return [...document.querySelectorAll('#metrics svg.chart polyline.series')].map(p => p.getAttribute('points').split(' ').length);",
            json!([]),
        )
        .await;
    assert_eq!(
        lines,
        json!([25, 25, 25, 25]),
        "two metrics over step and over time"
    );
    assert!(
        visit
            .texts("#lineage")
            .await
            .join(" ")
            .contains("ui-model version 1"),
        "the run links to the version registered from it"
    );
    assert!(visit.texts("#tags tbody").await.join(" ").contains(XSS));

    // Artifacts through the client's artifact link form.
    visit
        .page(
            "04-artifact-csv",
            &format!("{url}/#/experiments/{exp}/runs/{r1}/artifacts/tables/predictions.csv"),
            &format!("/experiments/{exp}/runs/{r1}/artifacts/tables/predictions.csv"),
        )
        .await;
    assert_eq!(
        visit.texts("table.csv-preview thead th").await,
        vec!["id", "score", "label"]
    );
    assert_eq!(
        visit.count("table.csv-preview tbody tr").await,
        100,
        "bounded to 100 rows"
    );
    assert_eq!(
        visit
            .texts("table.csv-preview tbody tr:nth-child(2) td")
            .await,
        vec!["1", "0.0067", "<b>yes</b>"]
    );
    visit
        .page(
            "05-artifact-image",
            &format!("{url}/experiments/{exp}/runs/{r1}/artifacts/plots/roc.png"),
            &format!("/experiments/{exp}/runs/{r1}/artifacts/plots/roc.png"),
        )
        .await;
    browser
        .wait_for(
            "the image preview",
            "const i = document.querySelector('img.preview-image'); return i && i.complete && i.naturalWidth === 64;",
        )
        .await;
    visit
        .page(
            "06-artifact-html",
            &format!("{url}/experiments/{exp}/runs/{r1}/artifacts/report.html"),
            &format!("/experiments/{exp}/runs/{r1}/artifacts/report.html"),
        )
        .await;
    assert_eq!(
        browser
            .run(
                "return document.querySelector('iframe.preview-frame').getAttribute('sandbox');",
                json!([])
            )
            .await,
        json!("")
    );

    // MLflow's compare link (JSON lists in the query).
    visit
        .page(
            "07-compare",
            &format!("{url}/#/compare-runs?runs=[\"{r0}\",\"{r1}\"]&experiments=[\"{exp}\"]"),
            "/compare-runs",
        )
        .await;
    assert_eq!(visit.count("#compare-table thead th a").await, 2);
    let differing = visit.texts("#compare-table tr.diff th").await;
    for key in ["lr", "model", "loss"] {
        assert!(
            differing.iter().any(|k| k == key),
            "{key} not marked as differing: {differing:?}"
        );
    }
    assert!(
        !differing.iter().any(|k| k == "depth"),
        "depth is the same in both runs"
    );
    assert_eq!(
        visit.count("#parallel svg.parallel polyline.pc-line").await,
        2
    );
    assert_eq!(visit.count("#curves svg.chart polyline.series").await, 4);

    // The registry: the alias on the model pages, gates and lineage of the version.
    visit
        .page("08-models", &format!("{url}/#/models"), "/models")
        .await;
    let models = visit.texts("#models-table tbody tr").await.join(" ");
    assert!(
        models.contains("ui-model") && models.contains("@champion"),
        "{models}"
    );
    visit
        .page(
            "09-model",
            &format!("{url}/#/models/ui-model"),
            "/models/ui-model",
        )
        .await;
    assert_eq!(visit.texts("#aliases li").await, vec!["@champion → v1"]);
    let audit = visit.texts("#audit-table tbody tr").await;
    assert!(
        audit
            .iter()
            .any(|row| row.contains("set alias") && row.contains("champion")),
        "{audit:?}"
    );
    visit
        .page(
            "10-version",
            &format!("{url}/#/models/ui-model/versions/1"),
            "/models/ui-model/versions/1",
        )
        .await;
    assert_eq!(visit.count("#version-gates table.gates tbody tr").await, 2);
    assert!(visit.texts("#version-lineage").await.join(" ").contains(r1));

    // A filter with a syntax error: the message and a caret where it was typed.
    visit
        .page(
            "11-filter-error",
            &format!("{url}/experiments/{exp}?filter=metrics.loss+%3E%3E+1"),
            &format!("/experiments/{exp}"),
        )
        .await;
    assert_eq!(
        visit.texts(".filter-error pre.caret").await,
        vec!["metrics.loss >> 1\n              ^"]
    );
    assert_eq!(visit.count("input#filter[aria-invalid=true]").await, 1);
    visit
        .page(
            "12-filter",
            &format!("{url}/experiments/{exp}?filter=params.model+%3D+%27rf%27"),
            &format!("/experiments/{exp}"),
        )
        .await;
    assert_eq!(
        visit.texts("#runs-table td.name a").await,
        vec![format!("{XSS}run-1")]
    );

    // In print, the run page drops the navigation bar and the forms.
    browser
        .cdp("Emulation.setEmulatedMedia", json!({"media": "print"}))
        .await;
    visit
        .page(
            "13-run-print",
            &format!("{url}/experiments/{exp}/runs/{r1}"),
            &format!("/experiments/{exp}/runs/{r1}"),
        )
        .await;
    assert_eq!(
        browser
            .run(
                "return ['header.top', 'form.chart-choice'].map(s => getComputedStyle(document.querySelector(s)).display);",
                json!([])
            )
            .await,
        json!(["none", "none"])
    );
    browser
        .cdp("Emulation.setEmulatedMedia", json!({"media": ""}))
        .await;

    assert!(
        visit.problems.is_empty(),
        "problems seen in the browser:\n{}",
        visit.problems.join("\n")
    );
    browser.quit().await;
}
