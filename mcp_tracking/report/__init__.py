"""Report: the metrics as a terminal table, JSON or CSV, and as a self-contained HTML dashboard."""
