//! Training-time benchmark of keel's GBDT and random forest on a binary
//! classification table written by `bench/learn/bench.py` (raw little-endian
//! float32 features, uint8 labels, first `--train` rows for training, the
//! rest for testing). Prints one JSON line per learner. Run through
//! `bench/learn/run.sh`, which also times scikit-learn on the same table.

use std::time::Instant;

use keel_learn::forest::{ForestParams, ForestTarget, fit_forest};
use keel_learn::gbdt::{BoostParams, BoostTarget, fit_boosted, probabilities};
use keel_learn::preprocess::Matrix;

/// Held-out accuracy of a row -> class predictor.
type Accuracy<'a> = dyn Fn(&dyn Fn(&[f64]) -> usize) -> f64 + 'a;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = value("--dir").ok_or("--dir DIR is required")?;
    let cols: usize = value("--cols").unwrap_or_else(|| "20".into()).parse()?;
    let train_rows: usize = value("--train").ok_or("--train N is required")?.parse()?;
    let n_trees: usize = value("--trees").unwrap_or_else(|| "100".into()).parse()?;
    // `--only gbdt` or `--only forest` times one learner (both by default).
    let only = value("--only");
    let run = |learner: &str| only.as_deref().is_none_or(|o| o == learner);
    let x_bytes = std::fs::read(format!("{dir}/x.f32"))?;
    let labels: Vec<usize> = std::fs::read(format!("{dir}/y.u8"))?
        .into_iter()
        .map(usize::from)
        .collect();
    let data: Vec<f64> = x_bytes
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let rows = labels.len();
    if data.len() != rows * cols || train_rows >= rows {
        return Err("x.f32 / y.u8 / --cols / --train disagree".into());
    }
    let train = Matrix {
        rows: train_rows,
        cols,
        data: data[..train_rows * cols].to_vec(),
    };
    let test = Matrix {
        rows: rows - train_rows,
        cols,
        data: data[train_rows * cols..].to_vec(),
    };
    let (train_y, test_y) = labels.split_at(train_rows);
    let accuracy = |predict: &dyn Fn(&[f64]) -> usize| {
        (0..test.rows)
            .filter(|&i| predict(test.row(i)) == test_y[i])
            .count() as f64
            / test.rows as f64
    };

    if run("gbdt") {
        time_gbdt(&train, train_y, &accuracy)?;
    }
    if run("forest") {
        time_forest(&train, train_y, n_trees, &accuracy)?;
    }
    Ok(())
}

fn time_gbdt(
    train: &Matrix,
    train_y: &[usize],
    accuracy: &Accuracy<'_>,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let boosted = fit_boosted(
        train,
        BoostTarget::Classes(train_y, 2),
        &BoostParams::default(),
        0,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let acc = accuracy(&|row| usize::from(probabilities(&boosted.scores(row))[1] > 0.5));
    println!(
        "{{\"learner\": \"keel gbdt (100 rounds, 31 leaves)\", \"fit_seconds\": {seconds:.3}, \"accuracy\": {acc:.4}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
    Ok(())
}

fn time_forest(
    train: &Matrix,
    train_y: &[usize],
    n_trees: usize,
    accuracy: &Accuracy<'_>,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let forest = fit_forest(
        train,
        ForestTarget::Classes(train_y, 2),
        &ForestParams {
            n_trees,
            ..ForestParams::default()
        },
        0,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let acc = accuracy(&|row| usize::from(forest.predict(row)[1] > 0.5));
    println!(
        "{{\"learner\": \"keel random forest ({n_trees} trees)\", \"fit_seconds\": {seconds:.3}, \"accuracy\": {acc:.4}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
    Ok(())
}
