"""SNS topics with boto3: CreateTopic (standard and FIFO, idempotent), DeleteTopic, ListTopics
paging, Get/SetTopicAttributes, Add/RemovePermission, tags, and the errors AWS answers with
(codes and messages as recorded from AWS)."""

from __future__ import annotations

import json
from typing import Any

from tests.interop import sns_helpers
from tests.interop.sns_helpers import new_topic, topic_arn, topic_name
from tests.interop.sqs_helpers import ACCOUNT, REGION, expect_error

sqs_broker, sqs, sns = sns_helpers.sqs_broker, sns_helpers.sqs, sns_helpers.sns

DEFAULT_EFFECTIVE_DELIVERY_POLICY = {
    "http": {
        "defaultHealthyRetryPolicy": {
            "minDelayTarget": 20,
            "maxDelayTarget": 20,
            "numRetries": 3,
            "numMaxDelayRetries": 0,
            "numNoDelayRetries": 0,
            "numMinDelayRetries": 0,
            "backoffFunction": "linear",
        },
        "disableSubscriptionOverrides": False,
        "defaultRequestPolicy": {"headerContentType": "text/plain; charset=UTF-8"},
    }
}


def test_create_topic_returns_the_arn_and_is_idempotent(sns: Any) -> None:
    name = topic_name("create")
    arn = sns.create_topic(Name=name)["TopicArn"]
    assert arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
    assert sns.create_topic(Name=name)["TopicArn"] == arn
    assert sns.create_topic(Name=name, Attributes={"DisplayName": ""})["TopicArn"] == arn


def test_create_existing_topic_with_different_attributes_is_refused(sns: Any) -> None:
    name = topic_name("diff")
    sns.create_topic(Name=name, Attributes={"DisplayName": "one"})
    assert sns.create_topic(Name=name, Attributes={"DisplayName": "one"})["TopicArn"]
    expect_error(
        sns.create_topic,
        "InvalidParameter",
        message="Invalid parameter: Attributes Reason: Topic already exists with different "
        "attributes",
        Name=name,
        Attributes={"DisplayName": "two"},
    )


def test_create_existing_topic_with_different_tags_is_refused(sns: Any) -> None:
    name = topic_name("tags")
    sns.create_topic(Name=name, Tags=[{"Key": "a", "Value": "1"}])
    expect_error(
        sns.create_topic,
        "InvalidParameter",
        message="Invalid parameter: Tags Reason: Topic already exists with different tags",
        Name=name,
        Tags=[{"Key": "a", "Value": "2"}],
    )


def test_topic_name_rules(sns: Any) -> None:
    for bad in ("has.dot", "sp ace", "x" * 257, "ends.fifo"):
        expect_error(
            sns.create_topic, "InvalidParameter", message="Invalid parameter: Topic Name", Name=bad
        )
    expect_error(
        sns.create_topic,
        "InvalidParameter",
        message="Invalid parameter: Fifo Topic names must end with .fifo and must be made up of "
        "only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must "
        "be between 1 and 256 characters long.",
        Name="no-suffix",
        Attributes={"FifoTopic": "true"},
    )
    assert sns.create_topic(Name="x" * 256)["TopicArn"].endswith(":" + "x" * 256)


def test_default_topic_attributes(sns: Any) -> None:
    arn = new_topic(sns, "attrs")
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    policy = json.loads(attrs.pop("Policy"))
    assert policy["Statement"][0]["Resource"] == arn
    assert policy["Statement"][0]["Condition"] == {"StringEquals": {"AWS:SourceOwner": ACCOUNT}}
    assert json.loads(attrs.pop("EffectiveDeliveryPolicy")) == DEFAULT_EFFECTIVE_DELIVERY_POLICY
    assert attrs == {
        "Owner": ACCOUNT,
        "SubscriptionsPending": "0",
        "SubscriptionsConfirmed": "0",
        "SubscriptionsDeleted": "0",
        "DisplayName": "",
        "TopicArn": arn,
    }


def test_fifo_topic_attributes(sns: Any) -> None:
    arn = new_topic(sns, "fifo", fifo=True, ContentBasedDeduplication="true")
    assert arn.endswith(".fifo")
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["FifoTopic"] == "true"
    assert attrs["ContentBasedDeduplication"] == "true"
    sns.set_topic_attributes(
        TopicArn=arn, AttributeName="ContentBasedDeduplication", AttributeValue="false"
    )
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["ContentBasedDeduplication"] == "false"


