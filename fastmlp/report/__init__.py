"""The search report: one document model rendered to Markdown and LaTeX, and the search's plots."""
