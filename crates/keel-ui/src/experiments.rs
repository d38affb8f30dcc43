//! The experiment list (`/`, also the hash router's landing page) and an
//! experiment's runs table (`/experiments/{id}`): filter in MLflow's search
//! grammar, sort, chosen param/metric/tag columns, server-side paging, and
//! run selection for the compare page.

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use keel_core::{ErrorCode, Run, ViewType, page_token};
use keel_server::AppState;
use keel_server::auth::Caller;
use keel_store::filter::{EntityKind, Identifier, parse_filter_located};
use maud::{Markup, html};

use crate::html::{self, PageResult};
use crate::query::Query;
use crate::{MAX_PAGE_ROWS, access};

/// Rows per page unless `?n=` says otherwise.
const DEFAULT_PAGE_ROWS: i64 = 100;
/// Columns offered by default: this many metrics and params seen on the page.
const DEFAULT_COLUMNS: usize = 6;

pub async fn home(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> PageResult {
    let page = state
        .store
        .search_experiments(
            ViewType::ActiveOnly,
            1000,
            None,
            &["last_update_time DESC".to_string()],
            None,
        )
        .await?;
    let mut experiments = Vec::with_capacity(page.items.len());
    for experiment in page.items {
        if access::may_read_experiment(&state, &caller, &experiment.experiment_id).await? {
            experiments.push(experiment);
        }
    }
    let body = html! {
        h1 { "Experiments" }
        p.muted #route-note hidden {}
        @if experiments.is_empty() {
            p { "No experiments yet. Log a run with the MLflow client (" code { "MLFLOW_TRACKING_URI=http://this-server" } ") or run " code { "keel run" } "." }
        } @else {
            table.list {
                thead { tr { th { "Name" } th { "ID" } th { "Last change" } th { "Created" } th { "Tags" } } }
                tbody {
                    @for e in &experiments {
                        tr {
                            td { a href=(html::experiment_url(&e.experiment_id)) { (e.name) } }
                            td.mono { (e.experiment_id) }
                            td { (html::time_cell(e.last_update_time)) }
                            td { (html::time_cell(e.creation_time)) }
                            td.tags {
                                @for tag in e.tags.iter().filter(|t| !t.key.starts_with("mlflow.")).take(8) {
                                    span.tag { (tag.key) "=" (html::short(&tag.value, 40)) }
                                }
                            }
                        }
                    }
                }
            }
            @if page.next_page_token.is_some() {
                p.muted { "Showing the 1,000 most recently changed experiments." }
            }
        }
    };
    Ok(html::page("Experiments", &[], body).into_response())
}

/// A chosen table column: `params.alpha`, `metrics.rmse`, `tags.team`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    kind: Kind,
    key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Metric,
    Param,
    Tag,
}

impl Column {
    fn parse(text: &str) -> Option<Column> {
        let (prefix, key) = text.split_once('.')?;
        let kind = match prefix {
            "metrics" => Kind::Metric,
            "params" => Kind::Param,
            "tags" => Kind::Tag,
            _ => return None,
        };
        (!key.is_empty()).then(|| Column {
            kind,
            key: key.to_string(),
        })
    }

    /// The form value (`metrics.rmse`).
    fn name(&self) -> String {
        let prefix = match self.kind {
            Kind::Metric => "metrics",
            Kind::Param => "params",
            Kind::Tag => "tags",
        };
        format!("{prefix}.{}", self.key)
    }

    /// A header: the kind small above the key.
    fn label(&self) -> Markup {
        let kind = match self.kind {
            Kind::Metric => "metric",
            Kind::Param => "param",
            Kind::Tag => "tag",
        };
        html! { span.kind { (kind) } (self.key) }
    }

    /// The identifier in the search grammar (quoted as the grammar needs).
    fn identifier(&self) -> String {
        Identifier {
            kind: match self.kind {
                Kind::Metric => EntityKind::Metric,
                Kind::Param => EntityKind::Param,
                Kind::Tag => EntityKind::Tag,
            },
            key: self.key.clone(),
        }
        .to_string()
    }

