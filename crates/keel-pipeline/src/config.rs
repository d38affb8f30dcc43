//! `keel.yaml`, read once ([`KeelYaml`]): its top-level sections are
//! checked here; the pipeline sections (`params`, `stages`, `gates`,
//! `register`) become a [`Pipeline`], the `monitor` section keel-monitor's
//! typed `MonitorConfig`. Also `params.yaml` flattened to dotted keys, and
//! `${key}` interpolation. Every error names `file:line:column`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use keel_monitor::config::MonitorConfig;
use keel_yaml::{self as yaml, Key, Node, Pos, Value, YamlError};

use crate::error::{PipelineError, Result};

/// The pipeline file's default name.
pub const PIPELINE_FILE: &str = "keel.yaml";
/// The params file's default name.
pub const DEFAULT_PARAMS: &str = "params.yaml";

/// A project-relative path as written in keel.yaml, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRef {
    pub pos: Pos,
    /// Normalised: `/`-separated, no `./`, no trailing `/`.
    pub path: String,
}

/// What a stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A shell command (`sh -c`), with `${key}` params interpolated.
    Cmd { template: String, command: String },
    /// The built-in data validation step.
    Validate { data: PathRef, schema: PathRef },
    /// The built-in feature validation step: new training data against a
    /// reference profile (keel-monitor's `validate_training_data`).
    FeatureCheck {
        data: PathRef,
        reference: Reference,
        /// The label column (its class balance is compared; it is not a feature).
        label: Option<String>,
        /// keel-monitor's `ValidationConfig` fields, as JSON (defaults for the rest).
        thresholds: serde_json::Value,
    },
}

/// Which profile a feature check compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// The `profile.json` stored with the model version holding `@production`
    /// (fetched by `keel run` before the stages start).
    Production,
    /// A profile JSON file in the project.
    File(PathRef),
}

/// One stage of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub pos: Pos,
    pub action: Action,
    /// Inputs: files or directories (the validate step's data and schema included).
    pub deps: Vec<PathRef>,
    /// Outputs the stage must write.
    pub outs: Vec<PathRef>,
    /// Metrics JSON files the stage writes (outputs too).
    pub metrics: Vec<PathRef>,
    /// Params the stage depends on: declared keys plus the keys interpolated in `cmd`, with values.
    pub params: BTreeMap<String, String>,
}

impl Stage {
    /// The data a built-in check step (validate, feature_check) examines.
    pub fn checked_data(&self) -> Option<&PathRef> {
        match &self.action {
            Action::Validate { data, .. } | Action::FeatureCheck { data, .. } => Some(data),
            Action::Cmd { .. } => None,
        }
    }

    /// The command as recorded in the lock file.
    pub fn command_text(&self) -> String {
        match &self.action {
            Action::Cmd { command, .. } => command.clone(),
            Action::Validate { data, schema } => {
                format!("keel validate {} --schema {}", data.path, schema.path)
            }
            Action::FeatureCheck {
                data,
                reference,
                label,
                thresholds,
            } => {
                let reference = match reference {
                    Reference::Production => "production".to_string(),
                    Reference::File(path) => path.path.clone(),
                };
                let label = label
                    .as_deref()
                    .map(|label| format!(" --label {label}"))
                    .unwrap_or_default();
                format!(
                    "keel feature-check {} --reference {reference}{label} --thresholds {thresholds}",
                    data.path
                )
            }
        }
    }

    /// Outputs and metrics files.
    pub fn produced(&self) -> impl Iterator<Item = &PathRef> {
        self.outs.iter().chain(&self.metrics)
    }
}

/// One gate expression as written.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSpec {
    pub pos: Pos,
    pub expression: String,
}

/// The `register:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub pos: Pos,
    /// Registered model name.
    pub model: String,
    /// The model folder (or file) the run produced.
    pub path: PathRef,
    /// Alias to set when every gate passes.
    pub alias: Option<String>,
    /// Annotated git tags in GTO's format for registrations and alias
    /// moves (`git_tags: false` turns them off; default on in a repository).
    pub git_tags: bool,
    /// Only a run on this branch moves the alias (`on_branch: main`); on
    /// other branches the version is registered without it.
    pub on_branch: Option<String>,
}

