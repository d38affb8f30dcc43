//! `keel train`: fits one of keel's built-in learners on a CSV table, holds
//! out a seeded test split (or reads `--test`) to score it and to calibrate
//! the monitor's label-free accuracy estimate, and writes the model folder
//! (`model.json`, `signature.json`, `metrics.json`, and `profile.json`:
//! the training data's monitoring profile, see keel-monitor).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keel_learn::{Algorithm, Model, Task, TrainOptions, evaluate, train_test_split};
use keel_table::Table;

/// Arguments of `keel train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Learner.
    #[arg(long, value_parser = ["logistic", "linear", "ridge", "random-forest", "gbdt"])]
    pub algo: String,
    /// Training data (CSV with a header row, or Parquet: `.parquet`/`.pq`).
    #[arg(long)]
    pub data: PathBuf,
    /// Column to predict.
    #[arg(long)]
    pub target: String,
    /// Model folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the split and of every random choice in training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of rows held out for `metrics.json`; 0 trains on every row and skips scoring.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Held-out rows from this file (CSV or Parquet, with the target)
    /// instead of a split of --data: they score `metrics.json` and, for a
    /// classifier, calibrate the monitor's label-free accuracy estimate.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Input columns, comma-separated (default: every column but the target).
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Task (default: inferred from the target and algorithm).
    #[arg(long, value_parser = ["classification", "regression"])]
    pub task: Option<String>,
    /// Trees of the random forest.
    #[arg(long, default_value_t = 100)]
    pub n_trees: usize,
    /// Boosting rounds of gbdt.
    #[arg(long, default_value_t = 100)]
    pub n_iter: usize,
    /// Learning rate of gbdt.
    #[arg(long, default_value_t = 0.1)]
    pub learning_rate: f64,
    /// Most leaves per gbdt tree.
    #[arg(long, default_value_t = 31)]
    pub max_leaves: usize,
    /// Stop gbdt early: hold out --validation-fraction of the training rows
    /// and stop once their loss has not improved for --n-iter-no-change
    /// rounds, keeping the rounds up to the best one.
    #[arg(long)]
    pub early_stopping: bool,
    /// Share of the training rows held out by --early-stopping.
    #[arg(long, default_value_t = 0.1, requires = "early_stopping")]
    pub validation_fraction: f64,
    /// Rounds without improvement before --early-stopping stops.
    #[arg(long, default_value_t = 10, requires = "early_stopping")]
    pub n_iter_no_change: usize,
    /// Deepest tree level (forest and gbdt; default: unlimited).
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Ridge penalty.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Inverse regularization of logistic regression (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    pub c: f64,
}

pub fn run(args: TrainArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let algorithm = Algorithm::parse(&args.algo)?;
    let mut options = TrainOptions::new(algorithm, args.target.clone());
    options.seed = args.seed;
    options.features = args.features.clone();
    options.task = args.task.as_deref().map(|task| match task {
        "regression" => Task::Regression,
        _ => Task::Classification,
    });
    options.ridge_alpha = args.alpha;
    options.logistic.c = args.c;
    options.forest.n_trees = args.n_trees;
    options.forest.max_depth = args.max_depth;
    options.boost.n_iter = args.n_iter;
    options.boost.learning_rate = args.learning_rate;
    options.boost.max_leaves = args.max_leaves;
    options.boost.max_depth = args.max_depth;
    if args.early_stopping {
        options.boost.early_stopping = Some(keel_learn::gbdt::EarlyStopping {
            validation_fraction: args.validation_fraction,
            n_iter_no_change: args.n_iter_no_change,
            ..Default::default()
        });
    }

    let started = std::time::Instant::now();
    let table = Table::read(&args.data, &[])?;
    let (train, test) = if let Some(test) = &args.test {
        (table, Some(Table::read(test, &[])?))
    } else if args.test_fraction > 0.0 {
        let (train_rows, test_rows) =
            train_test_split(table.n_rows(), args.test_fraction, args.seed)?;
        (
            table.select_rows(&train_rows),
            Some(table.select_rows(&test_rows)),
        )
    } else {
        (table, None)
    };
    let model = Model::train(&train, &options)
        .with_context(|| format!("training {} on {}", algorithm.as_str(), args.data.display()))?;
    let fit_seconds = started.elapsed().as_secs_f64();
    model.save(&args.out)?;
    keel_monitor::profile::training_profile(&model, &train, test.as_ref())?
        .write_json(&args.out.join(keel_monitor::profile::PROFILE_FILE))?;
    if !quiet {
        println!(
            "Trained {} ({:?}) on {} rows of {} in {fit_seconds:.2}s -> {}",
            algorithm.as_str(),
            model.task,
            train.n_rows(),
            args.data.display(),
            args.out.display()
        );
        if let (true, keel_learn::model::Estimator::Boosted(boosted)) =
            (args.early_stopping, &model.estimator)
        {
            println!(
                "Early stopping kept {} of {} rounds",
                boosted.trees.len() / boosted.init.len().max(1),
                args.n_iter
            );
        }
    }
    if let Some(test) = test {
        let metrics = evaluate(&model, &test)?;
        super::write_json(&args.out.join("metrics.json"), &metrics)?;
        if !quiet {
            let scalars: Vec<String> = metrics
                .scalars()
                .iter()
                .map(|(name, value)| format!("{name}={value:.4}"))
                .collect();
            println!("Held-out {} rows: {}", test.n_rows(), scalars.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
