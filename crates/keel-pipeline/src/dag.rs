//! The stage graph, derived from deps and outs: stage B depends on stage A
//! when one of B's deps is (or is inside, or contains) one of A's outputs.
//! A stage reading the data of a built-in check step (`validate`,
//! `feature_check`) also runs after that step. Checked before anything runs: two stages writing the same (or nested)
//! output, a dependency cycle, and a dep that no stage writes and that does
//! not exist are errors naming keel.yaml's line and column.

use std::collections::BTreeSet;
use std::path::Path;

use keel_yaml::YamlError;

use crate::config::Pipeline;
use crate::error::{PipelineError, Result};

/// Stage indices and their edges.
#[derive(Debug, Clone)]
pub struct Dag {
    /// `upstream[i]`: stages whose outputs stage `i` reads.
    pub upstream: Vec<BTreeSet<usize>>,
    /// `downstream[i]`: stages that read stage `i`'s outputs.
    pub downstream: Vec<BTreeSet<usize>>,
    /// Every stage, upstream before downstream (document order among equals).
    pub order: Vec<usize>,
}

/// Whether `a` and `b` are the same path or one contains the other.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    a == b
        || (a.len() > b.len() && a.starts_with(b) && a.as_bytes()[b.len()] == b'/')
        || (b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'/')
}

impl Dag {
    /// Builds and checks the graph. `exists` tells whether a path is on disk.
    pub fn build(pipeline: &Pipeline, exists: impl Fn(&str) -> bool) -> Result<Dag> {
        let file = &pipeline.file;
        let stages = &pipeline.stages;
        // Outputs: no two stages (or one stage twice) may write overlapping paths.
        let mut produced: Vec<(usize, &crate::config::PathRef)> = Vec::new();
        for (index, stage) in stages.iter().enumerate() {
            for out in stage.produced() {
                if let Some((other, first)) =
                    produced.iter().find(|(_, p)| overlaps(&p.path, &out.path))
                {
                    let owner = &stages[*other].name;
                    return Err(YamlError::new(
                        file,
                        out.pos,
                        format!(
                            "output `{}` of stage `{}` overlaps output `{}` of stage `{owner}` (line {}): each path has one writer",
                            out.path, stage.name, first.path, first.pos.line
                        ),
                    )
                    .into());
                }
                produced.push((index, out));
            }
        }
        let mut upstream = vec![BTreeSet::new(); stages.len()];
        let mut downstream = vec![BTreeSet::new(); stages.len()];
        for (index, stage) in stages.iter().enumerate() {
            for dep in &stage.deps {
                let writers: Vec<usize> = produced
                    .iter()
                    .filter(|(_, out)| overlaps(&out.path, &dep.path))
                    .map(|(writer, _)| *writer)
                    .collect();
                if writers.contains(&index) {
                    return Err(YamlError::new(
                        file,
                        dep.pos,
                        format!(
                            "stage `{}` reads `{}`, which it writes itself",
                            stage.name, dep.path
                        ),
                    )
                    .into());
                }
                if writers.is_empty() && !exists(&dep.path) {
                    return Err(YamlError::new(
                        file,
                        dep.pos,
                        format!(
                            "stage `{}`: input `{}` does not exist and no stage writes it",
                            stage.name, dep.path
                        ),
                    )
                    .into());
                }
                for writer in writers {
                    upstream[index].insert(writer);
                    downstream[writer].insert(index);
                }
            }
        }
        // Data is checked before it is used: a stage reading the data of a
        // built-in check step (validate, feature_check) runs after that step
        // (and not if it fails).
        for (checker, stage) in stages.iter().enumerate() {
            let Some(data) = stage.checked_data() else {
                continue;
            };
            for (index, reader) in stages.iter().enumerate() {
                let reads = reader
                    .deps
                    .iter()
                    .any(|dep| overlaps(&dep.path, &data.path));
                if index != checker
                    && reads
                    && reader.checked_data().is_none()
                    && !upstream[checker].contains(&index)
                {
                    upstream[index].insert(checker);
                    downstream[checker].insert(index);
                }
            }
        }
        let order = topological(pipeline, &upstream, file)?;
        Ok(Dag {
            upstream,
            downstream,
            order,
        })
    }

    /// `targets` and everything they need (all stages when `targets` is empty).
    pub fn select(&self, targets: &[usize]) -> BTreeSet<usize> {
        if targets.is_empty() {
            return (0..self.upstream.len()).collect();
        }
        let mut selected = BTreeSet::new();
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(index) = stack.pop() {
            if selected.insert(index) {
                stack.extend(self.upstream[index].iter().copied());
            }
        }
        selected
    }

    /// Every stage downstream of `index` (not including it).
    pub fn dependants(&self, index: usize) -> BTreeSet<usize> {
        let mut found = BTreeSet::new();
        let mut stack: Vec<usize> = self.downstream[index].iter().copied().collect();
        while let Some(next) = stack.pop() {
            if found.insert(next) {
                stack.extend(self.downstream[next].iter().copied());
            }
        }
        found
    }
}

