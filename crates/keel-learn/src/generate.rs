//! Seeded example data for keel's two stories, with knobs for drift:
//!
//! - **portfolio**: a credit-risk table (applicant and loan features, binary
//!   target `default`).
//! - **retail**: a denim size-recommendation table (body measurements and fit
//!   preference, multiclass target `size`, W26–W40).
//!
//! `covariate_shift` moves the feature distributions (poorer, more indebted
//! applicants; taller, heavier shoppers) while keeping P(target | features);
//! `concept_drift` changes P(target | features) (debt weighs more on default;
//! vanity sizing makes the same body buy a smaller label). Both are 0 for the
//! reference data, and about 1 is a strong effect. A few values are missing on
//! purpose, so imputation is exercised.

use crate::error::{LearnError, Result};
use crate::linear::sigmoid;
use crate::rng::Rng;
use keel_table::{Column, Table};

/// Which story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// Credit-risk classifier data.
    Portfolio,
    /// Denim size classifier data.
    Retail,
}

impl Dataset {
    /// Parses `portfolio` or `retail`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "portfolio" => Ok(Dataset::Portfolio),
            "retail" => Ok(Dataset::Retail),
            other => Err(LearnError::param(format!(
                "unknown dataset {other:?} (one of: portfolio, retail)"
            ))),
        }
    }

    /// The target column of the story.
    pub fn target(self) -> &'static str {
        match self {
            Dataset::Portfolio => "default",
            Dataset::Retail => "size",
        }
    }
}

/// Settings of a generated table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Rows to make.
    pub rows: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// Shift of the feature distributions (0 = reference).
    pub covariate_shift: f64,
    /// Change of the feature -> target relation (0 = reference).
    pub concept_drift: f64,
}

/// Makes the table of `dataset`.
pub fn generate(dataset: Dataset, options: &GenerateOptions) -> Result<Table> {
    if options.rows == 0 {
        return Err(LearnError::param("rows must be at least 1"));
    }
    if !options.covariate_shift.is_finite() || !options.concept_drift.is_finite() {
        return Err(LearnError::param("drift knobs must be finite numbers"));
    }
    let mut rng = Rng::derive(options.seed, dataset as u64 + 1);
    match dataset {
        Dataset::Portfolio => Ok(portfolio(&mut rng, options)),
        Dataset::Retail => Ok(retail(&mut rng, options)),
    }
}

