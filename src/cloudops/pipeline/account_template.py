"""An account's setup as a CloudFormation template (issue 16): what `cloudops init`
creates, as infrastructure as code, for platform teams that keep accounts in IaC.

Pure: the pipeline in, a template document out (`cloudops init ACCOUNT --emit
cloudformation` prints it as JSON). It holds

* every pipeline image's ECR repository with the pipeline's settings for it (tag
  immutability, scan on push, encryption, lifecycle policy, repository policy);
* the account's bucket: versioning, default encryption (SSE-S3), every public access
  block, object ownership enforced to the bucket owner (no ACLs);
* for every account but the last stage, a read-only role the next stage's Jenkins assumes
  to pull from this one: ECR pull on these repositories (and the token call, which has
  no resource), S3 read of the deployment package prefix, and a listing of the bucket
  limited to that prefix (HeadBucket, which the bucket owner check makes, has no prefix
  and stays allowed). Nothing else: no write, no history, no other prefix.

Names are the pipeline's: a stack deployed from it is what `init` would have made, so
`init` and `audit` on the account afterwards report any drift (e.g. settings a
CloudFormation implementation does not apply).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any

from cloudops.aws.ecr import desired_repository
from cloudops.pipeline.model import Pipeline

TEMPLATE_VERSION = "2010-09-09"
REJECTED_PREFIX = "releases/rejected/"
"""release_gates.REJECTED_PREFIX (that module is a layer above; a test keeps them equal)."""
PULL_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
    "ecr:ListImages",
]


def pull_role_name(account: str, next_stage: str) -> str:
    """The read-only role in ``account`` that ``next_stage``'s Jenkins assumes."""
    return f"cloudops-pull-by-{next_stage}"[:64]


def logical_id(prefix: str, name: str) -> str:
    """A CloudFormation logical id for a name with / . - _ (alphanumerics only, unique by
    a short hash of the name: ep/cortex and ep-cortex must not collide)."""
    words = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    return f"{prefix}{words}{hashlib.sha256(name.encode()).hexdigest()[:6]}"[:255]


def account_template(pipeline: Pipeline, account: str) -> dict[str, Any]:
    """The template of ``account``'s setup (see the module's docstring)."""
    own = pipeline.account(account)
    partition = "aws-cn" if own.region.startswith("cn-") else "aws"
    bucket = pipeline.bucket(account)
    resources: dict[str, Any] = {}
    repository_arns = []
    for name in pipeline.images:
        resources[logical_id("Repository", name)] = {
            "Type": "AWS::ECR::Repository",
            "DeletionPolicy": "Retain",  # images outlive a deleted stack
            "UpdateReplacePolicy": "Retain",
            "Properties": {"RepositoryName": name, **repository_properties(pipeline, account, name)},
        }
        repository_arns.append(f"arn:{partition}:ecr:{own.region}:{own.account_id}:repository/{name}")
    resources["Bucket"] = {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": bucket,
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        },
    }
    outputs: dict[str, Any] = {"BucketName": {"Value": {"Ref": "Bucket"}}}
    stages = pipeline.stages
    if account in stages and stages.index(account) + 1 < len(stages):
        next_stage = stages[stages.index(account) + 1]
        resources["PullRole"] = _pull_role(pipeline, account, next_stage, partition, bucket, repository_arns)
        outputs["PullRoleArn"] = {
            "Description": f"the role {next_stage}'s Jenkins assumes to pull from {account}",
            "Value": {"Fn::GetAtt": ["PullRole", "Arn"]},
        }
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"cloudops: account {account} ({own.account_id}), its ECR repositories and bucket",
        "Resources": resources,
        "Outputs": outputs,
    }


def repository_properties(pipeline: Pipeline, account: str, name: str) -> dict[str, Any]:
    """The repository's settings (pipeline.yaml repositories:, as init applies them) as
    AWS::ECR::Repository properties."""
    desired = desired_repository(pipeline.repository_settings(name), account)
    encryption: dict[str, Any] = {"EncryptionType": desired.encryption_type}
    if desired.kms_key:
        encryption["KmsKey"] = desired.kms_key
    properties: dict[str, Any] = {
        "ImageTagMutability": desired.tag_mutability,
        "ImageScanningConfiguration": {"ScanOnPush": desired.scan_on_push},
        "EncryptionConfiguration": encryption,
    }
    if desired.manage_policies and desired.lifecycle is not None:
        properties["LifecyclePolicy"] = {"LifecyclePolicyText": json.dumps(desired.lifecycle, sort_keys=True)}
    if desired.manage_policies and desired.policy is not None:
        properties["RepositoryPolicyText"] = desired.policy
    return properties


def _pull_role(
    pipeline: Pipeline, account: str, next_stage: str, partition: str, bucket: str, repository_arns: list[str]
) -> dict[str, Any]:
    prefix = str(PurePosixPath(pipeline.deployment_package.key).parent)
    prefix = "" if prefix == "." else prefix + "/"
    reader = pipeline.account(next_stage).account_id
    statements: list[dict[str, Any]] = [
        {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "S3ReadPackages", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"arn:{partition}:s3:::{bucket}/{prefix}*"},
        # A release is refused when it was rejected in its source: plan and apply read the
        # marker (releases/rejected/<hash>.json) with the source credentials.
        {"Sid": "S3ReadRejections", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"arn:{partition}:s3:::{bucket}/{REJECTED_PREFIX}*"},
        {"Sid": "S3ListPackages", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:{partition}:s3:::{bucket}",
         "Condition": {"StringLikeIfExists": {"s3:prefix": f"{prefix}*"}}},
    ]  # fmt: skip
    if repository_arns:
        statements.insert(
            1, {"Sid": "EcrPull", "Effect": "Allow", "Action": PULL_ACTIONS, "Resource": repository_arns}
        )
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": pull_role_name(account, next_stage),
            "Description": f"cloudops: {next_stage} pulls images and the deployment package from {account}",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:{partition}:iam::{reader}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "cloudops-pull",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def template_text(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2, sort_keys=False) + "\n"


__all__ = ["account_template", "logical_id", "pull_role_name", "repository_properties", "template_text"]
