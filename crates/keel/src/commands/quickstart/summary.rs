//! What the quickstart observed, and the closing summary built only from it.
//!
//! Every sentence of "What happened" is derived from an [`Outcome`] field
//! that the story filled from a command's exit code, the registry's answer
//! or a traffic tally; a step that did not happen, or happened badly, yields
//! a different sentence and makes [`Outcome::succeeded`] false (the process
//! then exits non-zero).

use serde::Serialize;

use super::traffic::Tally;

/// A `keel run` of the story: its exit code, its gate table and who held
/// `@production` after it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Registration {
    pub exit_code: i32,
    pub gates: Gates,
    /// The version holding `@production` after the run, as the registry answered.
    pub production: Option<String>,
    /// The version this step was meant to put into production.
    pub expected: String,
}

impl Registration {
    fn promoted(&self) -> bool {
        self.exit_code == 0
            && self.gates.failed == 0
            && self.gates.passed > 0
            && self.production.as_deref() == Some(self.expected.as_str())
    }
}

/// The gate table `keel run` printed: how many gates passed and failed, and
/// how many of the passed ones compared with the production model.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Gates {
    pub passed: usize,
    pub failed: usize,
    pub against_production: usize,
}

impl Gates {
    /// Reads the rows of the gate table (`gate  metric  value  threshold
    /// production  result`, result `pass` or `FAIL`, production `-` when no
    /// production model was compared) in `keel run`'s output.
    pub fn from_output(stdout: &str) -> Gates {
        let mut gates = Gates::default();
        let mut in_table = false;
        for line in stdout.lines() {
            if line.starts_with("gate ") && line.trim_end().ends_with("result") {
                in_table = true;
                continue;
            }
            if !in_table || line.starts_with(' ') {
                continue;
            }
            let mut cells = line.split_whitespace().rev();
            match cells.next() {
                Some("pass") => {
                    gates.passed += 1;
                    // The production column holds a value only when a production model was compared.
                    if cells.next().is_some_and(|production| production != "-") {
                        gates.against_production += 1;
                    }
                }
                Some("FAIL") => gates.failed += 1,
                _ => in_table = false,
            }
        }
        gates
    }

    fn describe(&self) -> String {
        match self.against_production {
            0 => format!("its {} gates", self.passed),
            n => format!(
                "its {} gates ({n} against the production model on the same rows)",
                self.passed
            ),
        }
    }
}

/// Requests sent in one phase of the story.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Traffic {
    pub ok: u64,
    pub failed: u64,
}

impl From<Tally> for Traffic {
    fn from(tally: Tally) -> Self {
        Traffic {
            ok: tally.ok,
            failed: tally.failed,
        }
    }
}

/// The hot swap to the retrained version under steady traffic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Swap {
    pub ok: u64,
    pub failed: u64,
    /// Whether the model server reported the new version within the wait.
    pub swapped: bool,
}

/// Everything the story observed; `None` means the step was not reached.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Outcome {
    pub first_run: Option<Registration>,
    pub normal_traffic: Option<Traffic>,
    pub shifted_traffic: Option<Traffic>,
    pub labels_posted: Option<u64>,
    /// Exit code of `keel monitor report` and the drifted columns it named.
    pub monitor_exit: Option<i32>,
    pub drifted: Vec<String>,
    pub retrain: Option<Registration>,
    pub swap: Option<Swap>,
}

impl Outcome {
    /// True when every step happened and went as the story needs.
    pub fn succeeded(&self) -> bool {
        self.sentences().iter().all(|s| s.ok) && self.swap.is_some()
    }

    /// The closing summary, one sentence per step reached, each marked good or bad.
    pub fn sentences(&self) -> Vec<Sentence> {
        let mut out = Vec::new();
        let Some(first) = &self.first_run else {
            return out;
        };
        out.push(if first.promoted() {
            Sentence::good(format!(
                "risk v1 passed {} and took @production",
                first.gates.describe()
            ))
        } else {
            Sentence::bad(format!(
                "risk v1 was not promoted: keel run exited {}, {} gate(s) failed, and @production is {}",
                first.exit_code,
                first.gates.failed,
                holder(&first.production)
            ))
        });
        for (phase, traffic) in [
            ("ordinary", &self.normal_traffic),
            ("shifted", &self.shifted_traffic),
        ] {
            if let Some(traffic) = traffic {
                out.push(requests(phase, traffic));
            }
        }
        if let Some(labels) = self.labels_posted {
            let sent = [&self.normal_traffic, &self.shifted_traffic]
                .iter()
                .filter_map(|t| t.as_ref())
                .map(|t| t.ok)
                .sum::<u64>();
            out.push(if labels == sent && labels > 0 {
                Sentence::good(format!("{labels} ground-truth labels posted to /feedback"))
            } else {
                Sentence::bad(format!(
                    "{labels} ground-truth labels accepted for {sent} answered requests"
                ))
            });
        }
        if let Some(code) = self.monitor_exit {
            out.push(if self.drifted.is_empty() {
                Sentence::bad(format!(
                    "the monitor found no drift in the shifted traffic (keel monitor report exited {code}), \
                     so no retraining was triggered"
                ))
            } else {
                let names: Vec<&str> = self
                    .drifted
                    .iter()
                    .map(|line| line.split(':').next().unwrap_or(line))
                    .collect();
                Sentence::good(format!(
                    "the monitor named {} drifted input(s): {}",
                    names.len(),
                    names.join(", ")
                ))
            });
        }
        if let Some(retrain) = &self.retrain {
            out.push(if retrain.promoted() {
                Sentence::good(format!(
                    "the drift policy retrained on recent labelled data; v2 passed {} and took @production",
                    retrain.gates.describe()
                ))
            } else {
                Sentence::bad(format!(
                    "the drift policy's retraining did not promote v2: it exited {}, {} gate(s) failed, \
                     and @production is {}",
                    retrain.exit_code,
                    retrain.gates.failed,
                    holder(&retrain.production)
                ))
            });
        }
        if let Some(swap) = &self.swap {
            let total = swap.ok + swap.failed;
            out.push(match (swap.swapped, swap.failed) {
                (true, 0) => Sentence::good(format!(
                    "serving hot-swapped to v2 with 0 failed requests among {total}"
                )),
                (true, failed) => Sentence::bad(format!(
                    "serving hot-swapped to v2, but {failed} of {total} requests failed during the swap"
                )),
                (false, failed) => Sentence::bad(format!(
                    "serving did not move to v2 ({failed} of {total} requests failed while waiting)"
                )),
            });
        }
        out
    }
}