fn pick<'a>(rng: &mut Rng, choices: &[(&'a str, f64)]) -> &'a str {
    let total: f64 = choices.iter().map(|c| c.1).sum();
    let mut u = rng.next_f64() * total;
    for (name, weight) in choices {
        if u < *weight {
            return name;
        }
        u -= weight;
    }
    choices.last().map_or("", |c| c.0)
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn portfolio(rng: &mut Rng, o: &GenerateOptions) -> Table {
    let shift = o.covariate_shift;
    let drift = o.concept_drift;
    let n = o.rows;
    let mut age = Vec::with_capacity(n);
    let mut income = Vec::with_capacity(n);
    let mut employment_years = Vec::with_capacity(n);
    let mut credit_score = Vec::with_capacity(n);
    let mut loan_amount = Vec::with_capacity(n);
    let mut debt_to_income = Vec::with_capacity(n);
    let mut home_ownership = Vec::with_capacity(n);
    let mut purpose = Vec::with_capacity(n);
    let mut default = Vec::with_capacity(n);
    for _ in 0..n {
        let a = (42.0 + 12.0 * rng.normal() - 3.0 * shift).clamp(18.0, 85.0);
        let inc = (55.0f64.ln() + 0.5 * rng.normal() - 0.3 * shift).exp();
        let years = ((a - 18.0) * rng.next_f64()).min(45.0);
        let score = (690.0 + 65.0 * rng.normal() - 40.0 * shift).clamp(300.0, 850.0);
        let loan = inc * (0.1 + 0.7 * rng.next_f64()) * (1.0 + 0.2 * shift);
        let dti = (0.28 + 0.11 * rng.normal() + 0.08 * shift).clamp(0.0, 1.5);
        let home = if a < 30.0 {
            pick(rng, &[("rent", 0.7), ("mortgage", 0.2), ("own", 0.1)])
        } else {
            pick(rng, &[("rent", 0.3), ("mortgage", 0.5), ("own", 0.2)])
        };
        let why = pick(
            rng,
            &[
                ("debt_consolidation", 0.35),
                ("car", 0.2),
                ("home_improvement", 0.2),
                ("education", 0.1),
                ("business", 0.15),
            ],
        );
        let purpose_effect = match why {
            "business" => 0.6,
            "education" => 0.3,
            "car" => -0.2,
            _ => 0.0,
        };
        let home_effect = match home {
            "rent" => 0.25,
            "own" => -0.3,
            _ => 0.0,
        };
        let logit = -1.4 - 0.017 * (1.0 - 0.5 * drift) * (score - 690.0)
            + 5.5 * (1.0 + 1.5 * drift) * (dti - 0.28)
            + 0.6 * (loan / inc).ln()
            - 0.02 * years
            + purpose_effect
            + home_effect
            + 0.4 * drift;
        let y = rng.next_f64() < sigmoid(logit);
        age.push(round(a, 0));
        income.push(round(inc, 2));
        // 3% of applicants leave employment years blank; 2% leave home ownership blank.
        employment_years.push(if rng.next_f64() < 0.03 {
            f64::NAN
        } else {
            round(years, 1)
        });
        credit_score.push(round(score, 0));
        loan_amount.push(round(loan, 2));
        debt_to_income.push(round(dti, 3));
        home_ownership.push((rng.next_f64() >= 0.02).then(|| home.to_string()));
        purpose.push(Some(why.to_string()));
        default.push(f64::from(u8::from(y)));
    }
    let names = [
        "age",
        "income",
        "employment_years",
        "credit_score",
        "loan_amount",
        "debt_to_income",
        "home_ownership",
        "purpose",
        "default",
    ];
    let columns = vec![
        Column::Numeric(age),
        Column::Numeric(income),
        Column::Numeric(employment_years),
        Column::Numeric(credit_score),
        Column::Numeric(loan_amount),
        Column::Numeric(debt_to_income),
        Column::Categorical(home_ownership),
        Column::Categorical(purpose),
        Column::Numeric(default),
    ];
    table(&names, columns)
}

fn retail(rng: &mut Rng, o: &GenerateOptions) -> Table {
    let shift = o.covariate_shift;
    let drift = o.concept_drift;
    let n = o.rows;
    let mut gender = Vec::with_capacity(n);
    let mut age = Vec::with_capacity(n);
    let mut height = Vec::with_capacity(n);
    let mut weight = Vec::with_capacity(n);
    let mut fit = Vec::with_capacity(n);
    let mut region = Vec::with_capacity(n);
    let mut last_size = Vec::with_capacity(n);
    let mut size = Vec::with_capacity(n);
    for _ in 0..n {
        let woman = rng.next_f64() < 0.5;
        let a = (18.0 + 52.0 * rng.next_f64()).round();
        let h = if woman { 164.0 } else { 177.0 } + 7.0 * rng.normal() + 3.0 * shift;
        let bmi = (23.5 + 0.04 * (a - 40.0) + 3.2 * rng.normal() + 1.5 * shift).clamp(16.0, 45.0);
        let w = bmi * (h / 100.0).powi(2);
        let preference = pick(rng, &[("slim", 0.3), ("regular", 0.5), ("relaxed", 0.2)]);
        let fit_effect = match preference {
            "slim" => -1.0,
            "relaxed" => 1.0,
            _ => 0.0,
        };
        // Waist in inches from body shape; vanity sizing (drift) labels the same body smaller.
        let waist = 16.0 + 0.36 * w - 0.045 * h + if woman { -1.5 } else { 0.0 };
        let inches = waist + fit_effect + 0.9 * rng.normal() - 2.0 * drift;
        let label = ((inches / 2.0).round() * 2.0).clamp(26.0, 40.0);
        let previous = ((waist + 1.5 * rng.normal()) / 2.0).round() * 2.0;
        gender.push(Some(if woman { "women" } else { "men" }.to_string()));
        age.push(a);
        height.push(round(h, 1));
        weight.push(round(w, 1));
        fit.push(Some(preference.to_string()));
        region.push(Some(
            pick(
                rng,
                &[
                    ("north", 0.25),
                    ("south", 0.3),
                    ("east", 0.2),
                    ("west", 0.25),
                ],
            )
            .to_string(),
        ));
        // 40% are first-time buyers without a previous size.
        last_size.push(if rng.next_f64() < 0.4 {
            f64::NAN
        } else {
            previous.clamp(24.0, 42.0)
        });
        size.push(Some(format!("W{label}")));
    }
    let names = [
        "gender",
        "age",
        "height_cm",
        "weight_kg",
        "fit_preference",
        "region",
        "last_size",
        "size",
    ];
    let columns = vec![
        Column::Categorical(gender),
        Column::Numeric(age),
        Column::Numeric(height),
        Column::Numeric(weight),
        Column::Categorical(fit),
        Column::Categorical(region),
        Column::Numeric(last_size),
        Column::Categorical(size),
    ];
    table(&names, columns)
}

