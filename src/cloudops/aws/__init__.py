"""AWS: one boto3 session per account, the account guard, ECR, S3."""