    fn cell(&self, run: &Run) -> Markup {
        match self.kind {
            Kind::Metric => match run.data.metrics.iter().find(|m| m.key == self.key) {
                Some(m) => {
                    html! { td.num title=(format!("step {}", m.step)) { (html::number(m.value)) } }
                }
                None => html! { td.missing { "–" } },
            },
            Kind::Param => match run.data.params.iter().find(|p| p.key == self.key) {
                Some(p) => html! { td.text title=(p.value) { (html::short(&p.value, 24)) } },
                None => html! { td.missing { "–" } },
            },
            Kind::Tag => match run.data.tags.iter().find(|t| t.key == self.key) {
                Some(t) => html! { td.text title=(t.value) { (html::short(&t.value, 24)) } },
                None => html! { td.missing { "–" } },
            },
        }
    }
}

/// Where the table stands: everything a link on the page must carry along.
struct View {
    experiment_id: String,
    filter: String,
    order: String,
    view: &'static str,
    rows: i64,
    columns: Vec<Column>,
}

impl View {
    /// This view's URL with another order and offset.
    fn url(&self, order: &str, offset: u64) -> String {
        let mut url = format!("{}?", html::experiment_url(&self.experiment_id));
        let mut push = |key: &str, value: &str| {
            url.push_str(key);
            url.push('=');
            url.push_str(&html::query_value(value));
            url.push('&');
        };
        if !self.filter.is_empty() {
            push("filter", &self.filter);
        }
        if !order.is_empty() {
            push("order", order);
        }
        if self.view != "active" {
            push("view", self.view);
        }
        if self.rows != DEFAULT_PAGE_ROWS {
            push("n", &self.rows.to_string());
        }
        for column in &self.columns {
            push("col", &column.name());
        }
        if offset > 0 {
            push("offset", &offset.to_string());
        }
        url.trim_end_matches(['&', '?']).to_string()
    }

    /// A sortable header: clicking sorts by `identifier`, descending first,
    /// then ascending.
    fn header(&self, label: Markup, identifier: &str) -> Markup {
        let desc = format!("{identifier} DESC");
        let asc = format!("{identifier} ASC");
        let (next, mark) = if self.order == desc {
            (asc, " ▼")
        } else if self.order == asc {
            (desc, " ▲")
        } else {
            (desc, "")
        };
        html! { th { a href=(self.url(&next, 0)) title={ "Sort by " (identifier) } { (label) (mark) } } }
    }
}

/// A filter the store refused: its message and, for a syntax error, where.
struct FilterError {
    message: String,
    position: Option<usize>,
}

