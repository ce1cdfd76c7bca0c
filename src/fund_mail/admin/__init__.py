"""Operator tools: --check, --status, the scheduled-task XML and the --demo."""
