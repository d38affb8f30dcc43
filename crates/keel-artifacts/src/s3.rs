//! The S3 backend: parsing `s3://bucket/prefix` and configuring
//! `object_store`'s `AmazonS3` the way AWS tools do.
//!
//! Credentials and region come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or
//! `AWS_DEFAULT_REGION`, or the instance/container credential chain). A custom
//! endpoint (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, for
//! MinIO, moto, Ceph...) gets path-style requests unless
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` says otherwise, and plain HTTP is allowed
//! when that endpoint is `http://`.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::prefix::PrefixStore;

use crate::ArtifactError;
use crate::path::validate_path;

/// A parsed `s3://bucket/prefix` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Location {
    pub(crate) bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the whole bucket.
    pub(crate) prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix[/]]`. The prefix is taken literally (no
    /// percent-decoding, as the AWS CLI does) and must be a valid artifact path.
    pub(crate) fn parse(uri: &str) -> Result<Self, ArtifactError> {
        let invalid =
            |reason: &str| ArtifactError::InvalidUri(format!("invalid S3 URI '{uri}': {reason}"));
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(
                "the bucket name must be 3-63 characters of lowercase letters, digits, '-' and '.'",
            ));
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        validate_path(prefix).map_err(|error| invalid(&error.to_string()))?;
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The normalised URI: `s3://bucket` or `s3://bucket/prefix`.
    pub(crate) fn uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// Builds the store from `builder` (environment settings or a test's
    /// explicit ones), scoped to the bucket and prefix.
    pub(crate) fn build(
        &self,
        builder: AmazonS3Builder,
    ) -> Result<Arc<dyn ObjectStore>, ArtifactError> {
        let mut builder = builder.with_bucket_name(&self.bucket);
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        if let Some(endpoint) = endpoint {
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            if std::env::var_os("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
                builder = builder.with_virtual_hosted_style_request(false);
            }
        }
        let s3 = builder.build().map_err(|error| {
            ArtifactError::InvalidUri(format!(
                "cannot configure the S3 store '{}': {error}",
                self.uri()
            ))
        })?;
        if self.prefix.is_empty() {
            return Ok(Arc::new(s3));
        }
        let prefix = Path::parse(&self.prefix).map_err(|error| {
            ArtifactError::InvalidUri(format!("invalid S3 prefix in '{}': {error}", self.uri()))
        })?;
        Ok(Arc::new(PrefixStore::new(s3, prefix)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let cases = [
            ("s3://bucket", "bucket", ""),
            ("s3://bucket/", "bucket", ""),
            (
                "s3://my.bucket-1/runs/artifacts",
                "my.bucket-1",
                "runs/artifacts",
            ),
            ("s3://bucket/runs/artifacts/", "bucket", "runs/artifacts"),
        ];
        for (uri, bucket, prefix) in cases {
            let location = S3Location::parse(uri).ok();
            let expected = S3Location {
                bucket: bucket.into(),
                prefix: prefix.into(),
            };
            assert_eq!(location.as_ref(), Some(&expected), "{uri}");
        }
        let location = S3Location::parse("s3://bucket/a/b/").ok().map(|l| l.uri());
        assert_eq!(location.as_deref(), Some("s3://bucket/a/b"));
    }

    #[test]
    fn rejects_bad_buckets_and_escaping_prefixes() {
        for uri in [
            "s3://",
            "s3:///prefix",
            "s3://Upper/x",
            "s3://ab",
            "s3://bucket_name/x",
            "s3://bucket/../x",
            "s3://bucket//x",
            "s3://bucket/a/./b",
            "s3://bucket/a\\b",
            "gs://bucket/x",
        ] {
            assert!(
                matches!(S3Location::parse(uri), Err(ArtifactError::InvalidUri(_))),
                "{uri} should be rejected"
            );
        }
    }
}