pub async fn runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(experiment_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let experiment = state.store.get_experiment(&experiment_id).await?;
    access::check_experiment(&state, &caller, &experiment.experiment_id).await?;
    let query = Query::parse(raw.as_deref());
    let (view_name, view_type) = match query.get("view") {
        Some("deleted") => ("deleted", ViewType::DeletedOnly),
        Some("all") => ("all", ViewType::All),
        _ => ("active", ViewType::ActiveOnly),
    };
    let rows = query
        .number::<i64>("n")
        .unwrap_or(DEFAULT_PAGE_ROWS)
        .clamp(1, MAX_PAGE_ROWS);
    let offset = query.number::<u64>("offset").unwrap_or(0);
    let mut view = View {
        experiment_id: experiment.experiment_id.clone(),
        filter: query.get("filter").unwrap_or("").trim().to_string(),
        order: query.get("order").unwrap_or("").trim().to_string(),
        view: view_name,
        rows,
        columns: query.all("col").filter_map(Column::parse).collect(),
    };
    let order_by: Vec<String> = if view.order.is_empty() {
        Vec::new()
    } else {
        vec![view.order.clone()]
    };
    let token = (offset > 0).then(|| page_token::encode(offset));
    let searched = state
        .store
        .search_runs(
            std::slice::from_ref(&experiment.experiment_id),
            Some(&view.filter),
            view_type,
            rows,
            &order_by,
            token.as_deref(),
        )
        .await;
    let (runs, has_next, error) = match searched {
        Ok(page) => (page.items, page.next_page_token.is_some(), None),
        Err(error) if error.code != ErrorCode::InternalError => {
            let position = parse_filter_located(&view.filter)
                .err()
                .and_then(|(_, at)| at);
            let message = error.message;
            (Vec::new(), false, Some(FilterError { message, position }))
        }
        Err(error) => return Err(error.into()),
    };
    let total = state
        .store
        .count_runs(&experiment.experiment_id, view_type)
        .await?;

    // Keys seen on this page, for the column chooser and the default columns.
    let mut metric_keys = BTreeSet::new();
    let mut param_keys = BTreeSet::new();
    let mut tag_keys = BTreeSet::new();
    for run in &runs {
        metric_keys.extend(run.data.metrics.iter().map(|m| m.key.as_str()));
        param_keys.extend(run.data.params.iter().map(|p| p.key.as_str()));
        tag_keys.extend(
            run.data
                .tags
                .iter()
                .map(|t| t.key.as_str())
                .filter(|k| !k.starts_with("mlflow.")),
        );
    }
    let chosen_by_user = !view.columns.is_empty();
    if !chosen_by_user {
        let metrics = metric_keys
            .iter()
            .filter(|k| !k.starts_with("stage.") && **k != "pipeline.seconds")
            .take(DEFAULT_COLUMNS);
        view.columns.extend(metrics.map(|k| Column {
            kind: Kind::Metric,
            key: k.to_string(),
        }));
        view.columns
            .extend(param_keys.iter().take(DEFAULT_COLUMNS).map(|k| Column {
                kind: Kind::Param,
                key: k.to_string(),
            }));
    }
    let mut offered: BTreeSet<Column> = view.columns.iter().cloned().collect();
    for (kind, keys) in [
        (Kind::Metric, &metric_keys),
        (Kind::Param, &param_keys),
        (Kind::Tag, &tag_keys),
    ] {
        offered.extend(keys.iter().take(200).map(|k| Column {
            kind,
            key: k.to_string(),
        }));
    }

    let first = offset + 1;
    let last = offset + runs.len() as u64;
    let body = html! {
        h1 { (experiment.name) }
        p.meta {
            span { "ID " span.mono { (experiment.experiment_id) } }
            span { (format_count(total)) " " (if view_type == ViewType::DeletedOnly { "deleted runs" } else { "runs" }) }
            span { "artifacts " span.mono { (experiment.artifact_location) } }
        }
        form.search method="get" action=(html::experiment_url(&experiment.experiment_id)) {
            div.filter-row {
                label for="filter" { "Filter" }
                input #filter type="search" name="filter" value=(view.filter) spellcheck="false" autocomplete="off"
                    placeholder="metrics.rmse < 0.5 AND params.model = 'gbdt' AND tags.team = 'risk'"
                    aria-invalid=[error.as_ref().map(|_| "true")] aria-describedby="filter-help";
                select name="view" aria-label="Which runs" {
                    option value="active" selected[view.view == "active"] { "Active" }
                    option value="deleted" selected[view.view == "deleted"] { "Deleted" }
                    option value="all" selected[view.view == "all"] { "All" }
                }
                button type="submit" { "Search" }
            }
            @if let Some(error) = &error {
                div.filter-error #filter-help role="alert" {
                    @if let Some(at) = error.position {
                        pre.caret { (view.filter) "\n" (" ".repeat(at)) "^" }
                    }
                    p { (error.message) }
                }
            } @else {
                p.muted #filter-help { "MLflow's search syntax: " code { "metrics.acc > 0.9" } ", " code { "params.model = 'rf'" } ", " code { "tags.`mlflow.runName` LIKE 'cv-%'" } ", " code { "attributes.status = 'FINISHED'" } ", joined with AND / OR." }
            }
            @if !view.order.is_empty() { input type="hidden" name="order" value=(view.order); }
            @if view.rows != DEFAULT_PAGE_ROWS { input type="hidden" name="n" value=(view.rows); }
            details.columns {
                summary { "Columns (" (view.columns.len()) ")" }
                div.column-choices {
                    @for column in &offered {
                        label { input type="checkbox" name="col" value=(column.name()) checked[view.columns.contains(column)]; " " (column.name()) }
                    }
                }
                button type="submit" { "Show columns" }
            }
        }
        form #compare-form method="get" action="/compare-runs" {
            input type="hidden" name="experiments" value=(experiment.experiment_id);
            div.table-actions {
                button #compare-button type="submit" { "Compare selected runs" }
                span.muted {
                    @if runs.is_empty() { "No runs" } @else { "Runs " (format_count(first as i64)) "–" (format_count(last as i64)) }
                    @if error.is_none() && view.filter.is_empty() { " of " (format_count(total)) }
                }
                span.pager {
                    @if offset > 0 {
                        a rel="prev" href=(view.url(&view.order, offset.saturating_sub(rows as u64))) { "← Newer" }
                    }
                    @if has_next {
                        a rel="next" href=(view.url(&view.order, offset + rows as u64)) { "Older →" }
                    }
                }
            }
            div.table-wrap {
                table.runs #runs-table {
                    thead {
                        tr {
                            th.select { input type="checkbox" #select-all aria-label="Select all runs on this page"; }
                            (view.header(html! { "Run" }, "attributes.run_name"))
                            (view.header(html! { "Status" }, "attributes.status"))
                            (view.header(html! { "Started" }, "attributes.start_time"))
                            th { "Duration" }
                            (view.header(html! { "User" }, "attributes.user_id"))
                            th { "Commit" }
                            th { "Datasets" }
                            @for column in &view.columns {
                                (view.header(column.label(), &column.identifier()))
                            }
                        }
                    }
                    tbody {
                        @for run in &runs {
                            (run_row(&experiment.experiment_id, run, &view.columns))
                        }
                    }
                }
            }
        }
    };
    let crumbs = [
        ("Experiments".to_string(), "/".to_string()),
        (experiment.name.clone(), String::new()),
    ];
    Ok(html::page(&experiment.name, &crumbs, body).into_response())
}

