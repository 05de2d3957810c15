"""Incentives: baselines, rewards, checks that guard payouts, and the points ledger."""
