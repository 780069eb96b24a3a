"""What every shell shares: settings, logging, progress lines, journey definition files, topic names."""