/// Kahn's algorithm, taking the earliest stage in document order first; a
/// leftover means a cycle, reported as `a -> b -> a`.
fn topological(
    pipeline: &Pipeline,
    upstream: &[BTreeSet<usize>],
    file: &Path,
) -> Result<Vec<usize>> {
    let n = upstream.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !done[i] && upstream[i].iter().all(|&u| done[u]));
        match next {
            Some(index) => {
                done[index] = true;
                order.push(index);
            }
            None => {
                // Walk upstream edges among the leftovers until a stage repeats.
                let start = (0..n).find(|&i| !done[i]).unwrap_or(0);
                let mut path = vec![start];
                let mut current = start;
                while let Some(&next) = upstream[current].iter().find(|&&u| !done[u]) {
                    if let Some(at) = path.iter().position(|&p| p == next) {
                        let mut cycle: Vec<&str> = path[at..]
                            .iter()
                            .map(|&i| pipeline.stages[i].name.as_str())
                            .collect();
                        cycle.push(&pipeline.stages[next].name);
                        let stage = &pipeline.stages[next];
                        return Err(YamlError::new(
                            file,
                            stage.pos,
                            format!(
                                "dependency cycle (each stage reads an output of the next): {}",
                                cycle.join(" -> ")
                            ),
                        )
                        .into());
                    }
                    path.push(next);
                    current = next;
                }
                return Err(PipelineError::Invalid(
                    "dependency cycle among stages".into(),
                ));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> Pipeline {
        Pipeline::parse(text, Path::new("keel.yaml"), Path::new("/p"), |_| Ok(None)).unwrap()
    }

    fn error(text: &str) -> YamlError {
        match Dag::build(&pipeline(text), |path| path.starts_with("data")) {
            Err(PipelineError::Yaml(error)) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn orders_and_selects() {
        let p = pipeline(
            "stages:\n  evaluate:\n    cmd: e\n    deps: [model, data/test.csv]\n    metrics: [metrics.json]\n  train:\n    cmd: t\n    deps: [data/train.csv, features]\n    outs: [model]\n  features:\n    cmd: f\n    deps: [data/raw]\n    outs: [features/]\n  lint:\n    cmd: l\n    deps: [data/raw]\n",
        );
        let dag = Dag::build(&p, |path| path.starts_with("data")).unwrap();
        let names: Vec<&str> = dag
            .order
            .iter()
            .map(|&i| p.stages[i].name.as_str())
            .collect();
        assert_eq!(names, ["features", "train", "evaluate", "lint"]);
        let selected: Vec<&str> = dag
            .select(&[1])
            .iter()
            .map(|&i| p.stages[i].name.as_str())
            .collect();
        assert_eq!(selected, ["train", "features"]);
        let below: Vec<&str> = dag
            .dependants(2)
            .iter()
            .map(|&i| p.stages[i].name.as_str())
            .collect();
        assert_eq!(below, ["evaluate", "train"]);
    }

    #[test]
    fn readers_of_validated_data_wait_for_validation() {
        let p = pipeline(
            "stages:\n  train:\n    cmd: t\n    deps: [data/train.csv]\n    outs: [model]\n  check:\n    validate: {data: data/train.csv, schema: data/schema.yaml}\n",
        );
        let dag = Dag::build(&p, |path| path.starts_with("data")).unwrap();
        let names: Vec<&str> = dag
            .order
            .iter()
            .map(|&i| p.stages[i].name.as_str())
            .collect();
        assert_eq!(names, ["check", "train"]);
        assert!(dag.upstream[0].contains(&1));
    }

    #[test]
    fn cycles_duplicates_and_missing_inputs_are_reported_with_positions() {
        let cycle = error(
            "stages:\n  a:\n    cmd: x\n    deps: [b.out]\n    outs: [a.out]\n  b:\n    cmd: y\n    deps: [a.out]\n    outs: [b.out]\n",
        );
        assert!(cycle.message.ends_with("a -> b -> a"), "{}", cycle.message);
        assert_eq!(cycle.pos.column, 3);
        let duplicate = error(
            "stages:\n  a:\n    cmd: x\n    outs: [model]\n  b:\n    cmd: y\n    outs: [model/x.json]\n",
        );
        assert_eq!((duplicate.pos.line, duplicate.pos.column), (7, 12));
        assert!(
            duplicate
                .message
                .contains("overlaps output `model` of stage `a` (line 4)"),
            "{}",
            duplicate.message
        );
        let missing = error("stages:\n  a:\n    cmd: x\n    deps: [data/ok.csv, src/gone.py]\n");
        assert_eq!((missing.pos.line, missing.pos.column), (4, 25));
        assert!(
            missing.message.contains("`src/gone.py` does not exist"),
            "{}",
            missing.message
        );
        let own = error("stages:\n  a:\n    cmd: x\n    deps: [out]\n    outs: [out]\n");
        assert!(own.message.contains("writes itself"), "{}", own.message);
    }
}
