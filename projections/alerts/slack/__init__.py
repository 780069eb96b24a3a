"""Alert messages for Slack."""
