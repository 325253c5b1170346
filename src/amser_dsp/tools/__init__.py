"""Developer tools (measurement scripts) shipped with the package."""