/// keel.yaml's top-level sections.
pub const SECTIONS: &[&str] = &["params", "stages", "gates", "register", "monitor"];

/// keel.yaml parsed once: the positioned document, top-level keys checked.
/// The pipeline ([`KeelYaml::pipeline`]) and the monitoring policy
/// ([`KeelYaml::monitor`]) are typed sections of it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeelYaml {
    /// The file, as given (errors name it).
    pub file: PathBuf,
    doc: Node,
}

impl KeelYaml {
    /// Reads and parses `file`.
    pub fn read(file: &Path) -> Result<KeelYaml> {
        let text =
            std::fs::read_to_string(file).map_err(|source| PipelineError::io(file, source))?;
        Self::parse(&text, file)
    }

    /// Parses keel.yaml `text` read from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<KeelYaml> {
        let doc = yaml::parse(text, file)?;
        yaml::only_keys(doc.as_map(file)?, SECTIONS, file, "keel.yaml")?;
        Ok(KeelYaml {
            file: file.to_path_buf(),
            doc,
        })
    }

    fn section(&self, name: &str) -> Option<&Node> {
        self.doc
            .as_map(&self.file)
            .ok()
            .and_then(|top| yaml::get(top, name))
    }

    /// The `monitor:` section (defaults when absent); unknown fields are
    /// errors at their line and column.
    pub fn monitor(&self) -> Result<MonitorConfig> {
        Ok(match self.section("monitor") {
            Some(node) => MonitorConfig::from_node(node, &self.file)?,
            None => MonitorConfig::default(),
        })
    }
}

/// A parsed keel.yaml with its params resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The folder holding keel.yaml: commands run here and paths are relative to it.
    pub root: PathBuf,
    /// keel.yaml itself.
    pub file: PathBuf,
    /// The params file, relative to the root.
    pub params_file: String,
    /// Every param of the params file, flattened to dotted keys.
    pub all_params: BTreeMap<String, String>,
    /// Stages in document order.
    pub stages: Vec<Stage>,
    pub gates: Vec<GateSpec>,
    pub register: Option<Register>,
    /// The `monitor:` section (checked with the rest, so `keel run` refuses
    /// its typos too).
    pub monitor: MonitorConfig,
}

impl Pipeline {
    /// Reads `file` (keel.yaml) and its params file.
    pub fn load(file: &Path) -> Result<Pipeline> {
        let text =
            std::fs::read_to_string(file).map_err(|source| PipelineError::io(file, source))?;
        let root = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let root = root
            .canonicalize()
            .map_err(|source| PipelineError::io(&root, source))?;
        Self::parse(&text, file, &root, |params_file| {
            let path = root.join(params_file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some((path, text))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(PipelineError::io(&path, source)),
            }
        })
    }

