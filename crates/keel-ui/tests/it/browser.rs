//! The links the MLflow client prints, opened in headless Chromium as a
//! person would: the official client logs runs (params, step metrics, a CSV,
//! an image, an HTML report; `<script>` in a run name, a tag and a param) and
//! registers a model with gate results and an alias; each page is checked
//! for what a reader would see, for horizontal scrolling at 1280 px, for
//! script injection and for JavaScript console errors, and photographed
//! under `target/ui-screenshots/`. Then the registry's buttons (a promote
//! refused by the gates, then forced with a reason, then rolled back), the
//! monitoring pages, and, on a server with users, the login form, a promote
//! refused for want of MANAGE, the CSRF check and logout.

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
        self.console_allowing(name, None).await;
    }

    /// [`Self::console`], but a refusal the test caused on purpose (the
    /// browser logs a 4xx answer as an error) is no problem: entries that
    /// say `Failed to load resource: … status of {status}` are allowed.
    async fn console_allowing(&mut self, name: &str, status: Option<u16>) {
        for (level, message) in self.browser.console().await {
            let expected = status.is_some_and(|status| {
                message.contains("Failed to load resource")
                    && message.contains(&format!("status of {status}"))
            });
            if level == "SEVERE" && !expected {
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
    record_verdicts(&server).await;

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

    logged_model(&mut visit, url, exp, r1).await;
    registry_buttons(&mut visit, url).await;
    monitoring_pages(&mut visit, url).await;

    assert!(
        visit.problems.is_empty(),
        "problems seen in the browser:\n{}",
        visit.problems.join("\n")
    );
    browser.quit().await;
}

/// Six evaluations of `keel monitor watch` for ui-model, an hour apart, in
/// the shape the watcher records: the third, fourth and sixth drifted; each
/// with a joint (multivariate) test and the watcher's state (active alerts).
async fn record_verdicts(server: &util::Server) {
    for i in 0..6_i64 {
        let drifted = [2, 3, 5].contains(&i);
        let columns = if drifted {
            json!([{"column": "age", "effect_size": 0.2 + 0.05 * i as f64}, {"column": "income", "effect_size": 0.15}])
        } else {
            json!([])
        };
        let summary = json!({
            "rule": "drifted share >= 0.5",
            "drifted_columns": columns,
            "current_rows": 400 + 40 * i,
            "alerts": if drifted { json!(["drift:age"]) } else { json!([]) },
            "action_due": false,
            "multivariate": {
                "drifted": i >= 4,
                "error_change": 0.05 * i as f64,
                "p_value": if i >= 4 { 0.001 } else { 0.4 },
                "drivers": ["age", "income"],
                "pairs": [],
            },
            "state": {
                "active_alerts": if drifted { json!({"drift:age": "age drifted (effect 0.45)"}) } else { json!({}) },
                "last_action_ms": null,
            },
            // keel-monitor's service::Verdict: histograms, findings, windows
            // (labels for the first five; the estimate for all six).
            "features": [
                {"column": "age", "kind": "numeric", "status": "drift", "drifted": drifted,
                 "effect_size": 0.2 + 0.05 * i as f64, "threshold": 0.1,
                 "bins": [["[-inf, 30)", 0.3, 0.1], ["[30, 45)", 0.4, 0.3], ["[45, 60)", 0.2, 0.4], ["[60, inf)", 0.1, 0.2]]},
                {"column": "income", "kind": "numeric", "status": "no_drift", "drifted": false,
                 "effect_size": 0.05, "threshold": 0.1,
                 "bins": [["[-inf, 1000)", 0.5, 0.45], ["[1000, 5000)", 0.3, 0.35], ["[5000, inf)", 0.2, 0.2]]},
            ],
            "quality": if drifted { json!([{"kind": "out_of_range", "column": "age", "message": "4.0% of values above the training maximum"}]) } else { json!([]) },
            "windows": (0..=i).map(|w| json!({
                "start_ms": 1_790_000_000_000 + w * 3_600_000,
                "rows": 400 + 40 * w,
                "drifted": ([2, 3, 5].contains(&w)),
                "metric": if w < 5 { json!("accuracy") } else { json!(null) },
                "live": if w < 5 { json!(0.9 - 0.05 * w as f64) } else { json!(null) },
                "labeled": if w < 5 { json!(300) } else { json!(null) },
                "estimated_accuracy": 0.88 - 0.04 * w as f64,
            })).collect::<Vec<_>>(),
        });
        server
            .state
            .store
            .record_verdict(
                &keel_store::NewVerdict {
                    model: "ui-model".into(),
                    window_start: Some(1_790_000_000_000 + i * 3_600_000),
                    rows: 400 + 40 * i,
                    drifted,
                    verdict: summary.to_string(),
                },
                "watcher",
            )
            .await
            .expect("record verdict");
    }
}

/// MLflow 3's "View Logged Model at …/#/experiments/1/models/m-…" link.
async fn logged_model(visit: &mut Visit<'_>, url: &str, exp: &str, run_id: &str) {
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/api/2.0/mlflow/logged-models"))
        .json(
            &json!({"experiment_id": exp, "name": "clf", "source_run_id": run_id,
                      "params": [{"key": "C", "value": "0.5"}]}),
        )
        .send()
        .await
        .expect("create logged model")
        .json()
        .await
        .expect("logged model answer");
    let model_id = created["model"]["info"]["model_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no model id in {created}"))
        .to_string();
    visit
        .page(
            "13b-logged-model",
            &format!("{url}/#/experiments/{exp}/models/{model_id}"),
            &format!("/experiments/{exp}/models/{model_id}"),
        )
        .await;
    assert_eq!(
        visit.texts("h1").await[0].split_whitespace().next(),
        Some("clf")
    );
    assert!(
        visit.texts("dl.overview").await.join(" ").contains(run_id),
        "the source run is linked"
    );
    assert_eq!(
        visit.texts("#logged-model-params td").await,
        vec!["C", "0.5"]
    );
}

/// The number of points of each polyline matching `selector`.
async fn browser_points(browser: &Browser, selector: &str) -> serde_json::Value {
    browser
        .run(
            "return [...document.querySelectorAll(arguments[0])].map(p => p.getAttribute('points').split(' ').length);",
            json!([selector]),
        )
        .await
}

/// Fills the promote form (version, alias, reason, force) and presses it.
async fn press_promote(browser: &Browser, version: &str, alias: &str, reason: &str, force: bool) {
    browser
        .run(
            "document.getElementById('promote-version').value = arguments[0];
             document.getElementById('promote-alias').value = arguments[1];
             document.getElementById('promote-reason').value = arguments[2];
             document.getElementById('promote-force').checked = arguments[3];",
            json!([version, alias, reason, force]),
        )
        .await;
    browser.click("#promote-button").await;
}

async fn wait_loaded(browser: &Browser, what: &str, condition: &str) {
    browser
        .wait_for(
            what,
            &format!("return document.readyState === 'complete' && ({condition});"),
        )
        .await;
}

/// Promote on a version whose gates failed: refused with the store's reason;
/// forced with a reason: the alias moves and the audit timeline says so;
/// rolled back: the alias is where it was.
async fn registry_buttons(visit: &mut Visit<'_>, url: &str) {
    let browser = visit.browser;
    visit
        .page(
            "14-version-2",
            &format!("{url}/models/ui-model/versions/2"),
            "/models/ui-model/versions/2",
        )
        .await;
    browser.click("#promote-version-link").await;
    wait_loaded(
        browser,
        "the model page from the version's promote link",
        "location.pathname === '/models/ui-model'",
    )
    .await;
    assert_eq!(
        browser
            .run(
                "return document.getElementById('promote-version').value;",
                json!([])
            )
            .await,
        json!("2"),
        "the version page's link preselects its version"
    );
    visit.console("14-model-forms").await;
    assert_eq!(
        visit.count("#promote-form").await,
        1,
        "the open server's caller may promote"
    );
    press_promote(browser, "2", "champion", "", false).await;
    wait_loaded(
        browser,
        "the refusal",
        "document.getElementById('registry-error') !== null",
    )
    .await;
    let refusal = visit.texts("#registry-error").await.join(" ");
    assert!(
        refusal.contains("gates failed") && refusal.contains("version 2"),
        "{refusal}"
    );
    assert_eq!(
        visit.texts("#aliases li").await,
        vec!["@champion → v1"],
        "nothing moved"
    );
    assert_eq!(
        browser
            .run(
                "return document.getElementById('promote-version').value;",
                json!([])
            )
            .await,
        json!("2"),
        "the form keeps what was chosen"
    );
    browser
        .screenshot(&visit.shots.join("15-promote-refused.png"))
        .await;
    visit
        .console_allowing("15-promote-refused", Some(400))
        .await;

    press_promote(
        browser,
        "2",
        "champion",
        "verified by hand on the holdout",
        true,
    )
    .await;
    wait_loaded(
        browser,
        "the promotion",
        "location.search.includes('done=promote')",
    )
    .await;
    assert_eq!(visit.texts("#aliases li").await, vec!["@champion → v2"]);
    assert_eq!(
        visit.texts("#registry-done").await,
        vec!["Promoted: @champion now points at v2."]
    );
    let newest = visit.texts("#audit-table tbody tr:first-child td").await;
    assert!(
        newest.iter().any(|c| c == "set alias")
            && newest.iter().any(|c| c.contains("verified by hand")),
        "{newest:?}"
    );
    assert!(
        newest.iter().any(|c| c == "web UI"),
        "the cause names the UI: {newest:?}"
    );
    browser
        .screenshot(&visit.shots.join("16-promoted.png"))
        .await;
    visit.console("16-promoted").await;

    browser
        .run(
            "document.querySelector('form.rollback input[name=reason]').value = 'v2 worse live';",
            json!([]),
        )
        .await;
    browser.click("form.rollback button").await;
    wait_loaded(
        browser,
        "the rollback",
        "location.search.includes('done=rollback')",
    )
    .await;
    assert_eq!(visit.texts("#aliases li").await, vec!["@champion → v1"]);
    visit.console("17-rolled-back").await;
}

/// The monitoring overview and a model's page: verdicts, charts, the drift strip.
async fn monitoring_pages(visit: &mut Visit<'_>, url: &str) {
    visit
        .page("18-monitoring", &format!("{url}/monitoring"), "/monitoring")
        .await;
    let rows = visit.texts("#monitored-table tbody tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("ui-model") && rows[0].contains("drifted"),
        "{rows:?}"
    );
    visit
        .page(
            "19-monitoring-model",
            &format!("{url}/monitoring/ui-model"),
            "/monitoring/ui-model",
        )
        .await;
    assert_eq!(visit.count("#verdicts-table tbody tr").await, 6);
    assert_eq!(visit.texts("#newest-drifted .tag").await.len(), 2);
    assert_eq!(visit.texts("#newest-alerts .tag").await, vec!["drift:age"]);
    let joint = visit.texts("#newest-joint").await.join(" ");
    assert!(
        joint.contains("drifted") && joint.contains("0.25") && joint.contains("income"),
        "{joint}"
    );
    assert_eq!(
        visit.texts("#active-alerts li").await,
        vec!["drift:age age drifted (effect 0.45)"]
    );
    assert_eq!(
        browser_points(visit.browser, "#joint svg.chart polyline.series").await,
        json!([6]),
        "the joint drift over the six windows"
    );
    assert_eq!(
        visit.count("#effects svg.chart polyline.series").await,
        2,
        "a line per drifting feature"
    );
    assert_eq!(
        visit.count("#drift-strip td.drift").await,
        6,
        "3 evaluations × 2 features"
    );
    // Live accuracy from labels (five windows) beside the estimate (six).
    assert_eq!(
        browser_points(visit.browser, "#live svg.chart polyline.series").await,
        json!([5, 6])
    );
    let live = visit.texts("#newest-live").await.join(" ");
    assert!(live.contains("0.7 accuracy on 300 labelled rows"), "{live}");
    // Each feature's reference-vs-current histogram, and the findings.
    assert_eq!(
        visit.texts("#distributions figure.histogram strong").await,
        vec!["age", "income"]
    );
    assert_eq!(visit.count("#distributions svg rect.ref").await, 7);
    assert_eq!(visit.count("#distributions svg rect.cur").await, 7);
    assert_eq!(visit.count("#quality ul.findings li").await, 1);
    // The newest evaluation's own page: every feature, findings, windows.
    visit.browser.click("a#newest-report").await;
    visit
        .browser
        .wait_for(
            "the verdict page",
            "return location.pathname.includes('/verdicts/') && document.readyState === 'complete';",
        )
        .await;
    let path = visit
        .browser
        .run("return location.pathname;", json!([]))
        .await;
    let path = path.as_str().unwrap_or_default().to_string();
    visit
        .page("19b-monitoring-verdict", &format!("{url}{path}"), &path)
        .await;
    assert_eq!(visit.count("#windows-table tbody tr").await, 6);
    assert_eq!(visit.count("#distributions figure.histogram").await, 2);
    assert_eq!(
        visit.texts("#verdict-drifted .tag").await.len(),
        2,
        "the newest verdict drifted on age and income"
    );
    visit
        .page(
            "20-model-monitoring-link",
            &format!("{url}/models/ui-model"),
            "/models/ui-model",
        )
        .await;
    assert_eq!(visit.count("a#monitoring-link").await, 1);
    visit
        .page("20b-models-monitoring", &format!("{url}/models"), "/models")
        .await;
    assert_eq!(
        visit.texts("#models-table td.monitoring a").await,
        vec!["drifted"],
        "the models list shows the newest verdict"
    );
}

/// A server with users: a browser is sent to the login form (and back to
/// the page after), a wrong password is refused, a READ+EDIT user sees the
/// promote form but is refused on the protected alias for want of MANAGE
/// and sees no rollback button, a POST without the CSRF token is refused,
/// the session cookie is out of the page's reach, and logout ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_permissions_and_logout_in_chromium() {
    let Some((driver, chromium)) = webdriver::find_browser() else {
        return;
    };
    let Some(python) = util::python() else {
        return;
    };
    let server = util::start_server_with_users().await;
    util::run_python_as(
        &python,
        "ui_fixture.py",
        &server.url,
        Some(("admin", util::ADMIN_PASSWORD)),
    )
    .await;
    let store = &server.state.store;
    let hash =
        keel_server::auth::secret::hash_password_with("alice-password-1", 1_000).expect("hash");
    store
        .create_user("alice", &hash, false)
        .await
        .expect("alice");
    store
        .grant(
            "alice",
            keel_core::access::ResourceType::RegisteredModel,
            "ui-model",
            keel_core::access::Permission::Edit,
        )
        .await
        .expect("grant");
    let url = &server.url;
    let browser = Browser::start(&driver, &chromium).await;
    let mut visit = Visit {
        browser: &browser,
        shots: screenshot_dir(),
        problems: Vec::new(),
    };

    // The link the client prints, without a session: the login form, which
    // will come back to the model page.
    browser.open(&format!("{url}/#/models/ui-model")).await;
    wait_loaded(
        &browser,
        "the login form, to come back to the model",
        "location.pathname === '/login' && new URLSearchParams(location.search).get('next') === '/models/ui-model'",
    )
    .await;
    let href = browser.run("return location.href;", json!([])).await;
    visit
        .page("21-login", href.as_str().unwrap_or_default(), "/login")
        .await;
    assert_eq!(visit.count("header.top #user").await, 0);

    let login = |user: &'static str, password: &'static str| {
        let browser = &browser;
        async move {
            browser
                .run(
                    "document.getElementById('username').value = arguments[0];
                     document.getElementById('password').value = arguments[1];",
                    json!([user, password]),
                )
                .await;
            browser.click("#login-button").await;
        }
    };
    login("alice", "not-her-password").await;
    wait_loaded(
        &browser,
        "the login refusal",
        "document.getElementById('login-error') !== null",
    )
    .await;
    assert!(
        visit
            .texts("#login-error")
            .await
            .join(" ")
            .contains("Wrong user name or password")
    );
    visit.console_allowing("21-login-refused", Some(401)).await;

    login("alice", "alice-password-1").await;
    wait_loaded(
        &browser,
        "the model page after login",
        "location.pathname === '/models/ui-model'",
    )
    .await;
    assert_eq!(visit.texts("header.top #user").await, vec!["alice"]);
    assert_eq!(
        browser.run("return document.cookie;", json!([])).await,
        json!(""),
        "the session cookie is HttpOnly"
    );
    assert_eq!(visit.count("#promote-form").await, 1, "alice holds EDIT");
    assert_eq!(
        visit.count("form.rollback").await,
        0,
        "rollback needs MANAGE"
    );
    browser
        .screenshot(&visit.shots.join("22-logged-in.png"))
        .await;
    visit.console("22-logged-in").await;

    // A protected alias needs MANAGE: refused, whatever the gates say.
    press_promote(&browser, "1", "production", "", false).await;
    wait_loaded(
        &browser,
        "the permission refusal",
        "document.getElementById('registry-error') !== null",
    )
    .await;
    let refusal = visit.texts("#registry-error").await.join(" ");
    assert!(
        refusal.contains("needs MANAGE") && refusal.contains("alice has EDIT"),
        "{refusal}"
    );
    browser
        .screenshot(&visit.shots.join("23-promote-not-allowed.png"))
        .await;
    visit
        .console_allowing("23-promote-not-allowed", Some(403))
        .await;

    // A non-protected alias with passed gates: allowed.
    press_promote(&browser, "1", "staging", "", false).await;
    wait_loaded(
        &browser,
        "alice's promotion",
        "location.search.includes('done=promote')",
    )
    .await;
    let aliases = visit.texts("#aliases li").await;
    assert!(
        aliases.contains(&"@staging → v1".to_string()),
        "{aliases:?}"
    );
    let newest = visit.texts("#audit-table tbody tr:first-child td").await;
    assert!(
        newest.iter().any(|c| c == "alice"),
        "the audit row names alice: {newest:?}"
    );
    visit.console("24-alice-promoted").await;

    // A state-changing request without the CSRF token is refused.
    let status = browser
        .run(
            "return fetch('/models/ui-model/promote', {method: 'POST',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                body: 'version=1&alias=staging2'}).then(r => r.status);",
            json!([]),
        )
        .await;
    assert_eq!(status, json!(403));
    visit.console_allowing("24-csrf", Some(403)).await;

    // Logout ends the session: the next page asks for the login again.
    browser.click("#logout").await;
    wait_loaded(
        &browser,
        "the login page after logout",
        "location.pathname === '/login'",
    )
    .await;
    browser.open(&format!("{url}/models/ui-model")).await;
    wait_loaded(
        &browser,
        "login required again",
        "location.pathname === '/login'",
    )
    .await;
    visit.console("25-logged-out").await;

    assert!(
        visit.problems.is_empty(),
        "problems seen in the browser:\n{}",
        visit.problems.join("\n")
    );
    browser.quit().await;
}
