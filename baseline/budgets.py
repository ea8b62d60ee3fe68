"""Budgets: a monthly cost budget and Cost Anomaly Detection, alerting through an SNS topic.

Enforces: notifications at each threshold of the actual cost and of the forecasted
month-end cost, and on every cost anomaly whose total impact reaches the client's
threshold, all published to the ``vend-alerts`` topic in the client account (encrypted with
the client key; only Budgets and Cost Anomaly Detection acting for this account may
publish, only over TLS). The topic's e-mail subscriptions are the recipients, so a change of
recipients changes subscriptions, never the budget ("budget already exists" cannot happen);
a change of thresholds replaces the budget under a new name. Tuned per client::

    budget:
      monthly_limit_usd: 5000
      thresholds_pct: [50, 80, 100]       # actual cost
      forecast_thresholds_pct: [100]      # forecasted cost (default from defaults.yaml)
      anomaly_threshold_usd: 250          # default from defaults.yaml
      notify: [cloud-ops@acme.example, finops@msp.example]

An account may have only one AWS services anomaly monitor, and newer accounts already have
one (AWS creates it): such a client adopts it, and vend then creates only the subscription::

    inherited:
      anomaly_monitor: arn:aws:ce::111122223333:anomalymonitor/0f1e2d3c-...   # aws ce get-anomaly-monitors
"""

from __future__ import annotations

import json

from aws_cdk import Fn
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_ce as ce
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from baseline.client_key import ALERT_PUBLISHERS
from baseline.spec import BudgetSpec, decimal_text


class MonthlyBudget(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: BudgetSpec, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.CfnTopic(
            self,
            "Topic",
            topic_name=spec.topic_name,
            display_name="vend cost alerts",
            kms_master_key_id=key.key_arn,
            subscription=[sns.CfnTopic.SubscriptionProperty(protocol="email", endpoint=e) for e in spec.emails],
        )
        topic_arn = self.topic.ref
        account = Fn.ref("AWS::AccountId")
        self.topic_policy = sns.CfnTopicPolicy(
            self,
            "TopicPolicy",
            topics=[topic_arn],
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "BudgetsAndAnomaliesForThisAccount",
                        "Effect": "Allow",
                        "Principal": {"Service": ALERT_PUBLISHERS},
                        "Action": "SNS:Publish",
                        "Resource": topic_arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                    },
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "SNS:Publish",
                        "Resource": topic_arn,
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ],
            },
        )
        subscriber = [budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=topic_arn)]
        notifications = [("ACTUAL", pct) for pct in spec.thresholds_pct] + [
            ("FORECASTED", pct) for pct in spec.forecast_thresholds_pct
        ]
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=spec.name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=spec.limit_usd, unit="USD"),
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=kind,
                        comparison_operator="GREATER_THAN",
                        threshold=pct,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=subscriber,
                )
                for kind, pct in notifications
            ],
        )
        # Cost Anomaly Detection allows one AWS services (DIMENSIONAL/SERVICE) monitor per
        # account, and newer accounts come with one (AWS creates it): creating a second fails the
        # deploy. A client whose account has one names it (inherited.anomaly_monitor) and the
        # subscription watches that monitor; otherwise the stack creates vend's.
        self.monitor: ce.CfnAnomalyMonitor | None = None
        if spec.adopted_anomaly_monitor_arn:
            monitor_arn = spec.adopted_anomaly_monitor_arn
        else:
            self.monitor = ce.CfnAnomalyMonitor(
                self,
                "AnomalyMonitor",
                monitor_name=spec.anomaly_monitor_name,
                monitor_type="DIMENSIONAL",
                monitor_dimension="SERVICE",
            )
            monitor_arn = self.monitor.attr_monitor_arn
        self.anomaly_subscription = ce.CfnAnomalySubscription(
            self,
            "AnomalySubscription",
            subscription_name=spec.anomaly_subscription_name,
            frequency="IMMEDIATE",
            monitor_arn_list=[monitor_arn],
            subscribers=[ce.CfnAnomalySubscription.SubscriberProperty(type="SNS", address=topic_arn)],
            threshold_expression=json.dumps(
                {
                    "Dimensions": {
                        "Key": "ANOMALY_TOTAL_IMPACT_ABSOLUTE",
                        "MatchOptions": ["GREATER_THAN_OR_EQUAL"],
                        "Values": [decimal_text(spec.anomaly_threshold_usd)],
                    }
                }
            ),
        )
        # Budgets and Cost Anomaly Detection check that they may publish when the alert is created.
        self.budget.add_resource_dependency(self.topic_policy)
        self.anomaly_subscription.add_resource_dependency(self.topic_policy)