    /// Parses keel.yaml `text`; `read_params` returns the params file's text (None when absent).
    pub fn parse(
        text: &str,
        file: &Path,
        root: &Path,
        read_params: impl FnOnce(&str) -> Result<Option<(PathBuf, String)>>,
    ) -> Result<Pipeline> {
        let keel = KeelYaml::parse(text, file)?;
        let doc = &keel.doc;
        let top = doc.as_map(file)?;
        let monitor = keel.monitor()?;

        let (params_file, params_pos) = match yaml::get(top, "params") {
            Some(node) => (node.as_string(file)?, Some(node.pos)),
            None => (DEFAULT_PARAMS.to_string(), None),
        };
        let all_params = match read_params(&params_file)? {
            Some((path, text)) => {
                let mut out = BTreeMap::new();
                flatten("", &yaml::parse(&text, &path)?, &path, &mut out)?;
                out
            }
            None => {
                if let Some(pos) = params_pos {
                    return Err(YamlError::new(
                        file,
                        pos,
                        format!("params file `{params_file}` does not exist"),
                    )
                    .into());
                }
                BTreeMap::new()
            }
        };

        let stages_node = yaml::get(top, "stages")
            .ok_or_else(|| YamlError::new(file, doc.pos, "keel.yaml has no `stages:` section"))?;
        let mut stages = Vec::new();
        for (key, node) in stages_node.as_map(file)? {
            stages.push(parse_stage(key, node, file, &all_params)?);
        }
        if stages.is_empty() {
            return Err(YamlError::new(file, stages_node.pos, "`stages:` is empty").into());
        }

        let mut gates = Vec::new();
        if let Some(node) = yaml::get(top, "gates") {
            for (pos, expression) in node.as_strings(file)? {
                crate::gates::Expr::parse(&expression).map_err(|message| {
                    YamlError::new(file, pos, format!("gate `{expression}`: {message}"))
                })?;
                gates.push(GateSpec { pos, expression });
            }
        }

        let register = match yaml::get(top, "register") {
            Some(node) => {
                let entries = node.as_map(file)?;
                yaml::only_keys(
                    entries,
                    &["model", "path", "alias", "git_tags", "on_branch"],
                    file,
                    "register",
                )?;
                let model = yaml::get(entries, "model")
                    .ok_or_else(|| {
                        YamlError::new(
                            file,
                            node.pos,
                            "register needs `model:` (the registered model name)",
                        )
                    })?
                    .as_string(file)?;
                let path_node = yaml::get(entries, "path").ok_or_else(|| {
                    YamlError::new(file, node.pos, "register needs `path:` (the model folder)")
                })?;
                let path = path_ref(path_node.pos, &path_node.as_string(file)?, file)?;
                let alias = yaml::get(entries, "alias")
                    .map(|n| n.as_string(file))
                    .transpose()?;
                let git_tags = yaml::get(entries, "git_tags")
                    .map(|n| n.as_bool(file))
                    .transpose()?
                    .unwrap_or(true);
                let on_branch = yaml::get(entries, "on_branch")
                    .map(|n| n.as_string(file))
                    .transpose()?;
                Some(Register {
                    pos: node.pos,
                    model,
                    path,
                    alias,
                    git_tags,
                    on_branch,
                })
            }
            None => None,
        };

        Ok(Pipeline {
            root: root.to_path_buf(),
            file: file.to_path_buf(),
            params_file,
            all_params,
            stages,
            gates,
            register,
            monitor,
        })
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.name == name)
    }
}

const STAGE_FIELDS: &[&str] = &[
    "cmd",
    "validate",
    "feature_check",
    "deps",
    "outs",
    "params",
    "metrics",
    "desc",
];

