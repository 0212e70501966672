//! [`Archive`] over Amazon S3.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::aws_error;
use switchboard_core::ports::{Archive, PortError};

/// One bucket.
#[derive(Debug, Clone)]
pub struct S3Archive {
    client: Client,
    bucket: String,
}

impl S3Archive {
    /// The bucket named `bucket`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// Opens the connection to S3 with one call the archive's writer is allowed anyway, for
    /// [`super::warm_up`]: an empty object at [`WARM_UP_KEY`]. (HeadBucket would need
    /// `s3:ListBucket`, which lets the internet-facing function list every archived event.)
    pub fn warm(&self) -> impl Future<Output = Result<(), PortError>> + Send + 'static {
        let call = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(WARM_UP_KEY)
            .body(ByteStream::from_static(b""));
        async move {
            call.send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("PutObject", e))
        }
    }
}

/// The archive warm-up's object: outside every integration's prefix (`{integration}/...`) and
/// the audit records' (`audit/...`).
pub const WARM_UP_KEY: &str = "warm-up";

impl Archive for S3Archive {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| aws_error("PutObject", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PortError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws_error("GetObject", e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| aws_error("GetObject", e))?;
        Ok(bytes.into_bytes().to_vec())
    }
}