def test_set_topic_attributes(sns: Any) -> None:
    arn = new_topic(sns, "set")
    delivery = {"http": {"defaultHealthyRetryPolicy": {"numRetries": 5}}}
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="Shown")
    sns.set_topic_attributes(
        TopicArn=arn, AttributeName="DeliveryPolicy", AttributeValue=json.dumps(delivery)
    )
    sns.set_topic_attributes(TopicArn=arn, AttributeName="KmsMasterKeyId", AttributeValue="k1")
    sns.set_topic_attributes(TopicArn=arn, AttributeName="TracingConfig", AttributeValue="Active")
    sns.set_topic_attributes(
        TopicArn=arn, AttributeName="SQSSuccessFeedbackSampleRate", AttributeValue="50"
    )
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["DisplayName"] == "Shown"
    assert json.loads(attrs["DeliveryPolicy"]) == delivery
    effective = json.loads(attrs["EffectiveDeliveryPolicy"])
    assert effective["http"]["defaultHealthyRetryPolicy"]["numRetries"] == 5
    assert effective["http"]["defaultHealthyRetryPolicy"]["minDelayTarget"] == 20
    assert attrs["KmsMasterKeyId"] == "k1"
    assert attrs["TracingConfig"] == "Active"
    assert attrs["SQSSuccessFeedbackSampleRate"] == "50"
    policy = {"Version": "2012-10-17", "Statement": []}
    sns.set_topic_attributes(
        TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(policy)
    )
    assert json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"]) == policy


def test_set_topic_attributes_errors(sns: Any) -> None:
    arn = new_topic(sns, "seterr")
    expect_error(
        sns.set_topic_attributes,
        "InvalidParameter",
        message="Invalid parameter: AttributeName",
        TopicArn=arn,
        AttributeName="NoSuchAttribute",
        AttributeValue="x",
    )
    expect_error(
        sns.set_topic_attributes,
        "NotFound",
        404,
        message="Topic does not exist",
        TopicArn=topic_arn(topic_name("absent")),
        AttributeName="DisplayName",
        AttributeValue="x",
    )


def test_unknown_and_malformed_topic_arns(sns: Any) -> None:
    expect_error(
        sns.get_topic_attributes,
        "NotFound",
        404,
        message="Topic does not exist",
        TopicArn=topic_arn(topic_name("nope")),
    )
    expect_error(
        sns.get_topic_attributes,
        "InvalidParameter",
        message="Invalid parameter: TopicArn Reason: An ARN must have at least 6 elements, not 1",
        TopicArn="not-an-arn",
    )


def test_delete_topic_and_its_subscriptions(sns: Any, sqs: Any) -> None:
    arn = new_topic(sns, "delete")
    _url, sub = sns_helpers.subscribe_queue(sns, sqs, arn, "delete-q")
    sns.delete_topic(TopicArn=arn)
    expect_error(sns.get_topic_attributes, "NotFound", 404, TopicArn=arn)
    expect_error(
        sns.get_subscription_attributes,
        "NotFound",
        404,
        message="Subscription does not exist",
        SubscriptionArn=sub,
    )
    listed = [s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]]
    assert sub not in listed
    sns.delete_topic(TopicArn=arn)  # deleting again answers success, as AWS does


def test_list_topics_pages_of_100(sns: Any) -> None:
    made = {new_topic(sns, f"page{i}") for i in range(105)}
    seen: list[str] = []
    pages = 0
    kwargs: dict[str, Any] = {}
    while True:
        page = sns.list_topics(**kwargs)
        pages += 1
        assert len(page["Topics"]) <= 100
        seen += [t["TopicArn"] for t in page["Topics"]]
        if "NextToken" not in page:
            break
        assert len(page["Topics"]) == 100
        kwargs = {"NextToken": page["NextToken"]}
        assert pages < 100
    assert pages >= 2
    assert made <= set(seen)
    assert len(seen) == len(set(seen))


def test_tags(sns: Any) -> None:
    arn = new_topic(sns, "tagged")
    sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "a", "Value": "3"}])
    assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [
        {"Key": "a", "Value": "3"},
        {"Key": "b", "Value": "2"},
    ]
    sns.untag_resource(ResourceArn=arn, TagKeys=["a", "missing"])
    assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    created = sns.create_topic(Name=topic_name("born-tagged"), Tags=[{"Key": "k", "Value": "v"}])
    tags = sns.list_tags_for_resource(ResourceArn=created["TopicArn"])["Tags"]
    assert tags == [{"Key": "k", "Value": "v"}]
    absent = topic_arn(topic_name("untaggable"))
    expect_error(
        sns.list_tags_for_resource,
        "ResourceNotFound",
        404,
        message="Resource does not exist",
        ResourceArn=absent,
    )
    expect_error(
        sns.tag_resource,
        "InvalidParameter",
        message="Invalid parameter: Duplicated keys are not allowed.",
        ResourceArn=arn,
        Tags=[{"Key": "d", "Value": "1"}, {"Key": "d", "Value": "2"}],
    )


def test_add_and_remove_permission(sns: Any) -> None:
    arn = new_topic(sns, "perm")
    sns.add_permission(
        TopicArn=arn, Label="p1", AWSAccountId=["111122223333"], ActionName=["Publish"]
    )
    policy = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])
    added = [s for s in policy["Statement"] if s.get("Sid") == "p1"]
    assert added == [
        {
            "Sid": "p1",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "SNS:Publish",
            "Resource": arn,
        }
    ]
    expect_error(
        sns.add_permission,
        "InvalidParameter",
        message="Invalid parameter: Statement already exists",
        TopicArn=arn,
        Label="p1",
        AWSAccountId=["111122223333"],
        ActionName=["Publish"],
    )
    sns.remove_permission(TopicArn=arn, Label="p1")
    policy = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])
    assert [s for s in policy["Statement"] if s.get("Sid") == "p1"] == []