fn parse_stage(
    key: &Key,
    node: &Node,
    file: &Path,
    all_params: &BTreeMap<String, String>,
) -> Result<Stage> {
    let name = key.name.clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        return Err(YamlError::new(
            file,
            key.pos,
            format!("stage name `{name}`: use letters, digits, `_` and `-`"),
        )
        .into());
    }
    let entries = node.as_map(file)?;
    yaml::only_keys(entries, STAGE_FIELDS, file, &format!("stage `{name}`"))?;
    let paths = |field: &str| -> Result<Vec<PathRef>> {
        match yaml::get(entries, field) {
            Some(node) => node
                .as_strings(file)?
                .into_iter()
                .map(|(pos, text)| path_ref(pos, &text, file))
                .collect(),
            None => Ok(Vec::new()),
        }
    };
    let mut deps = paths("deps")?;
    let outs = paths("outs")?;
    let metrics = paths("metrics")?;

    let mut params = BTreeMap::new();
    if let Some(node) = yaml::get(entries, "params") {
        for (pos, param) in node.as_strings(file)? {
            let value = all_params.get(&param).ok_or_else(|| {
                YamlError::new(
                    file,
                    pos,
                    format!("stage `{name}`: param `{param}` is not in the params file"),
                )
            })?;
            params.insert(param, value.clone());
        }
    }

    let builtins: Vec<&Node> = ["cmd", "validate", "feature_check"]
        .iter()
        .filter_map(|field| yaml::get(entries, field))
        .collect();
    if builtins.len() > 1 {
        return Err(YamlError::new(
            file,
            builtins[1].pos,
            format!("stage `{name}` needs exactly one of `cmd`, `validate`, `feature_check`"),
        )
        .into());
    }
    let add_dep = |deps: &mut Vec<PathRef>, path: &PathRef| {
        if !deps.iter().any(|dep| dep.path == path.path) {
            deps.push(path.clone());
        }
    };
    let action = if let Some(cmd) = yaml::get(entries, "cmd") {
        let template = cmd.as_string(file)?;
        let (command, used) = interpolate(&template, all_params).map_err(|message| {
            YamlError::new(file, cmd.pos, format!("stage `{name}`: {message}"))
        })?;
        for key in used {
            let value = all_params[&key].clone();
            params.insert(key, value);
        }
        Action::Cmd { template, command }
    } else if let Some(validate) = yaml::get(entries, "validate") {
        let spec = validate.as_map(file)?;
        yaml::only_keys(spec, &["data", "schema"], file, "validate")?;
        let data = required_path(spec, "data", validate, file, "validate")?;
        let schema = required_path(spec, "schema", validate, file, "validate")?;
        add_dep(&mut deps, &data);
        add_dep(&mut deps, &schema);
        Action::Validate { data, schema }
    } else if let Some(check) = yaml::get(entries, "feature_check") {
        let spec = check.as_map(file)?;
        yaml::only_keys(
            spec,
            &["data", "reference", "label", "thresholds"],
            file,
            "feature_check",
        )?;
        let data = required_path(spec, "data", check, file, "feature_check")?;
        add_dep(&mut deps, &data);
        let reference = match yaml::get(spec, "reference") {
            None => Reference::Production,
            Some(node) => match node.as_string(file)?.as_str() {
                "production" => Reference::Production,
                text => {
                    let path = path_ref(node.pos, text, file)?;
                    add_dep(&mut deps, &path);
                    Reference::File(path)
                }
            },
        };
        let label = yaml::get(spec, "label")
            .map(|n| n.as_string(file))
            .transpose()?;
        let thresholds = match yaml::get(spec, "thresholds") {
            Some(node) => {
                // Checked as keel-monitor's typed settings (a typo is an
                // error at its key), kept as JSON for the command text.
                yaml::from_node::<keel_monitor::validate::ValidationConfig>(node, file).map_err(
                    |error| {
                        YamlError::new(
                            file,
                            error.pos,
                            format!("feature_check thresholds: {}", error.message),
                        )
                    },
                )?;
                to_json(node)
            }
            None => serde_json::json!({}),
        };
        Action::FeatureCheck {
            data,
            reference,
            label,
            thresholds,
        }
    } else {
        return Err(YamlError::new(
            file,
            node.pos,
            format!("stage `{name}` needs `cmd:`, `validate:` or `feature_check:`"),
        )
        .into());
    };
    Ok(Stage {
        name,
        pos: key.pos,
        action,
        deps,
        outs,
        metrics,
        params,
    })
}

fn required_path(
    spec: &[(Key, Node)],
    field: &str,
    parent: &Node,
    file: &Path,
    what: &str,
) -> Result<PathRef> {
    let node = yaml::get(spec, field)
        .ok_or_else(|| YamlError::new(file, parent.pos, format!("{what} needs `{field}:`")))?;
    path_ref(node.pos, &node.as_string(file)?, file)
}

/// A YAML node as JSON (for settings that another crate deserialises).
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as Json;
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(flag) => Json::Bool(*flag),
        Value::Int(number) => Json::from(*number),
        Value::Float(number) => {
            serde_json::Number::from_f64(*number).map_or(Json::Null, Json::Number)
        }
        Value::Str(text) => Json::String(text.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(key, value)| (key.name.clone(), to_json(value)))
                .collect(),
        ),
    }
}

/// Normalises a keel.yaml path; refuses absolute paths and paths leaving the project.
fn path_ref(pos: Pos, text: &str, file: &Path) -> Result<PathRef> {
    let bad = |why: &str| -> PipelineError {
        YamlError::new(file, pos, format!("path `{text}`: {why}")).into()
    };
    if text.trim().is_empty() {
        return Err(bad("empty path"));
    }
    let path = Path::new(text);
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(bad("leaves the project folder"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad("must be relative to the project folder"));
            }
        }
    }
    if parts.is_empty() {
        return Err(bad("names the project folder itself"));
    }
    if parts[0] == ".keel" || parts[0] == ".git" {
        return Err(bad("is inside keel's or git's own folder"));
    }
    Ok(PathRef {
        pos,
        path: parts.join("/"),
    })
}

