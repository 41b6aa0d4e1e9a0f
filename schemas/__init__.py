"""Event contracts: JSON Schemas (draft 2020-12) in a CloudEvents 1.0 envelope."""