fn table(names: &[&str], columns: Vec<Column>) -> Table {
    let names = names.iter().map(|n| n.to_string()).collect();
    // Names are distinct and columns have equal length by construction.
    Table::new(names, columns).expect("generated columns are consistent")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(shift: f64, drift: f64) -> GenerateOptions {
        GenerateOptions {
            rows: 4000,
            seed: 5,
            covariate_shift: shift,
            concept_drift: drift,
        }
    }

    fn mean(table: &Table, name: &str) -> f64 {
        match table.column(name) {
            Some(Column::Numeric(v)) => {
                let present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
                present.iter().sum::<f64>() / present.len() as f64
            }
            _ => f64::NAN,
        }
    }

    #[test]
    fn portfolio_is_seeded_and_knobs_move_what_they_should() {
        let base = generate(Dataset::Portfolio, &options(0.0, 0.0)).unwrap();
        // Debug text compares NaN (missing) cells as equal.
        let again = generate(Dataset::Portfolio, &options(0.0, 0.0)).unwrap();
        assert_eq!(format!("{base:?}"), format!("{again:?}"));
        let rate = mean(&base, "default");
        assert!((0.1..0.4).contains(&rate), "default rate {rate}");
        let shifted = generate(Dataset::Portfolio, &options(1.0, 0.0)).unwrap();
        assert!(mean(&shifted, "credit_score") < mean(&base, "credit_score") - 30.0);
        let drifted = generate(Dataset::Portfolio, &options(0.0, 1.0)).unwrap();
        // Same features (same draws), different outcomes.
        assert_eq!(base.column("credit_score"), drifted.column("credit_score"));
        assert!(mean(&drifted, "default") > rate + 0.03);
    }

    #[test]
    fn retail_sizes_are_labels_and_drift_shrinks_them() {
        let base = generate(Dataset::Retail, &options(0.0, 0.0)).unwrap();
        let Some(Column::Categorical(sizes)) = base.column("size") else {
            panic!("size must be categorical");
        };
        assert!(
            sizes
                .iter()
                .all(|s| s.as_deref().is_some_and(|s| s.starts_with('W')))
        );
        let waist = |t: &Table| match t.column("size") {
            Some(Column::Categorical(v)) => {
                v.iter()
                    .flatten()
                    .filter_map(|s| s[1..].parse::<f64>().ok())
                    .sum::<f64>()
                    / v.len() as f64
            }
            _ => f64::NAN,
        };
        let drifted = generate(Dataset::Retail, &options(0.0, 1.0)).unwrap();
        assert!(waist(&drifted) < waist(&base) - 1.0);
        let shifted = generate(Dataset::Retail, &options(1.0, 0.0)).unwrap();
        assert!(mean(&shifted, "height_cm") > mean(&base, "height_cm") + 2.0);
    }
}
