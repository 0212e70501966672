//! AWS list prices the `cost` bench uses: us-east-1, on-demand, beyond the free tiers, as the
//! pricing pages read on 2026-12-06. Each constant names its page. Refresh them together, with
//! the date, when a page changes.

/// The date these prices were read.
pub const READ_ON: &str = "2026-12-06";

/// API Gateway HTTP API, per request (first 300 million a month; a request is counted per
/// 512 KB). <https://aws.amazon.com/api-gateway/pricing/>
pub const API_GATEWAY_HTTP_REQUEST: f64 = 1.00 / 1e6;

/// Lambda, per request. <https://aws.amazon.com/lambda/pricing/>
pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;

/// Lambda on arm64, per GB-second of duration (first 7.5 billion GB-s a month).
/// <https://aws.amazon.com/lambda/pricing/>
pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;

/// A Lambda function URL, per request: none beyond the function's own.
/// <https://aws.amazon.com/lambda/pricing/> (function URLs are included in Lambda's price).
pub const FUNCTION_URL_REQUEST: f64 = 0.0;

/// SQS standard queue, per request (each 64 KB chunk of a payload is one; a batch of ten is
/// one request). <https://aws.amazon.com/sqs/pricing/>
pub const SQS_REQUEST: f64 = 0.40 / 1e6;

/// DynamoDB on-demand, per write request unit (an item up to 1 KB).
/// <https://aws.amazon.com/dynamodb/pricing/on-demand/>
pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;

/// DynamoDB on-demand, per read request unit (a strongly consistent read up to 4 KB; an
/// eventually consistent one is half). <https://aws.amazon.com/dynamodb/pricing/on-demand/>
pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;

/// S3 Standard, per PUT, COPY, POST or LIST request. <https://aws.amazon.com/s3/pricing/>
pub const S3_PUT: f64 = 0.005 / 1e3;

/// S3 Standard, per GET, HEAD or other read request. <https://aws.amazon.com/s3/pricing/>
pub const S3_GET: f64 = 0.0004 / 1e3;

/// Secrets Manager, per API call. <https://aws.amazon.com/secrets-manager/pricing/>
pub const SECRETS_MANAGER_CALL: f64 = 0.05 / 1e4;

/// CloudWatch Logs, per GB ingested (Standard log class).
/// <https://aws.amazon.com/cloudwatch/pricing/>
pub const LOGS_INGESTED_GB: f64 = 0.50;

/// What one AWS request costs, by service and action (the request's own price; storage is not
/// counted: it is per month, not per event).
pub fn request(service: &str, action: &str) -> f64 {
    match (service, action) {
        ("sqs", _) => SQS_REQUEST,
        ("dynamodb", "GetItem (eventually consistent)") => DYNAMODB_READ_UNIT / 2.0,
        ("dynamodb", "GetItem" | "Query" | "Scan" | "BatchGetItem") => DYNAMODB_READ_UNIT,
        ("dynamodb", _) => DYNAMODB_WRITE_UNIT,
        ("s3", "PutObject" | "CopyObject" | "ListObjectsV2" | "ListObjects" | "PostObject") => {
            S3_PUT
        }
        ("s3", "DeleteObject" | "DeleteObjects") => 0.0,
        ("s3", _) => S3_GET,
        ("secretsmanager", _) => SECRETS_MANAGER_CALL,
        _ => 0.0,
    }
}
