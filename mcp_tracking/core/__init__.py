"""The framework-free core: the tracker (the one door that decides every event), identity, sessions and their
call state, manifest suggestions, validation, completeness, and the interceptors' per-call recorder."""

from mcp_tracking.core.completeness import has_multiple_results, has_result_data, includes_metrics
from mcp_tracking.core.recorder import CallInfo, Recorder, TrackingOptions
from mcp_tracking.core.tracker import CallHandle, Tracker

__all__ = ["CallHandle", "CallInfo", "Recorder", "Tracker", "TrackingOptions", "has_multiple_results",
           "has_result_data", "includes_metrics"]