fn run_row(experiment_id: &str, run: &Run, columns: &[Column]) -> Markup {
    let info = &run.info;
    let tag = |key: &str| {
        run.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    };
    let commit = tag("mlflow.source.git.commit");
    let dirty = tag("keel.git.dirty") == Some("true");
    let name = if info.run_name.is_empty() {
        info.run_id.as_str()
    } else {
        info.run_name.as_str()
    };
    html! {
        tr {
            td.select { input type="checkbox" name="runs" value=(info.run_id) aria-label={ "Select " (name) }; }
            td.name { a href=(html::run_url(experiment_id, &info.run_id)) title=(info.run_id) { (html::short(name, 48)) } }
            td { (html::status_badge(info.status)) }
            td { (html::time_cell(info.start_time)) }
            td.num { (html::run_duration(info.start_time, info.end_time, info.status)) }
            td { (html::short(&info.user_id, 24)) }
            td.mono {
                @if let Some(commit) = commit {
                    span title=(commit) { (html::short(commit, 8)) }
                    @if dirty { span.dirty title="uncommitted changes when the run was made" { "*" } }
                } @else { span.missing { "–" } }
            }
            td.datasets {
                @for input in run.dataset_inputs.iter().take(3) {
                    span.tag title={ (input.dataset.name) " " (input.dataset.digest) } { (html::short(&input.dataset.name, 24)) }
                }
                @if run.dataset_inputs.len() > 3 { span.muted { "+" (run.dataset_inputs.len() - 3) } }
            }
            @for column in columns { (column.cell(run)) }
        }
    }
}

/// `100000` as `100,000`.
pub fn format_count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_quote_keys() {
        let column = Column::parse("metrics.val loss").unwrap();
        assert_eq!(column.name(), "metrics.val loss");
        assert_eq!(column.identifier(), "metrics.`val loss`");
        assert_eq!(
            Column::parse("tags.mlflow.user").unwrap().key,
            "mlflow.user"
        );
        assert!(Column::parse("attributes.x").is_none());
        assert!(Column::parse("metrics.").is_none());
        assert_eq!(format_count(100_000), "100,000");
        assert_eq!(format_count(7), "7");
    }

    #[test]
    fn links_keep_the_view() {
        let view = View {
            experiment_id: "3".into(),
            filter: "params.a = 'x y'".into(),
            order: String::new(),
            view: "active",
            rows: DEFAULT_PAGE_ROWS,
            columns: vec![Column::parse("metrics.rmse").unwrap()],
        };
        assert_eq!(
            view.url("metrics.`rmse` DESC", 100),
            "/experiments/3?filter=params.a+%3D+%27x+y%27&order=metrics.%60rmse%60+DESC&col=metrics.rmse&offset=100"
        );
    }
}
