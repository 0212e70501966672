//! [`Archive`] over Amazon S3.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::aws_error;
use switchboard_core::ports::{Archive, AwsError};

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

    /// Opens the connection to S3 with one cheap call (HeadBucket), for [`super::warm_up`].
    pub fn warm(&self) -> impl Future<Output = Result<(), AwsError>> + Send + 'static {
        let call = self.client.head_bucket().bucket(&self.bucket);
        async move {
            call.send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("HeadBucket", e))
        }
    }
}

impl Archive for S3Archive {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), AwsError> {
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

    async fn get(&self, key: &str) -> Result<Vec<u8>, AwsError> {
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
