"""What the Python benchmarks share: the stack's env files and percentiles."""


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
