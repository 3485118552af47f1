"""An offline stand-in for Google Identity Services (the "Sign in with Google" button, One Tap).

Google's script renders a button on the site's page; once the person picks an account, it sets a
``g_csrf_token`` cookie on the site's domain and posts the form fields ``credential`` (an ID token
Google signed for the site's client id, with the page's nonce) and ``g_csrf_token`` (the same
value) to the page's ``data-login_uri``. This plays that part without the network, so the demo and
the browser tests can exercise ``/accounts/<slug>/credential/`` end to end:

* ``client.js`` -- point ``ACCOUNTS_GIS_CLIENT_SCRIPT`` at it (development settings do): it reads
  ``#g_id_onload`` as Google's script does and puts a button in each ``.g_id_signin``;
* ``select`` -- the account chooser; picking a test user signs an ID token with the dev IdP's own
  keys and answers a page that posts it, with the cookie/field pair, to the ``login_uri``.

The dev IdP is served by the very site that signs in with it, so the cookie it sets lands where
Google's script would put it. Only a registered client id is served, and only a ``login_uri`` on
the origin of one of that client's redirect URIs (no posting credentials to other sites).
"""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from joserfc import jwt

from . import formtoken, keys
from .models import Client, DevUser
from .server import request_issuer
from .views import dev_only

#: Google's double-submit cookie and field.
CSRF_NAME = "g_csrf_token"
#: How long the ID tokens it signs live, as Google's do (an hour).
TOKEN_LIFETIME = 3600

_CLIENT_JS = """// Development stand-in for Google Identity Services (devidp/gsi.py): no network, no Google.
(function () {
  "use strict";
  var chooser = %(chooser)s;
  function start() {
    var onload = document.getElementById("g_id_onload");
    if (!onload) { return; }
    var query = new URLSearchParams({
      client_id: onload.getAttribute("data-client_id") || "",
      login_uri: onload.getAttribute("data-login_uri") || "",
      nonce: onload.getAttribute("data-nonce") || ""
    });
    document.querySelectorAll(".g_id_signin").forEach(function (slot) {
      var link = document.createElement("a");
      link.href = chooser + "?" + query.toString();
      link.className = "button gis-standin";
      link.setAttribute("data-testid", "gis-button");
      link.textContent = "Sign in with Google (development stand-in)";
      slot.appendChild(link);
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
"""

_POST_JS = 'document.getElementById("gis-post").submit();\n'


@dev_only
@require_GET
def client_js(request: HttpRequest) -> HttpResponse:
    chooser = json.dumps(reverse("devidp:gsi_select"))
    response = HttpResponse(_CLIENT_JS % {"chooser": chooser}, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response


@dev_only
@require_GET
def post_js(request: HttpRequest) -> HttpResponse:
    return HttpResponse(_POST_JS, content_type="text/javascript; charset=utf-8")


@dev_only
@never_cache
@csrf_exempt  # its own form token protects it (formtoken.py), as the authorization page
@require_http_methods(["GET", "POST"])
def select(request: HttpRequest) -> HttpResponse:
    """GET: the account chooser. POST: sign the credential and post it to the site's login_uri."""
    client_id = request.GET.get("client_id", "")
    login_uri = request.GET.get("login_uri", "")
    nonce = request.GET.get("nonce", "")
    client = Client.objects.filter(client_id=client_id).first()
    problem = _problem(client, login_uri)
    if problem is not None or client is None:
        return render(request, "devidp/error.html", {"error": "invalid_request", "description": problem}, status=400)
    if request.method == "POST":
        if not formtoken.is_valid(request):
            description = "This form was not sent from this browser's account chooser."
            return render(request, "devidp/error.html", {"error": "invalid_request", "description": description}, 403)
        value = request.POST.get("user", "")
        user = DevUser.objects.filter(pk=int(value)).first() if value.isdigit() else None
        if user is not None:
            return _post_credential(request, client, user, login_uri=login_uri, nonce=nonce)
    context = {
        "client": client,
        "site": urlsplit(login_uri).netloc,
        "users": DevUser.objects.all(),
        "action": request.get_full_path(),
        "form_token": formtoken.token_for(request),
        "form_token_field": formtoken.FIELD,
    }
    return formtoken.remember_browser(request, render(request, "devidp/gsi_select.html", context))


def _problem(client: Client | None, login_uri: str) -> str | None:
    if client is None:
        return "Unknown client_id: register it with `python manage.py devidp setup`."
    parts = urlsplit(login_uri)
    origins = {f"{urlsplit(uri).scheme}://{urlsplit(uri).netloc}" for uri in client.redirect_uris}
    if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" not in origins:
        return "The login_uri is not on the origin of any redirect URI registered for this client."
    return None


def _post_credential(
    request: HttpRequest, client: Client, user: DevUser, *, login_uri: str, nonce: str
) -> HttpResponse:
    """What Google does after the person picked an account: a signed ID token posted with the pair."""
    now = int(time.time())
    claims = {
        **user.claims("openid email profile"),
        "iss": request_issuer(request),
        "aud": client.client_id,
        "azp": client.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME,
        "jti": secrets.token_urlsafe(16),
    }
    if nonce:
        claims["nonce"] = nonce
    alg = client.id_token_signed_response_alg
    credential = jwt.encode({"alg": alg, "typ": "JWT"}, claims, keys.signing_keys(alg), algorithms=[alg])
    pair = secrets.token_hex(16)
    context = {"login_uri": login_uri, "credential": credential, "pair": pair, "csrf_name": CSRF_NAME}
    response = render(request, "devidp/gsi_post.html", context)
    # Google's script sets this cookie on the site's own domain from the page; the dev IdP is that site.
    response.set_cookie(CSRF_NAME, pair, samesite="Lax", secure=request.is_secure(), path="/")
    return response
