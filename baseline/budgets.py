"""Budgets: a monthly cost budget with a notification per threshold (actual cost).

Tuned per client::

    budget:
      monthly_limit_usd: 5000
      thresholds_pct: [50, 80, 100]
      notify: [cloud-ops@acme.example]
"""

from __future__ import annotations

from aws_cdk import aws_budgets as budgets
from constructs import Construct

from baseline.spec import BudgetSpec


class MonthlyBudget(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: BudgetSpec) -> None:
        super().__init__(scope, construct_id)
        subscribers = [
            budgets.CfnBudget.SubscriberProperty(subscription_type="EMAIL", address=email) for email in spec.emails
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
                        notification_type="ACTUAL",
                        comparison_operator="GREATER_THAN",
                        threshold=pct,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=subscribers,
                )
                for pct in spec.thresholds_pct
            ],
        )
