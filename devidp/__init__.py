"""A local OpenID Provider for development: sign in end to end with no internet and no accounts.

Built on Authlib's server components (``server.py``); test users, clients, codes, tokens and
signing keys live in this app's tables. It refuses to serve anything unless ``DEBUG`` is on (or
``DEVIDP_ALLOW_WITHOUT_DEBUG`` is set, which only the test settings do).
"""