/// Flattens a params document to dotted keys; lists become `[a, b]`.
fn flatten(
    prefix: &str,
    node: &Node,
    file: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<()> {
    match &node.value {
        Value::Map(entries) => {
            for (key, value) in entries {
                let dotted = if prefix.is_empty() {
                    key.name.clone()
                } else {
                    format!("{prefix}.{}", key.name)
                };
                flatten(&dotted, value, file, out)?;
            }
        }
        Value::Seq(items) => {
            let texts: Vec<String> = items.iter().map(Node::scalar_text).collect();
            out.insert(prefix.to_string(), format!("[{}]", texts.join(", ")));
        }
        _ if prefix.is_empty() => {
            return Err(YamlError::new(file, node.pos, "the params file must be a mapping").into());
        }
        _ => {
            out.insert(prefix.to_string(), node.scalar_text());
        }
    }
    Ok(())
}

/// Replaces each `${key}` with its param value; returns the text and the keys used.
/// `$$` stands for a literal `$`.
pub fn interpolate(
    template: &str,
    params: &BTreeMap<String, String>,
) -> std::result::Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(template.len());
    let mut used = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{template}`"))?;
            let key = body[..end].trim();
            let value = params
                .get(key)
                .ok_or_else(|| format!("`${{{key}}}` is not a param in the params file"))?;
            out.push_str(value);
            if !used.iter().any(|k| k == key) {
                used.push(key.to_string());
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, used))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, params: &str) -> Result<Pipeline> {
        let params = params.to_string();
        Pipeline::parse(text, Path::new("keel.yaml"), Path::new("/p"), move |_| {
            Ok(Some((PathBuf::from("params.yaml"), params)))
        })
    }

    fn error_at(result: Result<Pipeline>) -> (usize, usize, String) {
        match result {
            Err(PipelineError::Yaml(error)) => (error.pos.line, error.pos.column, error.message),
            other => panic!("expected a positioned error, got {other:?}"),
        }
    }

    const PARAMS: &str = "train:\n  seed: 7\n  lr: 0.05\n  layers: [8, 4]\nname: risk\n";

    #[test]
    fn parses_stages_params_and_interpolation() {
        let pipeline = parse(
            "stages:\n  check:\n    validate: {data: data/train.csv, schema: ./schema.yaml}\n  train:\n    cmd: keel train --seed ${train.seed} --lr ${ train.lr } --name ${name} $$HOME\n    deps: [data/train.csv]\n    params: [train.layers]\n    outs: [model/]\ngates:\n  - accuracy >= 0.8\nregister: {model: risk, path: model, alias: production}\n",
            PARAMS,
        )
        .unwrap();
        let train = pipeline.stage("train").unwrap();
        assert_eq!(
            train.command_text(),
            "keel train --seed 7 --lr 0.05 --name risk $HOME"
        );
        let keys: Vec<&str> = train.params.keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "train.layers", "train.lr", "train.seed"]);
        assert_eq!(train.params["train.layers"], "[8, 4]");
        assert_eq!(train.outs[0].path, "model");
        let check = pipeline.stage("check").unwrap();
        let deps: Vec<&str> = check.deps.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(deps, ["data/train.csv", "schema.yaml"]);
        assert_eq!(pipeline.gates[0].expression, "accuracy >= 0.8");
        assert_eq!(
            pipeline.register.unwrap().alias.as_deref(),
            Some("production")
        );
    }

    #[test]
    fn errors_carry_line_and_column() {
        // YAML syntax error.
        let (line, _, _) = error_at(parse("stages:\n  train:\n    cmd: [unclosed\n", PARAMS));
        assert!(line >= 3);
        // Unknown field.
        let (line, column, message) = error_at(parse(
            "stages:\n  train:\n    cmd: x\n    dpes: [a]\n",
            PARAMS,
        ));
        assert_eq!((line, column), (4, 5));
        assert!(message.contains("unknown field `dpes`"), "{message}");
        // Missing param in interpolation.
        let (line, column, message) = error_at(parse(
            "stages:\n  train:\n    cmd: run ${train.nope}\n",
            PARAMS,
        ));
        assert_eq!((line, column), (3, 10));
        assert!(message.contains("train.nope"), "{message}");
        // Declared param missing.
        let (line, column, _) = error_at(parse(
            "stages:\n  t:\n    cmd: x\n    params: [a, train.zz]\n",
            PARAMS,
        ));
        assert_eq!((line, column), (4, 14));
        // Wrong type.
        let (line, column, message) = error_at(parse(
            "stages:\n  t:\n    cmd: x\n    deps: {a: 1}\n",
            PARAMS,
        ));
        assert_eq!((line, column), (4, 11));
        assert!(message.contains("list of strings"), "{message}");
        // Path escaping the project.
        let (line, _, message) = error_at(parse(
            "stages:\n  t:\n    cmd: x\n    outs: [../x]\n",
            PARAMS,
        ));
        assert_eq!(line, 4);
        assert!(message.contains("leaves the project"), "{message}");
        // Bad gate.
        let (line, column, message) = error_at(parse(
            "stages:\n  t:\n    cmd: x\ngates:\n  - accuracy >>= 1\n",
            PARAMS,
        ));
        assert_eq!((line, column), (5, 5));
        assert!(message.contains("accuracy >>= 1"), "{message}");
        // Neither cmd nor validate.
        let (line, _, _) = error_at(parse("stages:\n  t:\n    deps: [a]\n", PARAMS));
        assert_eq!(line, 3);
        // The monitor section is checked with the rest: a typo is refused
        // by `keel run` too, at its line and column.
        let (line, column, message) = error_at(parse(
            "stages:\n  t:\n    cmd: x\nmonitor:\n  window: 1h\n  drift: {alpah: 0.1}\n",
            PARAMS,
        ));
        assert_eq!((line, column), (6, 11));
        assert!(message.contains("unknown field `alpah`"), "{message}");
        // An unknown section.
        let (line, column, message) =
            error_at(parse("stages:\n  t:\n    cmd: x\nmonitr: {}\n", PARAMS));
        assert_eq!((line, column), (4, 1));
        assert!(message.contains("unknown field `monitr`"), "{message}");
    }

    #[test]
    fn feature_check_step() {
        let pipeline = parse(
            "stages:\n  features:\n    feature_check:\n      data: data/train.csv\n      label: default\n      thresholds: {max_mean_shift: 0.5}\n",
            PARAMS,
        )
        .unwrap();
        let stage = pipeline.stage("features").unwrap();
        assert_eq!(stage.checked_data().unwrap().path, "data/train.csv");
        assert!(matches!(
            &stage.action,
            Action::FeatureCheck { reference: Reference::Production, label: Some(label), .. } if label == "default"
        ));
        assert!(
            stage.command_text().contains("\"max_mean_shift\":0.5"),
            "{}",
            stage.command_text()
        );
        let (line, column, message) = error_at(parse(
            "stages:\n  f:\n    feature_check: {data: d.csv, thresholds: {max_mean_shfit: 1}}\n",
            PARAMS,
        ));
        assert_eq!((line, column), (3, 47));
        assert!(
            message.contains("unknown field `max_mean_shfit`"),
            "{message}"
        );
        let (line, _, message) = error_at(parse(
            "stages:\n  f:\n    cmd: x\n    validate: {data: a, schema: b}\n",
            PARAMS,
        ));
        assert_eq!(line, 4);
        assert!(message.contains("exactly one of"), "{message}");
    }

    #[test]
    fn interpolation_rules() {
        let params: BTreeMap<String, String> = [("a.b".to_string(), "1".to_string())].into();
        assert_eq!(
            interpolate("x ${a.b} ${a.b} $y $$", &params).unwrap(),
            ("x 1 1 $y $".to_string(), vec!["a.b".to_string()])
        );
        assert!(
            interpolate("${a.b", &params)
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(interpolate("${c}", &params).unwrap_err().contains("`${c}`"));
    }
}
