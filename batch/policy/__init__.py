"""Policy files (``files``: front matter for the job, Markdown for the model) and their lint."""
