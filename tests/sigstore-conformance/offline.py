# Appended to the working copy's test/conftest.py by scripts/sigstore-conformance (the
# pinned suite itself is never changed): what running offline needs.
import base64 as _b64
import json as _json
from pathlib import Path as _Path


def _offline_token() -> str:
    # The suite fetches an identity token over the internet for every test, to sign; it
    # only reads its claims when verifying. A token that parses, signed by nobody.
    claims = {"email": "offline@pullguard.invalid", "iss": "https://offline.invalid", "exp": 4102444800}
    enc = lambda d: _b64.urlsafe_b64encode(_json.dumps(d).encode()).decode().rstrip("=")
    return f"{enc({'alg': 'none'})}.{enc(claims)}.offline"


@pytest.fixture
def identity_token() -> str:  # noqa: F811 (replaces the suite's networked fixture)
    return _offline_token()

# Cases without a trusted_root.json of their own are judged against Sigstore's
# public-good root shipped with pullguard (crates/sigstore-core/data/public-good): the
# entry point passes no --trusted-root, and pullguard uses the shipped one.
