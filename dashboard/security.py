"""Who may talk to the dashboard.

- Loopback by default. There, a request whose Host header is not a loopback
  name is refused: a web page cannot reach the dashboard by DNS rebinding.
- A token (DASHBOARD_TOKEN) is mandatory on any other host and, when set, is
  checked on every request: header, or a cookie set by one visit to ?token=.
- A request that changes something (POST...) and names another site in its
  Origin (or, lacking it, its Referer) is refused: a page elsewhere cannot
  press the buttons. Scripts that send neither are served.
"""
import hashlib
import hmac
import ipaddress
from urllib.parse import urlencode, urlsplit

from flask import Flask, jsonify, make_response, redirect, request

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
COOKIE = "dashboard_token"
MIN_TOKEN_LENGTH = 16
TOKEN_HINT = 'export DASHBOARD_TOKEN="$(python3 -c "import secrets; print(secrets.token_urlsafe(32))")"'

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class StartupError(ValueError):
    pass


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_startup(host: str, token: str | None) -> None:
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise StartupError(f"DASHBOARD_TOKEN is too short ({len(token)} characters, at least {MIN_TOKEN_LENGTH}); "
                           f"make one with: {TOKEN_HINT}")
    if not is_loopback(host) and not token:
        raise StartupError(f"listening on {host} (not loopback) needs an access token in DASHBOARD_TOKEN; "
                           f"make one with: {TOKEN_HINT}")


def _host_name(host_header: str) -> str:
    """The name part of a Host header ("[::1]:5000" -> "::1", "localhost:5000" -> "localhost")."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _cookie_value(token: str) -> str:
    # The cookie holds a digest, not the token itself.
    return hashlib.sha256(f"dashboard-cookie:{token}".encode()).hexdigest()


def _same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme and parts.netloc) and parts.scheme == request.scheme and parts.netloc.lower() == request.host.lower()


def _refuse(status: int, message: str):
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        response = jsonify(error=message)
    else:
        response = make_response(message + "\n")
        response.mimetype = "text/plain"
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    loopback_bind = is_loopback(app.config["HOST"])

    @app.before_request
    def guard():
        if loopback_bind and not is_loopback(_host_name(request.host)):
            return _refuse(403, f"unexpected Host header {request.host!r}: this dashboard answers on loopback names only")
        token = app.config["TOKEN"]
        if token:
            answer = _check_token(token)
            if answer is not None:
                return answer
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("Origin")
            referer = request.headers.get("Referer")
            if origin is not None:
                if not _same_origin(origin):
                    return _refuse(403, f"cross-site request refused (Origin {origin})")
            elif referer is not None and not _same_origin(referer):
                return _refuse(403, "cross-site request refused (Referer of another site)")
        return None

    @app.after_request
    def headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _check_token(token: str):
    given = None
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        given = auth[len("Bearer "):].strip()
    given = given or request.headers.get("X-Dashboard-Token")
    if given is not None:
        if hmac.compare_digest(given.encode(), token.encode()):
            return None
        return _refuse(401, "wrong access token")
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and hmac.compare_digest(cookie.encode(), _cookie_value(token).encode()):
        return None
    in_url = request.args.get("token")
    if in_url is not None and request.method == "GET" and hmac.compare_digest(in_url.encode(), token.encode()):
        # Trade the token in the address for a cookie, and drop it from the address.
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        response = redirect(request.path + (f"?{urlencode(rest)}" if rest else ""), code=303)
        response.set_cookie(COOKIE, _cookie_value(token), httponly=True, samesite="Strict",
                            secure=request.scheme == "https", max_age=30 * 24 * 3600)
        return response
    return _refuse(401, "this dashboard needs its access token: open it once as /?token=<DASHBOARD_TOKEN>, "
                        "or send the header 'Authorization: Bearer <token>'")
