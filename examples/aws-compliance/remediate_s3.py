"""Enforce S3 bucket encryption: on CreateBucket or DeleteBucketEncryption,
turn default encryption (SSE-S3, AES256) back on unless the bucket is exempt,
already encrypted, or the policy says dry run. Every outcome is an event on
aws/s3/<bucket>."""

import sys

import boto3
from botocore.exceptions import ClientError

import remediation as r

AUTOMATION = "s3-encryption"
# A bucket that is gone (deleted since) cannot be fixed: reported, not retried.
PERMANENT = {"NoSuchBucket", "AccessDenied"}


def main():
    event = r.read_event()
    policy = r.load_policy()
    bucket = event["detail"]["requestParameters"]["bucketName"]
    resource = f"aws/s3/{bucket}"
    s3 = boto3.client("s3")
    try:
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        except ClientError as e:
            if e.response["Error"]["Code"] != "NoSuchTagSet":
                raise
            tags = {}
        why = r.exempt(policy, AUTOMATION, bucket, tags)
        if why:
            r.emit(event, "Skipped", AUTOMATION, resource, {"bucket": bucket, "reason": "exempt", "why": why})
            return 0
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        except ClientError as e:
            if e.response["Error"]["Code"] != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            rules = []
        if rules:
            algorithm = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
            r.emit(event, "Skipped", AUTOMATION, resource,
                   {"bucket": bucket, "reason": "already compliant", "why": f"default encryption is {algorithm}"})
            return 0
        if r.dry_run(policy):
            r.emit(event, "Skipped", AUTOMATION, resource,
                   {"bucket": bucket, "reason": "dry-run", "would": "enable default encryption (AES256)"})
            return 0
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        r.emit(event, "Applied", AUTOMATION, resource,
               {"bucket": bucket, "action": "PutBucketEncryption", "fixed": "default encryption (AES256) enabled"})
        return 0
    except ClientError as e:
        return r.failed(event, AUTOMATION, resource, {"bucket": bucket}, e, PERMANENT)


if __name__ == "__main__":
    sys.exit(main())
