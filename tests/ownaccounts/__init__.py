"""A project's own app labelled ``accounts`` (the commonest app name), installed beside ours."""
