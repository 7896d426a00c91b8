"""Thin adapters from each server framework to the one recorder.

Each is imported lazily: ``mcp_tracking.adapters.mcpserver`` needs mcp 2.x, ``...fastmcp`` the fastmcp
package, ``...mcp_v1`` mcp 1.x; ``...decorator`` and ``...instrument`` work with any.
"""
