"""Operator reports: usage aggregated by user, model, hour or day, with an estimated USD cost."""

from solaris.reports.prices import cost_usd, group_cost_usd
from solaris.reports.usage import UsageReport, UsageRow, usage_report

__all__ = ["UsageReport", "UsageRow", "cost_usd", "group_cost_usd", "usage_report"]
