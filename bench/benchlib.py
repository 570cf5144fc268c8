"""What the Python benchmarks share: the stack's env files, the login, percentiles."""
import os


def load_env(path):
    """KEY=value lines of a stack file (endpoints.env, credentials) as a dict."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v.strip().strip("'\"")
    return out


def pct(values, p):
    """The p-th percentile (nearest rank) of values."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def state_dir():
    """The stack's state directory: $PADDOCK_STATE_DIR, else the repo's .paddock."""
    return os.environ.get("PADDOCK_STATE_DIR", os.path.join(os.path.dirname(__file__), "..", ".paddock"))


def login():
    """Logs in as the stack's bootstrap user. Returns (api URL, session
    carrying the token, token, the user's first team id)."""
    import requests
    state = state_dir()
    env = load_env(os.path.join(state, "endpoints.env"))
    cred = load_env(os.path.join(state, "credentials"))
    api = env["PADDOCK_API_URL"]
    s = requests.Session()
    r = s.post(api + "/v1/auth/login", json={"tenant": cred["PADDOCK_TENANT"],
               "username": cred["PADDOCK_USER"], "password": cred["PADDOCK_PASSWORD"]})
    r.raise_for_status()
    token = r.json()["token"]
    s.headers["Authorization"] = "Bearer " + token
    team = s.get(api + "/v1/me").json()["teams"][0]["id"]
    return api, s, token, team
