//! A page's query string: repeated keys kept (`?col=a&col=b`, `?runs=x&runs=y`).

/// Decoded `key=value` pairs in order.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A number parsed from the first value of `key`.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// Every value of `key`, each either a JSON list (`["a","b"]`, MLflow's
    /// link form) or a comma-separated list, flattened and de-duplicated.
    pub fn list(&self, key: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for value in self.all(key) {
            let items: Vec<String> = match serde_json::from_str::<Vec<serde_json::Value>>(value) {
                Ok(list) => list
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
                Err(_) => value.split(',').map(str::to_string).collect(),
            };
            for item in items {
                let item = item.trim().to_string();
                if !item.is_empty() && !out.contains(&item) {
                    out.push(item);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_every_form() {
        let q = Query::parse(Some(
            "runs=%5B%22a%22%2C%22b%22%5D&runs=c,d&runs=a&experiments=[\"1\"]&n=50",
        ));
        assert_eq!(q.list("runs"), vec!["a", "b", "c", "d"]);
        assert_eq!(q.list("experiments"), vec!["1"]);
        assert_eq!(q.number::<i64>("n"), Some(50));
        assert_eq!(q.get("missing"), None);
    }
}
