"""The bundled demo: a drea-like benchmark-results MCP server and scripted agent sessions against it."""
