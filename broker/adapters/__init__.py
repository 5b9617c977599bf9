"""Semantics of the AWS services (SQS, then SNS, EventBridge, ...) over the core API."""