fn holder(production: &Option<String>) -> String {
    match production {
        Some(version) => format!("on v{version}"),
        None => "unset".to_string(),
    }
}

fn requests(phase: &str, traffic: &Traffic) -> Sentence {
    let total = traffic.ok + traffic.failed;
    if traffic.failed == 0 && total > 0 {
        Sentence::good(format!("{total} {phase} requests answered, 0 failed"))
    } else {
        Sentence::bad(format!(
            "{} of {total} {phase} requests failed",
            traffic.failed
        ))
    }
}

/// One line of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    pub text: String,
    pub ok: bool,
}

impl Sentence {
    fn good(text: impl Into<String>) -> Self {
        Sentence {
            text: text.into(),
            ok: true,
        }
    }

    fn bad(text: impl Into<String>) -> Self {
        Sentence {
            text: text.into(),
            ok: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(code: i32, production: &str, expected: &str) -> Registration {
        Registration {
            exit_code: code,
            gates: Gates {
                passed: 3,
                failed: usize::from(code != 0),
                against_production: 1,
            },
            production: Some(production.to_string()),
            expected: expected.to_string(),
        }
    }

    fn whole_story() -> Outcome {
        Outcome {
            first_run: Some(registration(0, "1", "1")),
            normal_traffic: Some(Traffic { ok: 10, failed: 0 }),
            shifted_traffic: Some(Traffic { ok: 20, failed: 0 }),
            labels_posted: Some(30),
            monitor_exit: Some(1),
            drifted: vec!["credit_score: wasserstein 0.7".into()],
            retrain: Some(registration(0, "2", "2")),
            swap: Some(Swap {
                ok: 50,
                failed: 0,
                swapped: true,
            }),
        }
    }

    fn texts(outcome: &Outcome) -> String {
        outcome
            .sentences()
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_whole_story_succeeds_and_says_what_it_counted() {
        let outcome = whole_story();
        assert!(outcome.succeeded());
        let text = texts(&outcome);
        assert!(text.contains("0 failed requests among 50"), "{text}");
        assert!(text.contains("credit_score"), "{text}");
    }

    #[test]
    fn a_failed_request_during_the_swap_changes_the_sentence_and_fails() {
        let mut outcome = whole_story();
        outcome.swap = Some(Swap {
            ok: 47,
            failed: 3,
            swapped: true,
        });
        assert!(!outcome.succeeded());
        let text = texts(&outcome);
        assert!(text.contains("3 of 50 requests failed"), "{text}");
        assert!(!text.contains("0 failed requests"), "{text}");
    }

    #[test]
    fn a_gate_that_did_not_pass_changes_the_sentence_and_fails() {
        let mut outcome = whole_story();
        outcome.retrain = Some(registration(1, "1", "2"));
        outcome.swap = None;
        assert!(!outcome.succeeded());
        assert!(texts(&outcome).contains("did not promote v2"));
    }

    #[test]
    fn a_missed_drift_ends_the_story_with_a_failure() {
        let mut outcome = whole_story();
        outcome.drifted.clear();
        outcome.retrain = None;
        outcome.swap = None;
        assert!(!outcome.succeeded());
        assert!(texts(&outcome).contains("found no drift"));
    }

    #[test]
    fn the_gate_table_is_read_from_keel_runs_output() {
        let stdout = "[train] done\n3 stage(s) ran, 0 up to date, in 7.32s\n\
            gate                                   metric    value   threshold  production  result\n\
            accuracy >= 0.70                       accuracy  0.7515  0.7000     -           pass\n\
            roc_auc >= production.roc_auc - 0.005  roc_auc   0.8189  0.7705     0.7755      pass\n\
            f1 >= production.f1                    f1        0.6000  -          -           pass\n\
            latency < 5                            p99       7.0     5.0        -           FAIL\n\
              latency < 5: a note\n\
            registered risk version 2, @production\n";
        assert_eq!(
            Gates::from_output(stdout),
            Gates {
                passed: 3,
                failed: 1,
                against_production: 1
            }
        );
        assert_eq!(Gates::from_output("no table here"), Gates::default());
    }

    #[test]
    fn a_failed_ordinary_request_is_reported() {
        let mut outcome = whole_story();
        outcome.normal_traffic = Some(Traffic { ok: 9, failed: 1 });
        assert!(!outcome.succeeded());
        assert!(texts(&outcome).contains("1 of 10 ordinary requests failed"));
    }
}
