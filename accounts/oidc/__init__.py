"""The protocol side: HTTP to providers, discovery and keys, ID token verification, the code flow.

Nothing in this package renders a page; it raises ``accounts.errors.SignInError`` subclasses and
leaves the wording of pages to the views.
"""
