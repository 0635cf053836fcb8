"""The embedded demo: a seeded customer-churn data set, including drifted traffic for named scenarios."""
